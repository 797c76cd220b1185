"""The service user is the security boundary (issue 10), tried as an attacker on the supervisord host (this
machine, over the loopback sshd): after a deploy, the service user can write nothing under the tree but its own
directories; every link it tries to plant where root writes, reads or runs is refused; then a deploy that
changes flags and secrets, a restart, a ComfyUI that can't start and the smoke suite leave every root-only
canary as it was. The same attack on a systemd host: tests/e2e/test_systemd_hosts.py."""

from __future__ import annotations

import subprocess

import pytest

from comfyinfra.plan import make_paths
from tests.e2e.harness import pyinfra
from tests.e2e.test_smoke_over_ssh import failed, run_smoke
from tests.support import hostile

pytestmark = pytest.mark.e2e
HOST = "target"
SECRET_ENV = "COMFYINFRA_E2E_HOSTILE_SECRET"


def run(command: str) -> tuple[int, str]:
    proc = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout


def inventory(world, **overrides):
    data = world.host_data(service_secrets={"HF_TOKEN": SECRET_ENV}, run_cron_daemon=True, **overrides)
    return world.inventory("hostile", {HOST: data})


def deploy(world, secret="first", **overrides):
    return pyinfra(inventory(world, **overrides), "-y", "--json", env={SECRET_ENV: secret})


def test_the_service_user_cannot_reach_root(world, tmp_path):
    result = deploy(world)
    assert result.rc == 0, result.stderr[-4000:]
    paths = make_paths(world.install_root)
    canaries = hostile.make_canaries(run, 3)

    assert hostile.writable_by_service(run, "comfy", paths, paths.gpu_monitor_dir) == []
    assert hostile.plant_links(run, "comfy", hostile.root_paths(paths, "supervisor")) == []
    hostile.plant_in_own_dirs(run, "comfy", paths)

    changed = deploy(world, secret="second", preview_method="latent2rgb")  # flags, secrets file, a restart
    assert changed.rc == 0 and changed.changes(HOST), changed.stderr[-4000:]
    assert run("supervisorctl -c /etc/supervisor/supervisord.conf restart comfyui")[0] == 0

    main = (world.comfyui.work / "main.py").read_text()
    broken = world.comfyui.commit_change("main.py", "import sys\nsys.exit(3)\n", "break start-up")
    try:
        failing = deploy(world, comfyui_ref=broken, health_timeout_s=20)  # the failure path reads the log as root
        assert failing.rc != 0
    finally:
        world.comfyui.commit_change("main.py", main, "restore start-up")
    assert deploy(world).rc == 0

    outcomes = run_smoke(inventory(world), tmp_path)  # the version check reads git objects, runs nothing
    assert failed(outcomes) == [], outcomes["__output__"]
    assert hostile.canary_state(run) == canaries
    assert run(f"stat -c %U:%G {paths.secrets_env}")[1].strip() == "root:comfy"
    assert run(f"stat -c %U {paths.app} {paths.venv} {paths.state} {paths.models}")[1].split() == ["root"] * 4
