"""The container host kind, deployed end to end: `pyinfra <inventory> deploy.py` over the loopback sshd to this
machine, with podman (and podman-compose) as the engine — the engine is a setting: docker on real hosts. The image
is built from the rendered Dockerfile on a local base (the systemd-host image: Debian, python3; no registry is
reachable), ComfyUI is the fixture server at its pinned commit with the demo node, torch 2.13.0 the CPU wheel on
this machine's disk, one model synced into the host's store and mounted read-only.

Deployed twice: `--dry` first names exactly what the deploy then changes, the second deploy changes nothing and the
container keeps its ID. Not executed here: the NVIDIA runtime (GPU reservation), the NGC and CUDA bases, arm64.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from comfyinfra.container.plan import CONTAINER_NAME, CONTAINER_UID
from tests.e2e.harness import pyinfra
from tests.support import systemd_hosts
from tests.support.fixture_comfyui import free_port
from tests.support.model_server import ModelServer, make_model_file

HOST = "container-target"
pytestmark = pytest.mark.e2e


def podman(*args: str) -> subprocess.CompletedProcess:
    return systemd_hosts.podman(*args, check=False, timeout=120)


def container_wheelhouse(directory: Path) -> Path:
    """Every wheel the image's pip runs need, in one directory (the air-gapped path: no_index + find_links). The build
    can't use PyPI here: this machine reaches it through a TLS proxy whose CA only the machine itself trusts."""
    directory.mkdir(parents=True, exist_ok=True)
    for wheel in Path("/opt/wheels").glob("torch-2.13.0+cpu-*.whl"):
        shutil.copy(wheel, directory)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "-d", str(directory),
                    "--find-links", str(directory), "torch==2.13.0+cpu", "pyyaml", "requests"], check=True, timeout=900)
    return directory


@pytest.fixture(scope="module")
def container_world(world):
    base = systemd_hosts.ensure_image()
    wheels = container_wheelhouse(world.root / "container-wheels")
    files = world.root / "container-models"
    files.mkdir()
    with ModelServer(files) as server:
        sha = make_model_file(files / "tiny.bin", 1 << 20, seed=13)
        catalog = {"tiny": {"url": server.url("tiny.bin"), "sha256": sha, "size": 1 << 20,
                            "folder": "checkpoints", "filename": "tiny.bin"}}
        data = world.host_data(
            install_root=str(world.root / "container-install"), port=free_port(), service_user="comfyc",
            container={"base": "python", "base_image": base, "engine": "podman"},
            pip_sources={"find_links": [str(wheels)], "no_index": True},
            model_catalog=catalog, models=["tiny"], health_timeout_s=300)
        inventory = world.inventory("container", {HOST: data})
        yield inventory, data
    # What the deploys left: the container, the compose network, every image they built (not the base).
    podman("rm", "-f", CONTAINER_NAME)
    podman("network", "rm", "-f", "comfyinfra_default")
    built = podman("images", "--format", "{{.Repository}}:{{.Tag}}", "localhost/comfyinfra/comfyui").stdout.split()
    if built:
        podman("rmi", "-f", *built)


def predicted(result) -> set[str]:
    assert result.rc == 0, result.stderr[-6000:]
    return {op["name"] for op in result.data["plan"]
            if HOST in op["hosts_with_change"] or HOST in op["hosts_with_conditional_change"]}


def container_id() -> str:
    return podman("inspect", "--format", "{{.Id}}", CONTAINER_NAME).stdout.strip()


def test_the_container_host_deploys_then_redeploys_with_no_change_and_the_same_container(container_world):
    inventory, data = container_world
    podman("rm", "-f", CONTAINER_NAME)
    will_change = predicted(pyinfra(inventory, "--dry", "--json", timeout=600))
    assert podman("container", "exists", CONTAINER_NAME).returncode != 0, "the dry run started a container"

    first = pyinfra(inventory, "-y", "--json", timeout=1800)
    assert first.rc == 0, first.stderr[-8000:]
    assert will_change == set(first.changes(HOST)), f"--dry: {sorted(will_change)}\nrun: {first.changes(HOST)}"
    stats = requests.get(f"http://127.0.0.1:{data['port']}/system_stats", timeout=10).json()
    assert stats["devices"][0]["type"] == "cpu"
    started = container_id()
    inspect = json.loads(podman("inspect", CONTAINER_NAME).stdout)[0]
    assert inspect["Config"]["User"] == f"{CONTAINER_UID}:{CONTAINER_UID}"
    mounts = {m["Destination"]: m for m in inspect["Mounts"]}
    assert mounts["/models"]["RW"] is False and mounts["/opt/comfyui/output"]["RW"] is True
    assert podman("exec", CONTAINER_NAME, "test", "-s", "/models/checkpoints/tiny.bin").returncode == 0

    second = pyinfra(inventory, "-y", "--json", timeout=900)
    assert second.rc == 0, second.stderr[-6000:]
    assert second.changes(HOST) == [], second.changes(HOST)
    assert container_id() == started, "the no-op deploy replaced the container"
    assert predicted(pyinfra(inventory, "--dry", "--json", timeout=600)) == set()


def test_the_smoke_suite_covers_the_container_host(container_world, tmp_path):
    """Service = the container (running, its health check passing); everything else as for hosts."""
    from tests.e2e.test_smoke_over_ssh import run_smoke

    inventory, _ = container_world
    outcomes = run_smoke(inventory, tmp_path)
    # This machine runs no cron daemon of its own (README: What is not executed here); the entries are checked.
    failures = {name: state for name, state in outcomes.items()
                if state == "failed" and not name.startswith("test_cron_daemon_running")}
    assert not failures, outcomes["__output__"]
    assert any(name.startswith("test_service_is_running") and state == "passed" for name, state in outcomes.items())
