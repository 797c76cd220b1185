"""Session fixtures for the end-to-end deploys: one sshd, one set of fixture repos, one install root."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.harness import (
    FIXTURES,
    FixtureRepo,
    GitDaemon,
    Sshd,
    free_port,
    start_git_daemon,
    start_sshd,
    wheelhouse,
    write_inventory,
)
from tests.support.fixture_host import make_wheelhouse

SUPERVISORD_CONF = "/etc/supervisor/supervisord.conf"


@dataclass
class World:
    root: Path
    sshd: Sshd
    git: GitDaemon
    comfyui: FixtureRepo
    node: FixtureRepo
    install_root: str
    port: int

    def node_entry(self, repo=None, ref=None, name="demo", **extra) -> dict:
        """A custom node from the git daemon (git://: a private mirror, so insecure transport allowed explicitly)."""
        return {"name": name, "repo": repo or self.node.url, "ref": ref or self.node.commit,
                "allow_insecure_transport": True, **extra}

    def host_data(self, **overrides) -> dict:
        data = {
            **self.sshd.connection_data(),
            "comfyui_repo": self.comfyui.url,
            "comfyui_allow_insecure_transport": True,  # the loopback git daemon speaks git://
            "comfyui_ref": self.comfyui.commit,
            "torch": {"torch": "2.13.0"},  # the CPU wheel on this machine's disk
            "pip_sources": {"torch_index_url": "https://pypi.org/simple", "find_links": wheelhouse()},
            "custom_nodes": [self.node_entry()],
            "install_root": self.install_root,
            "port": self.port,
            "health_timeout_s": 120,
            "smoke_workflows": ["cpu_smoke.json"],  # weight-free: the e2e host has no SDXL checkpoint
            "smoke_generate": "cpu_smoke.json",
        }
        data.update(overrides)
        return data

    def inventory(self, name: str, hosts: dict[str, dict]) -> Path:
        return write_inventory(self.root / f"{name}.py", hosts)


@pytest.fixture(scope="session")
def world():
    if os.geteuid() != 0:
        pytest.skip("the end-to-end deploy targets this machine over SSH as root")
    root = Path(tempfile.mkdtemp(prefix="comfyinfra-e2e-", dir="/var/tmp"))
    root.chmod(0o755)  # the service user reads the fixture repos from here
    supervisord_was_running = subprocess.run(["supervisorctl", "-c", SUPERVISORD_CONF, "pid"],
                                             capture_output=True).returncode == 0 if shutil.which("supervisorctl") else False
    sshd = start_sshd(root)
    daemon = start_git_daemon(root)
    comfyui = daemon.repo(FIXTURES / "comfyui", "ComfyUI")
    node = daemon.repo(FIXTURES / "custom_node_demo", "demo-node", tag="v1.0.0")
    yield World(root, sshd, daemon, comfyui, node, str(root / "install"), free_port())
    sshd.stop()
    daemon.stop()
    if shutil.which("supervisorctl"):
        Path("/etc/supervisor/conf.d/comfyui.conf").unlink(missing_ok=True)
        Path("/etc/supervisor/conf.d/comfyui-extras.conf").unlink(missing_ok=True)
        subprocess.run(["supervisorctl", "-c", SUPERVISORD_CONF, "update"], capture_output=True)
        if not supervisord_was_running:
            subprocess.run(["supervisorctl", "-c", SUPERVISORD_CONF, "shutdown"], capture_output=True)
    if not os.environ.get("COMFYINFRA_KEEP_E2E"):
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def wheelhouse_dir(world):
    """Every wheel a deploy of the fixture installs, in one directory (pip_sources no_index + find_links)."""
    house = make_wheelhouse(world.root / "wheelhouse")
    if house is None:
        pytest.skip("no torch 2.13.0+cpu wheel on this machine")
    return house
