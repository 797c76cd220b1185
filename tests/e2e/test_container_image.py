"""The rendered Dockerfile and compose file of a CPU container host, built and run for real with podman.

The same files a deploy uploads (container_artifacts of the plan), written at their destinations under a
throwaway install root in /var/tmp, with the fixture ComfyUI and the demo node copied into the build context as
the deploy checks them out. The base is the suite's local Debian image (tests/support/systemd_hosts.py: python3
3.11 and venv; no registry is reachable here), given through the BASE_IMAGE build argument exactly as the plan's
build command passes any base. torch 2.13.0+cpu comes from this machine's wheel in a wheelhouse (find_links,
no_index) that the build mounts as its `wheels` build context, so the build needs no network and no CA bundle.
compose (podman-compose, as the plan's compose command runs it) starts the image with the models mounted
read-only, and the checks are made from the outside (/system_stats on the published loopback port, the health
check, `podman inspect`) and from inside the running container (its PID 1's uid, writes that must fail).
What cannot run here: GPU reservations, the NVIDIA runtime, the NGC and CUDA bases, arm64 (README).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from comfyinfra.container.artifacts import container_artifacts, image_of
from comfyinfra.container.plan import CONTAINER_NAME, CONTAINER_UID, PROJECT, make_container_plan
from comfyinfra.plan import plan_without_host
from comfyinfra.spec import HostSpec
from tests.e2e.harness import FIXTURES
from tests.support.fixture_comfyui import free_port
from tests.support.fixture_host import make_wheelhouse
from tests.support.systemd_hosts import ensure_image, podman, podman_env

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not (shutil.which("podman") and shutil.which("podman-compose")),
                       reason="podman and podman-compose not installed (./infra test installs them)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the build and the data directories' owner (uid 10001) need root"),
]
BUILD_TIMEOUT_S = 1800  # torch's 190 MB wheel unpacked on a 2-core machine, with the host's other tests running
HEALTHY_TIMEOUT_S = 300  # the first start imports torch; nothing else is slow
MODEL_FILE = "checkpoints/tiny.safetensors"


def container_spec(install_root: Path, wheelhouse: Path, base_image: str, port: int) -> HostSpec:
    return HostSpec.model_validate({
        "host_kind": "linux", "platform_arch": "x86_64", "platform_init": "systemd",  # declared: planned offline
        "service_user": "comfy",  # the hosts' user; in the image, ComfyUI runs as CONTAINER_UID
        "comfyui_repo": "https://github.com/comfyanonymous/ComfyUI.git", "comfyui_ref": "a" * 40,  # copied, not cloned
        "torch": {"torch": "2.13.0"},
        "extra_pip_packages": ["requests"],  # the fleet's (group_data/all.py): ComfyUI imports it, requirements omit it
        "pip_sources": {"no_index": True, "find_links": [str(wheelhouse)]},
        "custom_nodes": [{"name": "demo", "repo": "https://example.com/demo-node.git", "ref": "b" * 40}],
        "install_root": str(install_root), "port": port,
        "container": {"base": "python", "base_image": base_image, "engine": "podman"},
    })


def write_build_context(plan, artifacts) -> None:
    """What the deploy leaves on the host before building: every artifact at its destination, the checkout and
    its nodes in the context (copied from the fixtures instead of cloned at a pin)."""
    for artifact in artifacts:
        dest = Path(artifact.dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(artifact.render())
    no_cache = shutil.ignore_patterns("__pycache__")
    shutil.copytree(FIXTURES / "comfyui", plan.host.paths.app, ignore=no_cache)
    for node in plan.host.nodes:
        shutil.copytree(FIXTURES / "custom_node_demo", node.path, ignore=no_cache)


def make_host_dirs(plan) -> None:
    """The host side of the volumes: the model store root's (one small file), the data dirs the image user's."""
    paths = plan.host.paths
    model = Path(paths.models) / MODEL_FILE
    model.parent.mkdir(parents=True)
    model.write_bytes(b"not a real model")
    for path in (paths.input, paths.output, paths.temp, paths.user, paths.home):
        Path(path).mkdir(parents=True, exist_ok=True)
        os.chown(path, CONTAINER_UID, CONTAINER_UID)
        os.chmod(path, 0o750)


def shell(command: str, timeout: float, log: Path | None = None) -> subprocess.CompletedProcess:
    """One of the plan's command lines, run as the deploy runs it (a shell, podman's settings for this machine)."""
    if log is None:
        return subprocess.run(command, shell=True, env=podman_env(), capture_output=True, text=True, timeout=timeout,
                              check=False)
    with open(log, "w") as out:
        proc = subprocess.run(command, shell=True, env=podman_env(), stdout=out, stderr=subprocess.STDOUT, text=True,
                              timeout=timeout, check=False)
    proc.stdout = log.read_text(errors="replace")
    return proc


def in_container(*argv: str, user: str | None = None) -> subprocess.CompletedProcess:
    return podman("exec", *(["--user", user] if user else []), CONTAINER_NAME, *argv, check=False)


def system_stats(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/system_stats", timeout=5) as response:
            return json.load(response) if response.status == 200 else None
    except OSError:
        return None


def health_status() -> str:
    state = json.loads(podman("inspect", CONTAINER_NAME).stdout)[0]["State"]
    health = state.get("Health") or state.get("Healthcheck") or {}  # podman 4.3 has both names, later ones Health
    return health.get("Status", "")


def report(config, line: str) -> None:
    """A line in the test run's output whatever the capture mode (the build time, for the record)."""
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    if terminal is not None:
        terminal.write_line(line)
    else:
        print(line)


