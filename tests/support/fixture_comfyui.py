"""The fixture ComfyUI (tests/fixtures/comfyui) started from a temporary copy, for tests that need a live API."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "comfyui"
FAKE_TORCH = "2.13.0+cpu"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fixture_env():
    return dict(os.environ, COMFYUI_FIXTURE_FAKE_TORCH=FAKE_TORCH, PYTHONDONTWRITEBYTECODE="1")


def make_checkout(base: Path, test_nodes: str | None = None) -> Path:
    """A copy of the fixture ComfyUI under base; `test_nodes` (module source) becomes custom_nodes/fixture_test_nodes.py."""
    checkout = base / "ComfyUI"
    shutil.copytree(FIXTURE, checkout, ignore=shutil.ignore_patterns("__pycache__"))
    if test_nodes:
        (checkout / "custom_nodes" / "fixture_test_nodes.py").write_text(test_nodes)
    return checkout


class Server:
    def __init__(self, checkout, port=None):
        self.checkout = checkout
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = checkout.parent / f"server-{self.port}.log"
        self.proc = None

    def start(self):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "main.py", "--cpu", "--port", str(self.port)], cwd=self.checkout,
                env=fixture_env(), stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        return self.wait_ready()

    @property
    def log(self):
        return self.log_path.read_text()

    def wait_ready(self, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"fixture exited with {self.proc.returncode}:\n{self.log}")
            try:
                if requests.get(self.url + "/system_stats", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        pytest.fail(f"fixture not ready after {timeout}s:\n{self.log}")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


