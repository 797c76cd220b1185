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


def fixture_env(**extra):
    """The fixture's environment; extra=None removes a variable."""
    env = dict(os.environ, COMFYUI_FIXTURE_FAKE_TORCH=FAKE_TORCH, PYTHONDONTWRITEBYTECODE="1")
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


# Test-only nodes: one that fails at run time (execution errors), one that sleeps (timeouts, kills).
FAULT_NODES = '''
import time


class DemoFail:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"message": ("STRING", {"default": "fixture failure"})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "fail"
    CATEGORY = "test"

    def fail(self, message):
        raise RuntimeError(message)


class FixtureSleep:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "seconds": ("FLOAT", {"default": 0.1, "min": 0.0, "max": 10.0})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "sleep"
    CATEGORY = "test"

    def sleep(self, image, seconds):
        time.sleep(seconds)
        return (image,)


NODE_CLASS_MAPPINGS = {"DemoFail": DemoFail, "FixtureSleep": FixtureSleep}
'''


def make_checkout(base: Path, test_nodes: str | None = None) -> Path:
    """A copy of the fixture ComfyUI under base; `test_nodes` (module source) becomes custom_nodes/fixture_test_nodes.py."""
    checkout = base / "ComfyUI"
    shutil.copytree(FIXTURE, checkout, ignore=shutil.ignore_patterns("__pycache__"))
    if test_nodes:
        (checkout / "custom_nodes" / "fixture_test_nodes.py").write_text(test_nodes)
    return checkout


class Server:
    """One fixture process: `start()` launches it and waits for /system_stats."""

    def __init__(self, checkout, flags=("--cpu",), env=None, port=None):
        self.checkout = checkout
        self.flags = list(flags)
        self.env = env
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = checkout.parent / f"server-{self.port}.log"
        self.proc = None

    def start(self):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "main.py", *self.flags, "--port", str(self.port)], cwd=self.checkout,
                env=self.env or fixture_env(), stdout=log, stderr=subprocess.STDOUT,
                # SIGINT may be inherited as ignored (background shells); the real server needs it default.
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



    def get(self, path, **kw):
        return requests.get(self.url + path, timeout=10, **kw)

    def post(self, path, **kw):
        return requests.post(self.url + path, timeout=10, **kw)

    def wait_history(self, prompt_id, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            history = self.get(f"/history/{prompt_id}").json()
            if prompt_id in history:
                return history[prompt_id]
            time.sleep(0.02)
        pytest.fail(f"prompt {prompt_id} not in history after {timeout}s:\n{self.log}")

    def run_prompt(self, prompt, **body):
        response = self.post("/prompt", json={"prompt": prompt, **body})
        assert response.status_code == 200, response.text
        return self.wait_history(response.json()["prompt_id"])
