"""The testinfra smoke suite (tests/smoke) run against the e2e host through the same inventory:
green on a good deploy, and failing on exactly the broken thing when a node or a model is broken."""

from __future__ import annotations

import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import requests

from tests.e2e.harness import REPO_ROOT, pyinfra
from tests.support.model_server import ModelServer, make_safetensors

HOST = "target"
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def smoke_world(world):
    files = world.root / "smoke-models"
    with ModelServer(files) as server:
        sha, size = make_safetensors(files / "tiny.safetensors")
        catalog = {"tiny": {"url": server.url("tiny.safetensors"), "sha256": sha, "size": size, "folder": "loras",
                            "filename": "tiny.safetensors"}}
        nodes = [world.node_entry(node_classes=["DemoSolidImage", "DemoInvert"])]
        inventory = world.inventory("smoke", {HOST: world.host_data(model_catalog=catalog, models=["tiny"],
                                                                    custom_nodes=nodes, run_cron_daemon=True)})
        result = pyinfra(inventory, "-y", "--json")
        assert result.rc == 0, result.stderr[-4000:]
        yield world, inventory


def run_smoke(inventory: Path, tmp_path: Path) -> dict[str, str]:
    report = tmp_path / "smoke.xml"
    proc = subprocess.run([sys.executable, "-m", "pytest", "tests/smoke", "--inventory", str(inventory), "-q",
                           "-p", "no:cacheprovider", f"--junitxml={report}"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300)
    if not report.exists():
        raise AssertionError(proc.stdout[-3000:] + proc.stderr[-3000:])
    outcomes = {"__output__": proc.stdout[-4000:]}
    for case in ET.parse(report).getroot().iter("testcase"):
        state = "failed" if case.find("failure") is not None or case.find("error") is not None else (
            "skipped" if case.find("skipped") is not None else "passed")
        outcomes[case.get("name")] = state
    return outcomes


def failed(outcomes):
    return sorted(name for name, state in outcomes.items() if state == "failed" and name != "__output__")


def wait_healthy(world, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{world.port}/system_stats", timeout=2).raise_for_status()
            return
        except requests.RequestException:
            time.sleep(0.3)
    raise AssertionError("ComfyUI did not come back")


def test_smoke_suite_passes_on_a_good_deploy(smoke_world, tmp_path):
    world, inventory = smoke_world
    outcomes = run_smoke(inventory, tmp_path)
    assert failed(outcomes) == [], outcomes
    assert outcomes[f"test_custom_node_loaded[demo-ssh://{HOST}]"] == "passed"
    assert outcomes[f"test_model_present[tiny-ssh://{HOST}]"] == "passed"
    assert outcomes[f"test_system_stats_matches_the_pins[ssh://{HOST}]"] == "passed"
    assert outcomes[f"test_workflow_template_valid[cpu_smoke.json-ssh://{HOST}]"] == "passed"
    assert outcomes[f"test_generation[ssh://{HOST}]"] == "passed"


def test_broken_node_fails_exactly_its_test(smoke_world, tmp_path):
    world, inventory = smoke_world
    init = Path(world.install_root, "ComfyUI", "custom_nodes", "demo", "__init__.py")
    init.write_text(init.read_text() + "\nraise ImportError('broken on purpose')\n")
    subprocess.run(["supervisorctl", "-c", "/etc/supervisor/supervisord.conf", "restart", "comfyui"], check=True,
                   capture_output=True)
    wait_healthy(world)
    assert failed(run_smoke(inventory, tmp_path)) == [f"test_custom_node_loaded[demo-ssh://{HOST}]"]
    assert pyinfra(inventory, "-y").rc == 0  # the deploy corrects the drift and restarts ComfyUI
    assert failed(run_smoke(inventory, tmp_path)) == []


def test_missing_model_fails_exactly_its_test(smoke_world, tmp_path):
    world, inventory = smoke_world
    Path(world.install_root, "models", "loras", "tiny.safetensors").unlink()
    assert failed(run_smoke(inventory, tmp_path)) == [f"test_model_present[tiny-ssh://{HOST}]"]
    assert pyinfra(inventory, "-y").rc == 0
    assert failed(run_smoke(inventory, tmp_path)) == []


def test_stopped_cron_daemon_fails_exactly_its_test_and_the_deploy_starts_it(smoke_world, tmp_path):
    """RunPod-like: cron runs under supervisord. Stopped by hand, the smoke suite says so, and the next
    deploy starts it again (one change: 'Helper programs running'); the one after changes nothing."""
    world, inventory = smoke_world
    subprocess.run(["supervisorctl", "-c", "/etc/supervisor/supervisord.conf", "stop", "comfyui-cron"], check=True,
                   capture_output=True)
    assert failed(run_smoke(inventory, tmp_path)) == [f"test_cron_daemon_running[ssh://{HOST}]"]
    redeploy = pyinfra(inventory, "-y", "--json")
    assert redeploy.rc == 0 and redeploy.changes(HOST) == ["Host operations | Helper programs running (comfyui-cron)"], \
        redeploy.changed
    assert failed(run_smoke(inventory, tmp_path)) == []
    assert pyinfra(inventory, "-y", "--json").changes(HOST) == []


def test_load_test_against_the_inventory(smoke_world, tmp_path):
    world, inventory = smoke_world
    output = tmp_path / "load.json"
    proc = subprocess.run([sys.executable, "-m", "comfyinfra.loadtest", "--inventory", str(inventory),
                           "--workflow", "workflows/cpu_smoke.json", "--jobs", "8", "--concurrency", "2",
                           "--timeout", "60", "--output", str(output)], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = __import__("json").loads((tmp_path / f"load-{HOST}.json").read_text())
    assert summary["jobs"] == 8 and summary["succeeded"] == 8 and summary["sla"]["passed"]
    assert len((tmp_path / f"load-{HOST}.json.ndjson").read_text().splitlines()) == 8
    (REPO_ROOT / "build").mkdir(exist_ok=True)
    (REPO_ROOT / "build" / "loadtest-summary.json").write_text(__import__("json").dumps(summary, indent=2))
