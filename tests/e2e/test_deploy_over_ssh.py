"""The real thing: `pyinfra <inventory> deploy.py -y` against this machine through a real sshd.

The tests run in file order and build on each other (a deploy takes a minute; repeating it per
test would cost the CI budget): `--dry` on a fresh host, a deploy that stops half-way, the first
deploy (predicted exactly by `--dry`), no-op redeploy, drift, a moved pin (predicted exactly), a
node that wants another torch, and an unreachable second host.
"""

from __future__ import annotations

import contextlib
import json
import os
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


def dry_run(world, *args, name="fleet", **overrides) -> set[str]:
    """What `pyinfra <inventory> deploy.py --dry --json` says would change on the host (by operation name)."""
    inventory = world.inventory(name, {HOST: world.host_data(**overrides)})
    result = pyinfra(inventory, "--dry", "--json", *args)
    assert result.rc == 0, explain(result)
    return {op["name"] for op in result.data["plan"]
            if HOST in op["hosts_with_change"] or HOST in op["hosts_with_conditional_change"]}


def assert_dry_run_predicts_the_deploy(world, **overrides):
    """`--dry` names exactly the operations the following real deploy changes; afterwards it names none."""
    predicted = dry_run(world, **overrides)
    result = deploy(world, **overrides)
    assert result.rc == 0, explain(result)
    assert predicted == set(result.changes(HOST)), f"predicted by --dry: {sorted(predicted)}\n{explain(result)}"
    assert dry_run(world, **overrides) == set()
    return result


def host_state(world) -> dict:
    """What a dry run must not touch: the install root, /etc (paths, sizes, mtimes), the service user's crontab."""
    etc = {}
    for top, dirs, files in os.walk("/etc"):
        for entry in dirs + files:
            path = os.path.join(top, entry)
            with contextlib.suppress(OSError):
                st = os.lstat(path)
                etc[path] = (st.st_size, st.st_mtime_ns)
    crontab = subprocess.run(["crontab", "-l", "-u", "comfy"], capture_output=True, text=True) \
        if Path("/usr/bin/crontab").exists() else None
    return {"install_root": Path(world.install_root).exists(), "etc": etc,
            "crontab": crontab and (crontab.returncode, crontab.stdout)}


def test_dry_run_on_a_fresh_host_changes_nothing_and_lists_the_work(world):
    before = host_state(world)
    assert before["install_root"] is False
    predicted = dry_run(world)
    for args in (("-y",), ("--diff",), ("--limit", HOST)):  # every habit: -y skips detection, --diff, --limit
        inventory = world.inventory("fleet", {HOST: world.host_data()})
        result = pyinfra(inventory, "--dry", *args)
        assert result.rc == 0, explain(result)
    assert host_state(world) == before, "a dry run changed the host"
    assert {f"ComfyUI | ComfyUI checkout @ {world.comfyui.commit[:12]}", "ComfyUI | PyTorch cpu: torch==2.13.0+cpu",
            "Custom nodes | Node demo requirements", "Service | supervisord program",
            f"Service | ComfyUI answers http://127.0.0.1:{world.port}/system_stats on cpu"} <= predicted, predicted
    assert not any(name.startswith("Service | Restart ComfyUI") for name in predicted)


def test_deploy_stopped_half_way_leaves_a_host_that_dry_run_reads(world):
    """A deploy that fails after the venv was made (no such torch): --dry on that host works, then the
    next deploy (the first test below) does exactly what --dry predicts."""
    result = deploy(world, torch={"torch": "2.13.99"})
    assert result.rc != 0
    assert Path(world.install_root, "venv", "bin", "python").exists(), explain(result)
    assert not Path(world.install_root, "ComfyUI", "custom_nodes", "demo").exists()


