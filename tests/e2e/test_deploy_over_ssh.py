"""The real thing: `pyinfra <inventory> deploy.py -y` against this machine through a real sshd.

The tests run in file order and build on each other (a deploy takes a minute; repeating it per
test would cost the CI budget): first deploy, no-op redeploy, drift, a moved pin, a node that
wants another torch, and an unreachable second host.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.e2e.harness import FIXTURES, REPO_ROOT, pyinfra

HOST = "target"
REPORT = REPO_ROOT / "build" / "e2e-report.json"
pytestmark = pytest.mark.e2e


def record(key: str, value) -> None:
    REPORT.parent.mkdir(exist_ok=True)
    data = json.loads(REPORT.read_text()) if REPORT.exists() else {}
    data[key] = value
    REPORT.write_text(json.dumps(data, indent=2) + "\n")


def system_stats(world) -> dict:
    response = requests.get(f"http://127.0.0.1:{world.port}/system_stats", timeout=5)
    response.raise_for_status()
    return response.json()


def comfyui_pid(world) -> int:
    out = subprocess.run(["supervisorctl", "-c", "/etc/supervisor/supervisord.conf", "pid", "comfyui"],
                         capture_output=True, text=True).stdout.strip()
    return int(out)


def deploy(world, name="fleet", **overrides):
    inventory = world.inventory(name, {HOST: world.host_data(**overrides)})
    return pyinfra(inventory, "-y", "--json")


def explain(result) -> str:
    return f"rc={result.rc}\nchanged={result.changed}\nfailed={result.failed}\n--- stderr ---\n{result.stderr[-6000:]}"


def test_first_deploy_brings_up_pinned_comfyui(world):
    started = time.monotonic()
    result = deploy(world)
    elapsed = time.monotonic() - started
    assert result.rc == 0, explain(result)
    record("first_deploy_s", round(elapsed, 1))
    record("first_deploy_changed_ops", len(result.changes(HOST)))

    stats = system_stats(world)
    assert stats["system"]["pytorch_version"] == "2.13.0+cpu"
    assert stats["devices"][0]["type"] == "cpu"
    assert "--cpu" in stats["system"]["argv"] and str(world.port) in stats["system"]["argv"]
    head = subprocess.run(["git", "-c", "safe.directory=*", "-C", f"{world.install_root}/ComfyUI", "rev-parse", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    assert head == world.comfyui.commit
    info = requests.get(f"http://127.0.0.1:{world.port}/object_info", timeout=10).json()
    assert info["DemoSolidImage"]["python_module"] == "custom_nodes.demo"
    constraints = Path(world.install_root, ".comfyinfra", "constraints.txt").read_text()
    assert "torch==2.13.0+cpu" in constraints


def test_second_deploy_reports_zero_changes(world):
    pid = comfyui_pid(world)
    started = time.monotonic()
    result = deploy(world)
    record("noop_deploy_s", round(time.monotonic() - started, 1))
    assert result.rc == 0, explain(result)
    record("second_deploy_changed_ops", len(result.changes(HOST)))
    assert result.changes(HOST) == [], explain(result)
    assert comfyui_pid(world) == pid, "a no-op deploy restarted ComfyUI"


def test_local_changes_in_the_checkout_are_corrected_and_reported(world):
    tampered = Path(world.install_root, "ComfyUI", "comfyui_version.py")
    original = tampered.read_text()
    tampered.write_text('__version__ = "hacked"\n')
    result = deploy(world)
    assert result.rc == 0, explain(result)
    assert tampered.read_text() == original
    assert "drift corrected" in result.stderr and "with local changes" in result.stderr
    assert any(name.startswith("ComfyUI | ComfyUI checkout") for name in result.changes(HOST))


def test_moving_the_pinned_commit_redeploys_exactly_the_changed_parts(world):
    pid = comfyui_pid(world)
    new_commit = world.comfyui.commit_change("NOTES.md", "release notes\n", "docs: notes")
    result = deploy(world, comfyui_ref=new_commit)
    assert result.rc == 0, explain(result)
    changed = set(result.changes(HOST)) - {f"Service | ComfyUI answers http://127.0.0.1:{world.port}/system_stats on cpu"}
    assert changed == {
        f"ComfyUI | ComfyUI checkout @ {new_commit[:12]}",
        "Service | Restart ComfyUI (code, venv, nodes or model paths changed)",
    }, explain(result)
    assert comfyui_pid(world) != pid
    assert deploy(world).changes(HOST) == []


def test_node_that_would_replace_torch_fails_by_name(world):
    greedy = world.git.repo(FIXTURES / "custom_node_torch_conflict", "greedy-node")
    nodes = world.host_data()["custom_nodes"] + [{"name": "greedy", "repo": greedy.url, "ref": greedy.commit}]
    result = deploy(world, name="greedy", custom_nodes=nodes)
    assert result.rc != 0
    assert "custom node 'greedy' needs packages that conflict with the pinned torch set" in result.stderr, explain(result)
    assert system_stats(world)["system"]["pytorch_version"] == "2.13.0+cpu"
    venv_torch = subprocess.run([f"{world.install_root}/venv/bin/python", "-c", "import torch; print(torch.__version__)"],
                                capture_output=True, text=True).stdout.strip()
    assert venv_torch == "2.13.0+cpu"


def test_comfyui_that_cannot_start_fails_the_deploy_with_its_log(world):
    good = world.comfyui.commit
    main = (world.comfyui.work / "main.py").read_text()
    broken = world.comfyui.commit_change(
        "main.py", "import sys\nprint('fixture: simulated start-up crash', file=sys.stderr)\nsys.exit(3)\n", "break start-up")
    result = deploy(world, comfyui_ref=broken, health_timeout_s=20)
    assert result.rc != 0
    assert "ComfyUI did not start; its last 30 log lines" in result.stderr or "did not answer" in result.stderr, explain(result)
    assert "fixture: simulated start-up crash" in result.stderr, explain(result)
    world.comfyui.commit_change("main.py", main, "restore start-up")  # back to a working tree for the next tests
    assert world.comfyui.commit != good
    recovered = deploy(world)
    assert recovered.rc == 0, explain(recovered)
    assert system_stats(world)["system"]["pytorch_version"] == "2.13.0+cpu"


def test_unreachable_host_is_reported_and_does_not_stop_the_other(world):
    ghost = {**world.host_data(), "ssh_port": 1, "ssh_connect_retries": 0}
    inventory = world.inventory("two", {HOST: world.host_data(), "ghost": ghost})
    result = pyinfra(inventory, "-y", "--json")
    assert result.rc == 1  # pyinfra: any failed host
    assert "ghost" in result.stderr and "Could not connect" in result.stderr, explain(result)
    assert result.failed.get(HOST) is None
    assert system_stats(world)["system"]["pytorch_version"] == "2.13.0+cpu"