def compose_network_exists() -> bool:
    """compose's default network for the project: podman-compose makes it on `up` and leaves it after `down`."""
    return podman("network", "exists", f"{PROJECT}_default", check=False).returncode == 0


@pytest.fixture(scope="module")
def running(pytestconfig):
    """The image built and started by compose; everything made here removed afterwards (the base image stays)."""
    if podman("container", "exists", CONTAINER_NAME, check=False).returncode == 0:
        pytest.fail(f"a container named {CONTAINER_NAME!r} already exists on this machine (another run's, or a "
                    f"deploy's); remove it (`podman rm -f {CONTAINER_NAME}`) and run again")
    base_image = ensure_image()
    tmp = Path(tempfile.mkdtemp(prefix="comfyinfra-image-", dir="/var/tmp"))
    tmp.chmod(0o755)
    wheelhouse = make_wheelhouse(tmp / "wheels")
    if wheelhouse is None:
        shutil.rmtree(tmp)
        pytest.skip("no torch 2.13.0+cpu wheel on this machine (/opt/wheels or PIP_FIND_LINKS)")
    port = free_port()
    plan = make_container_plan(plan_without_host(container_spec(tmp / "install", wheelhouse, base_image, port)))
    artifacts = container_artifacts(plan)
    image = image_of(artifacts, plan)
    network_was_there = compose_network_exists()  # e.g. left by the container host's e2e deploy: not ours to remove
    try:
        write_build_context(plan, artifacts)
        make_host_dirs(plan)
        started = time.monotonic()
        built = shell(plan.build_command(image), BUILD_TIMEOUT_S, log=tmp / "build.log")
        build_s = time.monotonic() - started
        assert built.returncode == 0, f"{plan.build_command(image)} failed:\n{built.stdout[-6000:]}"
        report(pytestconfig, f"[container image] {image} built in {build_s:.0f} s (log: {tmp / 'build.log'})")
        up = shell(plan.compose_command("up", "-d"), 300)
        assert up.returncode == 0, f"{plan.compose_command('up', '-d')} failed:\n{up.stdout[-3000:]}{up.stderr[-3000:]}"
        deadline = time.monotonic() + HEALTHY_TIMEOUT_S
        while (stats := system_stats(port)) is None and time.monotonic() < deadline:
            time.sleep(2)
        logs = podman("logs", "--tail", "40", CONTAINER_NAME, check=False)
        assert stats is not None, (f"/system_stats did not answer on 127.0.0.1:{port} within {HEALTHY_TIMEOUT_S} s;"
                                   f" container log:\n{logs.stdout}{logs.stderr}")
        yield plan, image, stats
    finally:
        shell(plan.compose_command("down"), 300)
        podman("rm", "-f", "-t", "0", CONTAINER_NAME, check=False)  # in case compose up half-failed
        if not network_was_there and compose_network_exists():
            podman("network", "rm", f"{PROJECT}_default", check=False)
        podman("rmi", "-f", image, check=False)
        if not os.environ.get("COMFYINFRA_KEEP_E2E"):
            shutil.rmtree(tmp, ignore_errors=True)


