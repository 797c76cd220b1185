"""Service lifecycle on the sshd harness host: self-healing, restarts only on change, crons, log rotation."""

from __future__ import annotations

import grp
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.e2e.harness import pyinfra

HOST = "target"
SUPERVISORD_LOG = Path("/var/log/supervisor/supervisord.log")
pytestmark = pytest.mark.e2e


def deploy(world, **overrides):
    return pyinfra(world.inventory("lifecycle", {HOST: world.host_data(**overrides)}), "-y", "--json")


def pid(world) -> int:
    out = subprocess.run(["supervisorctl", "-c", "/etc/supervisor/supervisord.conf", "pid", "comfyui"],
                         capture_output=True, text=True).stdout.strip()
    return int(out)


def stats(world):
    return requests.get(f"http://127.0.0.1:{world.port}/system_stats", timeout=5).json()


def spawns() -> int:
    return len(re.findall(r"spawned: 'comfyui' ", SUPERVISORD_LOG.read_text())) if SUPERVISORD_LOG.exists() else 0


def test_killed_comfyui_is_healthy_again_within_15_s(world):
    from tests.e2e.test_deploy_over_ssh import record

    assert deploy(world).rc == 0
    before = pid(world)
    os.kill(before, signal.SIGKILL)
    started = time.monotonic()
    while time.monotonic() - started < 60:
        try:
            if stats(world)["devices"][0]["type"] == "cpu":
                break
        except (requests.RequestException, ValueError, KeyError):
            time.sleep(0.2)
    recovered = time.monotonic() - started
    record("kill9_to_healthy_s", round(recovered, 1))
    assert pid(world) != before
    assert recovered <= 15, f"ComfyUI answered again only after {recovered:.1f} s"


def test_flag_change_restarts_once_with_the_new_argv(world):
    before_pid, before_spawns = pid(world), spawns()
    result = deploy(world, preview_method="auto")
    assert result.rc == 0, result.stderr[-4000:]
    assert "--preview-method" in stats(world)["system"]["argv"]
    assert stats(world)["system"]["argv"][stats(world)["system"]["argv"].index("--preview-method") + 1] == "auto"
    assert pid(world) != before_pid and spawns() == before_spawns + 1
    again = deploy(world, preview_method="auto")
    assert again.changes(HOST) == [] and spawns() == before_spawns + 1


def test_cleanup_crons_exist_once_and_delete_only_old_files(world):
    assert deploy(world).rc == 0
    assert deploy(world).changes(HOST) == []
    crontab = subprocess.run(["crontab", "-l", "-u", "comfy"], capture_output=True, text=True).stdout
    jobs = {}
    for directory in ("output", "temp", "input"):
        marker = f"# pyinfra-name=comfyinfra cleanup {directory} ({world.port})"
        assert crontab.count(marker) == 1, crontab
        jobs[directory] = crontab.split(marker, 1)[1].strip().splitlines()[0].split(" ", 5)[5]
    root = Path(world.install_root)
    ages = {"output": (23 * 60, 25 * 60), "temp": (30, 90), "input": (6 * 24 * 60, 8 * 24 * 60)}
    made = {}
    for directory, (young, old) in ages.items():
        base = root / directory
        for label, minutes in (("young", young), ("old", old)):
            path = base / f"cleanup-{label}.png"
            path.write_bytes(b"x")
            stamp = time.time() - minutes * 60
            os.utime(path, (stamp, stamp))
            made[(directory, label)] = path
    for directory, command in jobs.items():  # run each entry's command as cron would, as the service user
        subprocess.run(["su", "-s", "/bin/sh", "comfy", "-c", command], check=True)
    for (directory, label), path in made.items():
        assert path.exists() == (label == "young"), f"{directory}/{path.name}"


def test_log_rotation_config_is_valid_for_logrotate(world):
    debug = subprocess.run(["logrotate", "-d", "/etc/logrotate.d/comfyui"], capture_output=True, text=True)
    assert debug.returncode == 0, debug.stderr
    assert f"{world.install_root}/logs/*.log" in debug.stderr and "rotating pattern" in debug.stderr


def test_service_secrets_reach_comfyui_through_a_root_owned_file_only(world):
    import secrets as random_secrets

    value = "sk-" + random_secrets.token_hex(16)
    inventory = world.inventory("secrets", {HOST: world.host_data(service_secrets={"COMFY_API_KEY": "COMFYINFRA_TEST_KEY"})})
    env = {"COMFYINFRA_TEST_KEY": value}
    result = pyinfra(inventory, "-y", "--json", "-vv", "--diff", env=env)
    assert result.rc == 0, result.stderr[-4000:]
    secrets_env = Path(world.install_root, ".comfyinfra", "secrets.env")
    info = secrets_env.stat()  # root's, readable by the service's group only (its shell wrapper sources it)
    assert (info.st_mode & 0o777, info.st_uid, grp.getgrgid(info.st_gid).gr_name) == (0o640, 0, "comfy")
    assert secrets_env.read_text() == f"COMFY_API_KEY='{value}'\n"
    process_env = Path(f"/proc/{pid(world)}/environ").read_bytes().split(b"\0")
    assert f"COMFY_API_KEY={value}".encode() in process_env
    assert value not in result.stderr and value not in result.stdout
    leaked = subprocess.run(["grep", "-rl", "--exclude=secrets.env", value, world.install_root, "/etc/supervisor"],
                            capture_output=True, text=True)
    assert leaked.stdout == ""
    assert pyinfra(inventory, "-y", "--json", env=env).changes(HOST) == []  # compared on the host, idempotent
    assert deploy(world).rc == 0 and not secrets_env.exists()  # removed when no longer declared