def test_first_deploy_brings_up_pinned_comfyui(world):
    predicted = dry_run(world)
    started = time.monotonic()
    result = deploy(world)
    elapsed = time.monotonic() - started
    assert result.rc == 0, explain(result)
    assert predicted == set(result.changes(HOST)), f"predicted by --dry: {sorted(predicted)}\n{explain(result)}"
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


def test_what_is_rendered_is_what_is_deployed(world):
    """Every file of the artifact list, on the host, byte for byte what the review render writes for it (the
    secrets file aside: markers in the render, values on the host)."""
    from comfyinfra.artifacts import host_artifacts
    from comfyinfra.facts import NvidiaGpus, Platform
    from comfyinfra.fleet import load_fleet
    from comfyinfra.plan import make_plan

    (target,) = load_fleet(str(world.inventory("fleet", {HOST: world.host_data()})))  # group_data merged, as deployed
    spec = target.spec

    def fact(cls):  # the e2e host is this machine
        out = subprocess.run(["sh", "-c", cls().command()], capture_output=True, text=True).stdout
        return cls().process(out.splitlines())

    compared = []
    for artifact in host_artifacts(make_plan(spec, fact(Platform), fact(NvidiaGpus))):
        if artifact.secrets:
            continue
        assert Path(artifact.dest).read_bytes() == artifact.render(), f"{artifact.dest} differs from its render"
        compared.append(artifact.dest)
    assert len(compared) >= 6, compared


def test_noop_deploy_asks_the_host_twice(world):
    """A no-op costs two round trips (the plan's facts, then the snapshot the roles compare against), not one
    or more per operation: counted in pyinfra's own -v log, not timed (bench/noop_redeploy.py times it)."""
    inventory = world.inventory("fleet", {HOST: world.host_data()})
    result = pyinfra(inventory, "-y", "--json", "-v")
    assert result.rc == 0 and result.changes(HOST) == [], explain(result)
    loaded = [line for line in result.stderr.splitlines() if "Loaded fact" in line]
    assert len(loaded) == 2 and all("Batch" in line for line in loaded), "\n".join(loaded)


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
    """--dry predicts it exactly. Requirements are reinstalled on every move of the checkout (their stamp
    holds the pin, not the file: a dry run can't read the file of a commit not fetched yet)."""
    pid = comfyui_pid(world)
    new_commit = world.comfyui.commit_change("NOTES.md", "release notes\n", "docs: notes")
    result = assert_dry_run_predicts_the_deploy(world, comfyui_ref=new_commit)
    assert set(result.changes(HOST)) == {
        f"ComfyUI | ComfyUI checkout @ {new_commit[:12]}",
        "ComfyUI | ComfyUI requirements (under the torch constraints)",
        "Torch integrity | Torch set's files match their RECORD",  # after any requirements install
        "Service | Restart ComfyUI (code, venv, nodes or model paths changed)",
        f"Service | ComfyUI answers http://127.0.0.1:{world.port}/system_stats on cpu",
    }, explain(result)
    assert comfyui_pid(world) != pid
    assert deploy(world).changes(HOST) == []


def test_moving_a_node_pin_and_a_flag_is_predicted_by_dry_run(world):
    node = world.node.commit_change("README.md", "demo node, patched\n", "docs")
    nodes = [world.node_entry(ref=node)]
    result = assert_dry_run_predicts_the_deploy(world, custom_nodes=nodes)
    assert "Custom nodes | Node demo @ " + node[:12] in result.changes(HOST)
    result = assert_dry_run_predicts_the_deploy(world, custom_nodes=nodes, preview_method="latent2rgb")
    assert "Service | Reload supervisord program (flags or environment changed)" in result.changes(HOST)
    assert_dry_run_predicts_the_deploy(world)  # back to the world's pins for the next tests


def test_node_that_would_replace_torch_fails_by_name(world):
    greedy = world.git.repo(FIXTURES / "custom_node_torch_conflict", "greedy-node")
    nodes = world.host_data()["custom_nodes"] + [world.node_entry(greedy.url, greedy.commit, name="greedy")]
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