def test_system_stats_through_the_published_loopback_port(running):
    plan, _, stats = running
    assert [device["type"] for device in stats["devices"]] == ["cpu"], stats
    assert stats["system"]["pytorch_version"] == "2.13.0+cpu", stats
    ports = json.loads(podman("inspect", CONTAINER_NAME).stdout)[0]["HostConfig"]["PortBindings"]
    assert ports == {f"{plan.host.spec.port}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(plan.host.spec.port)}]}


def test_health_check_turns_healthy(running):
    # No systemd timer runs podman's health checks on this machine: run the container's own check once.
    check = podman("healthcheck", "run", CONTAINER_NAME, check=False)
    assert check.returncode == 0, f"healthcheck: {check.stdout}{check.stderr}"
    assert health_status() == "healthy"


def test_comfyui_runs_as_the_non_root_user(running):
    status = in_container("cat", "/proc/1/status", user="0")
    uids = next(line.split()[1:] for line in status.stdout.splitlines() if line.startswith("Uid:"))
    gids = next(line.split()[1:] for line in status.stdout.splitlines() if line.startswith("Gid:"))
    assert uids == [str(CONTAINER_UID)] * 4 and gids == [str(CONTAINER_UID)] * 4, status.stdout
    cmdline = in_container("cat", "/proc/1/cmdline", user="0").stdout.split("\0")[:-1]
    assert tuple(cmdline) == running[0].argv


def test_models_mount_is_read_only(running):
    plan = running[0]
    models = plan.inside.models
    assert in_container("cat", f"{models}/{MODEL_FILE}").stdout == "not a real model"
    for user in (str(CONTAINER_UID), "0"):  # even root in the container: the mount, not the permissions, refuses
        touched = in_container("touch", f"{models}/x", user=user)
        assert touched.returncode != 0 and "Read-only file system" in touched.stderr, (user, touched.stderr)
    assert not Path(plan.host.paths.models, "x").exists()


def test_checkout_and_venv_are_not_writable_by_the_user(running):
    plan = running[0]
    inside = plan.inside
    for path in (inside.app, f"{inside.custom_nodes}/demo", f"{inside.venv}/bin", inside.state):
        touched = in_container("touch", f"{path}/x", user=str(CONTAINER_UID))
        assert touched.returncode != 0 and "Permission denied" in touched.stderr, (path, touched.stderr)
    # Every file and directory of the tree, not only a sample: the image user may write none of them.
    walk = ("import os, sys\n"
            "writable = [os.path.join(d, n) for root in sys.argv[1:] for d, dirs, files in os.walk(root)\n"
            "            for n in ['.', *dirs, *files] if os.access(os.path.join(d, n), os.W_OK)]\n"
            "print('\\n'.join(writable[:20]))")
    found = in_container(inside.python, "-c", walk, inside.app, inside.venv, inside.state, user=str(CONTAINER_UID))
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "", f"writable by uid {CONTAINER_UID}:\n{found.stdout}"
    # ... while what ComfyUI writes is its own.
    for path in (inside.output, inside.input, inside.user, inside.temp, inside.home):
        assert in_container("touch", f"{path}/probe", user=str(CONTAINER_UID)).returncode == 0, path
