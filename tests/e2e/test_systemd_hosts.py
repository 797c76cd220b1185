"""The systemd path for real: Debian containers whose PID 1 is systemd, reached over SSH
(tests/support/systemd_hosts.py), deployed by the same `pyinfra <inventory> deploy.py`.

Two isolated systemd hosts and an unreachable third in one inventory. The fixture ComfyUI and the demo
node come from the e2e bare repos, mounted read-only as /srv/mirror (root-owned mirrors given as plain
paths and file:// URLs); every wheel from the e2e wheelhouse mounted as /srv/wheels (no_index): the
containers need no network. Checked from inside the running service, not from the unit file: its
mount table, capabilities and NoNewPrivs; then journald, kill -9, no-op, a flag change, --limit, the
smoke suite and the load test over both hosts.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest

from comfyinfra.plan import make_paths
from tests.e2e.harness import REPO_ROOT, pyinfra, write_inventory
from tests.support import hostile
from tests.support.fixture_host import MIRROR, WHEELS, container_host_data

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not shutil.which("podman"), reason="podman not installed")]
HOSTS = ("sysd-a", "sysd-b")
PORT = 8188
# sysd-b has a GPU as far as nvidia-smi says (tests/support/fake-nvidia-smi) and runs ComfyUI on the CPU:
# the plan keeps --cpu and the cpu torch, and the GPU monitor's timer samples the "GPU".
GPU_HOST = HOSTS[1]
PER_HOST = {GPU_HOST: {"cpu_only": True}}
FAKE_SMI = REPO_ROOT / "tests" / "support" / "fake-nvidia-smi"


@pytest.fixture(scope="module")
def fleet(world, wheelhouse_dir):
    from tests.support.systemd_hosts import systemd_hosts

    volumes = [(str(world.git.base), MIRROR), (str(wheelhouse_dir), WHEELS)]
    with systemd_hosts(2, world.root / "systemd-hosts", volumes=volumes) as hosts:
        named = dict(zip(HOSTS, hosts))
        named[GPU_HOST].exec("sh", "-c", "cat > /usr/local/bin/nvidia-smi && chmod 755 /usr/local/bin/nvidia-smi",
                             input=FAKE_SMI.read_text(), check=True)
        yield world, named


def host_data(world, name, host, **overrides) -> dict:
    return container_host_data(host.connection_data(), world.comfyui.commit, world.node.commit,
                               **{**PER_HOST.get(name, {}), **overrides})


def inventory(fleet, name="systemd", ghost=False, **overrides):
    world, hosts = fleet
    entries = {name_: host_data(world, name_, host, **overrides) for name_, host in hosts.items()}
    if ghost:
        entries["ghost"] = {**entries[HOSTS[0]], "ssh_port": 1, "ssh_connect_retries": 0}
    return write_inventory(world.root / f"{name}.py", entries)


def deploy(fleet, *args, **overrides):
    return pyinfra(inventory(fleet, **overrides), "-y", "--json", *args)


def explain(result) -> str:
    return f"rc={result.rc}\nchanged={result.changed}\nfailed={result.failed}\n--- stderr ---\n{result.stderr[-6000:]}"


def on(fleet, name: str, command: str) -> str:
    out = fleet[1][name].exec("sh", "-c", command)
    assert out.returncode == 0, f"{command}: {out.stderr}"
    return out.stdout.strip()


def main_pid(fleet, name: str) -> int:
    return int(on(fleet, name, "systemctl show -p MainPID --value comfyui"))


def wait_healthy(fleet, name: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = fleet[1][name].exec("curl", "-s", "-f", "-m", "3", f"http://127.0.0.1:{PORT}/system_stats")
        if out.returncode == 0:
            return json.loads(out.stdout)
        time.sleep(0.5)
    raise AssertionError(f"{name}: ComfyUI did not answer within {timeout} s")


def dry_run(fleet) -> dict[str, set[str]]:
    result = pyinfra(inventory(fleet, name="systemd-dry"), "--dry", "--json")
    assert result.rc == 0, explain(result)
    return {name: {op["name"] for op in result.data["plan"] if name in op["hosts_with_change"]} for name in HOSTS}


def test_two_systemd_hosts_deploy_and_the_unreachable_third_is_reported(fleet):
    predicted = dry_run(fleet)  # fresh systemd hosts: --dry works and names exactly what the deploy changes
    result = deploy(fleet, ghost=True)
    assert result.rc == 1, explain(result)  # pyinfra exits 1 when any host failed
    for name in HOSTS:
        assert predicted[name] == set(result.changes(name)), f"{name}: --dry said {sorted(predicted[name])}"
    assert "ghost" in result.stderr and "Could not connect" in result.stderr, explain(result)
    for name in HOSTS:
        assert name not in result.failed, explain(result)
        assert on(fleet, name, "ps -p 1 -o comm=") == "systemd"
        assert on(fleet, name, "systemctl is-active comfyui") == "active"
        assert on(fleet, name, "systemctl is-enabled comfyui") == "enabled"
        assert wait_healthy(fleet, name)["devices"][0]["type"] == "cpu"


def test_the_sandbox_is_in_force_inside_the_running_service(fleet):
    pid = main_pid(fleet, HOSTS[0])
    status = on(fleet, HOSTS[0], f"cat /proc/{pid}/status")
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.M) and re.search(r"^CapEff:\s+0+$", status, re.M), status
    assert re.search(r"^Uid:\s+(\d+)", status, re.M).group(1) != "0"
    mounts = [line.split() for line in on(fleet, HOSTS[0], f"cat /proc/{pid}/mountinfo").splitlines()]
    by_point = {fields[4]: fields[5].split(",") for fields in mounts}
    assert "ro" in by_point["/"], f"/ is not read-only for the service: {by_point['/']}"
    assert "/tmp" in by_point and "/var/tmp" in by_point, "no private /tmp for the service"
    paths = make_paths("/opt/comfyui")

    def options(path):  # of the mount that holds it: the longest mount point above it
        point = max((p for p in by_point if path == p or path.startswith(p.rstrip("/") + "/")), key=len)
        return by_point[point]

    for path in paths.service_writable():  # its own directories only; the checkout, venv, models: read-only
        assert "rw" in options(path), f"{path} is not writable for the service: {options(path)}"
    for path in (*paths.read_only(), paths.root, paths.logs):
        assert "ro" in options(path), f"{path} is writable for the service: {options(path)}"
    shown = on(fleet, HOSTS[0], "systemctl show comfyui -p User -p ProtectSystem -p PrivateTmp -p NoNewPrivileges "
                                "-p Restart -p UMask -p ReadWritePaths")
    assert {"User=comfy", "ProtectSystem=strict", "PrivateTmp=yes", "NoNewPrivileges=yes", "Restart=always",
            "UMask=0027", f"ReadWritePaths={' '.join(paths.service_writable())}"} <= set(shown.splitlines()), shown
    security = on(fleet, HOSTS[0], "systemd-analyze security comfyui --no-pager | tail -n 1")
    score = float(re.search(r"(\d+\.\d+)", security).group(1))
    assert score <= 4.0, security


def test_the_gpu_monitor_timer_samples_the_gpu_where_there_is_one(fleet):
    assert on(fleet, GPU_HOST, "systemctl is-enabled comfyui-gpu-monitor.timer") == "enabled"
    assert on(fleet, GPU_HOST, "systemctl is-active comfyui-gpu-monitor.timer") == "active"
    assert fleet[1][HOSTS[0]].exec("systemctl", "cat", "comfyui-gpu-monitor.timer").returncode != 0  # no GPU, no timer
    on(fleet, GPU_HOST, "systemctl start comfyui-gpu-monitor.service")  # one sample now (Type=oneshot waits)
    csv = f"{make_paths('/opt/comfyui').gpu_monitor_dir}/gpu-$(date -u +%F).csv"
    rows = on(fleet, GPU_HOST, f"cat {csv}").splitlines()
    assert rows[0].startswith("Timestamp,GPU,MemoryUsed_MB") and rows[-1].endswith(",0,1024,24564,4.2,41,3,31.5,OK"), rows
    assert on(fleet, GPU_HOST, f"stat -c %U {csv}") == "comfy"  # written by the service user, not root


CANARIES: dict[str, dict] = {}


def root_shell(fleet, name):
    def run(command):
        out = fleet[1][name].exec("sh", "-c", command)
        return out.returncode, out.stdout
    return run


def test_the_service_user_cannot_plant_anything_root_touches(fleet):
    """Issue 10 on systemd: canaries made here are checked after the flag change, kill -9, the failing start,
    the smoke suite and the load test (the module's last test)."""
    paths = make_paths("/opt/comfyui")
    for name in HOSTS:
        run = root_shell(fleet, name)
        CANARIES[name] = hostile.make_canaries(run, 3)
        assert hostile.writable_by_service(run, "comfy", paths, paths.gpu_monitor_dir) == [], name
        assert hostile.plant_links(run, "comfy", hostile.root_paths(paths, "systemd")) == [], name
        hostile.plant_in_own_dirs(run, "comfy", paths)


def test_journald_holds_comfyuis_log(fleet):
    log = on(fleet, HOSTS[0], "journalctl -u comfyui --no-pager -o cat")
    assert "To see the GUI go to" in log and "Setting output directory to: /opt/comfyui/output" in log


def test_noop_redeploy_changes_nothing_and_restarts_nothing(fleet):
    pids = {name: main_pid(fleet, name) for name in HOSTS}
    result = deploy(fleet)
    assert result.rc == 0, explain(result)
    for name in HOSTS:
        assert result.changes(name) == [], explain(result)
        assert main_pid(fleet, name) == pids[name]


def test_kill_9_is_restarted_by_systemd(fleet):
    before = main_pid(fleet, HOSTS[1])
    on(fleet, HOSTS[1], f"kill -9 {before}")
    started = time.monotonic()
    wait_healthy(fleet, HOSTS[1])
    assert main_pid(fleet, HOSTS[1]) not in (0, before)
    assert int(on(fleet, HOSTS[1], "systemctl show -p NRestarts --value comfyui")) >= 1
    assert time.monotonic() - started < 60
    assert deploy(fleet).changes(HOSTS[1]) == []


def test_flag_change_restarts_exactly_once_and_limit_picks_one_host(fleet):
    pids = {name: main_pid(fleet, name) for name in HOSTS}
    since = on(fleet, HOSTS[0], "date +%s")
    result = deploy(fleet, "--limit", HOSTS[0], preview_method="latent2rgb")
    assert result.rc == 0, explain(result)
    assert "Service | Restart ComfyUI (code, venv, nodes, model paths or unit changed)" in result.changes(HOSTS[0])
    assert result.changes(HOSTS[1]) == [] and main_pid(fleet, HOSTS[1]) == pids[HOSTS[1]]
    wait_healthy(fleet, HOSTS[0])
    starts = on(fleet, HOSTS[0], f"journalctl -u comfyui --since @{since} --no-pager -o cat | grep -c 'Starting server'")
    assert int(starts) == 1
    assert "--preview-method" in wait_healthy(fleet, HOSTS[0])["system"]["argv"]
    assert deploy(fleet, "--limit", HOSTS[0], preview_method="latent2rgb").changes(HOSTS[0]) == []
    assert deploy(fleet).rc == 0  # both hosts back to the same flags


def test_a_comfyui_that_cannot_start_fails_the_deploy_with_its_journal(fleet):
    """The failure path on systemd: the deploy's health wait gives up and shows journald's last lines; the unit
    stops restarting after its start limit instead of looping unseen; the next good deploy recovers."""
    world, _ = fleet
    main = (world.comfyui.work / "main.py").read_text()
    broken = world.comfyui.commit_change(
        "main.py", "import sys\nprint('fixture: simulated start-up crash', file=sys.stderr)\nsys.exit(3)\n", "crash")
    try:
        result = deploy(fleet, "--limit", HOSTS[1], comfyui_ref=broken, health_timeout_s=30)
        assert result.rc != 0
        assert "fixture: simulated start-up crash" in result.stderr, explain(result)
        time.sleep(5)
        assert on(fleet, HOSTS[1], "systemctl is-failed comfyui || true") == "failed"  # start limit reached
    finally:
        world.comfyui.commit_change("main.py", main, "restore start-up")
    result = deploy(fleet)  # a failed unit (start limit hit) is reset and started again
    assert result.rc == 0, explain(result)
    wait_healthy(fleet, HOSTS[1])


def test_smoke_suite_and_load_test_over_both_hosts(fleet, tmp_path):
    inv = inventory(fleet)
    report = tmp_path / "smoke.xml"
    proc = subprocess.run([sys.executable, "-m", "pytest", "tests/smoke", "--inventory", str(inv), "-q",
                           "-p", "no:cacheprovider", f"--junitxml={report}"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600)
    cases = list(ET.parse(report).getroot().iter("testcase"))
    failed = [c.get("name") for c in cases if c.find("failure") is not None or c.find("error") is not None]
    assert failed == [], proc.stdout[-4000:]
    for name in HOSTS:  # enabled at boot, checked for real; a cron daemon runs; the node loaded
        for test in ("test_service_is_running", "test_cron_daemon_running", "test_cleanup_crons_installed"):
            assert any(c.get("name") == f"{test}[ssh://{name}]" for c in cases), [c.get("name") for c in cases]
    summary = tmp_path / "load.json"
    load = subprocess.run([sys.executable, "-m", "comfyinfra.loadtest", "--inventory", str(inv), "--workflow",
                           "workflows/cpu_smoke.json", "--jobs", "6", "--concurrency", "2", "--timeout", "60",
                           "--output", str(summary)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert load.returncode == 0, load.stdout[-3000:] + load.stderr[-3000:]


def test_canaries_untouched_after_everything(fleet):
    assert CANARIES, "the planting test did not run"
    for name, before in CANARIES.items():
        assert hostile.canary_state(root_shell(fleet, name)) == before
