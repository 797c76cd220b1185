"""The verify side (comfyinfra.fleet, the load test's --inventory form, the smoke suite's conftest):

- it never imports pyinfra_cli, whose import monkey-patches threading and sockets with gevent, so the
  load test's workers are real OS threads (the inventory is loaded by a child process);
- the ssh_config it writes to $TMPDIR is removed on every way out, errors and Ctrl-C included;
- it validates the inventory without the deploy's secrets (model tokens, service secrets).

Everything that must not be patched runs in a fresh subprocess: this pytest process itself is patched
as soon as another test module imports pyinfra_cli.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from comfyinfra.fleet import FleetHost, load_fleet, ssh_config
from comfyinfra.spec import HostSpec
from comfyinfra.validate import InventoryError
from tests.support.fixture_comfyui import Server, make_checkout

REPO = Path(__file__).resolve().parents[2]
TOKEN_ENV, SECRET_ENV = "COMFYINFRA_VERIFY_UNSET_TOKEN", "COMFYINFRA_VERIFY_UNSET_SECRET"
SECRETS_INVENTORY = f'''
linux = [("h1", {{
    "ssh_hostname": "127.0.0.1", "ssh_port": 1, "ssh_user": "comfy",
    "model_catalog": {{"sd": {{"url": "https://x.invalid/sd.safetensors", "sha256": "{"a" * 64}", "folder": "vae",
                              "filename": "sd.safetensors", "token_env": "{TOKEN_ENV}"}}}},
    "models": ["sd"],
    "service_secrets": {{"API_KEY": "{SECRET_ENV}"}},
}})]
'''
WORKFLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": 255}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "verify"}},
}


def write_inventory(tmp_path: Path, body: str, name: str = "fleet.py") -> str:
    inventory = tmp_path / "inventory" / name
    inventory.parent.mkdir(exist_ok=True)
    inventory.write_text(textwrap.dedent(body).lstrip() + "\n")
    return str(inventory)


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in (TOKEN_ENV, SECRET_ENV)}
    return {**env, **extra}


def leftovers(tmpdir: Path) -> list[str]:
    return sorted(p.name for p in tmpdir.glob("comfyinfra-ssh-*.conf"))


def run_python(*parts: str, timeout=120) -> dict:
    """Run the code `parts` in a fresh interpreter from the repo root; it prints one JSON line last."""
    code = "\n".join(textwrap.dedent(part) for part in parts)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=clean_env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_smoke_collect(inventory: str, tmpdir: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "tests/smoke", "--inventory", inventory, "--collect-only",
                           "-q", "-p", "no:cacheprovider", *extra], cwd=REPO, capture_output=True, text=True,
                          timeout=180, env=clean_env(TMPDIR=str(tmpdir)))


def restore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a background shell may hand SIGINT down as ignored


def loadtest_cli(inventory: str, tmp_path: Path, tmpdir: Path, *extra: str) -> subprocess.Popen:
    workflow = tmp_path / "wf.json"
    workflow.write_text(json.dumps(WORKFLOW))
    return subprocess.Popen([sys.executable, "-m", "comfyinfra.loadtest", "--inventory", inventory,
                             "--workflow", str(workflow), "--jobs", "4", "--concurrency", "2", "--timeout", "30",
                             "--output", str(tmp_path / "out" / "load.json"), "--no-sla", *extra],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=clean_env(TMPDIR=str(tmpdir)), preexec_fn=restore_sigint)


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    server = Server(make_checkout(tmp_path_factory.mktemp("verify-comfyui")))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def tmpdir_(tmp_path):
    """A fresh $TMPDIR for the processes under test."""
    path = tmp_path / "tmpdir"
    path.mkdir()
    return path


def local_inventory(tmp_path: Path, port: int) -> str:
    return write_inventory(tmp_path, f'''
        linux = [("@local", {{"service_user": "comfy", "install_root": "{tmp_path}/comfyui",
                             "listen": "127.0.0.1", "port": {port}}})]
    ''', "local_fixture.py")


# -- A: no gevent patching, real threads -------------------------------------------------------------

PATCH_STATE = '''
import gevent.monkey, sys
state = {"threading": gevent.monkey.is_module_patched("threading"),
         "socket": gevent.monkey.is_module_patched("socket"), "pyinfra_cli": "pyinfra_cli" in sys.modules}
'''


def test_verify_side_imports_and_load_fleet_patch_nothing():
    result = run_python('''
        import json
        import comfyinfra.loadtest, comfyinfra.fleet, comfyinfra.client, comfyinfra.workflows
        import tests.smoke.conftest
        hosts = comfyinfra.fleet.load_fleet("inventory/local.py")
    ''', PATCH_STATE, '''
        print(json.dumps({"hosts": [h.name for h in hosts], "kind": hosts[0].spec.host_kind.value, **state}))
    ''')
    assert result["hosts"] == ["@local"] and result["kind"] == "linux"
    assert result["threading"] is False and result["socket"] is False, result
    assert result["pyinfra_cli"] is False, result


def test_load_test_workers_are_os_threads(comfy):
    """Four workers held at a barrier together must be four OS threads (one, if gevent had patched threading)."""
    result = run_python(f'''
        import json, threading
        from comfyinfra import loadtest
        from comfyinfra.fleet import load_fleet
        load_fleet("inventory/local.py")  # what the --inventory form does before measuring
        barrier, ids, real_run_job = threading.Barrier(4, timeout=30), [], loadtest.run_job

        def run_job(*args, **kw):
            ids.append(threading.get_native_id())
            if args[2] < 4:
                barrier.wait()
            return real_run_job(*args, **kw)

        loadtest.run_job = run_job
        summary = loadtest.run_load_test({comfy.url!r}, {WORKFLOW!r}, jobs=8, concurrency=4, timeout_s=30,
                                         sla=None, poll_s=0.05)
    ''', PATCH_STATE, '''
        print(json.dumps({"ids": ids, "succeeded": summary["succeeded"], **state}))
    ''')
    assert result["succeeded"] == 8, result
    assert len(set(result["ids"])) == 4, f"workers shared OS threads: {result}"
    assert not result["threading"] and not result["socket"] and not result["pyinfra_cli"], result


def test_smoke_suite_process_is_not_patched(tmp_path, tmpdir_):
    probe = tmp_path / "probe" / "verify_probe.py"
    probe.parent.mkdir()
    out = tmp_path / "probe.json"
    probe.write_text(textwrap.dedent('''
        import json
        def pytest_collection_finish(session):
        ''') + textwrap.indent(PATCH_STATE + f"open({str(out)!r}, 'w').write(json.dumps(state))\n", "    "))
    proc = subprocess.run([sys.executable, "-m", "pytest", "tests/smoke", "--inventory", "inventory/local.py",
                           "--collect-only", "-q", "-p", "no:cacheprovider", "-p", "verify_probe"], cwd=REPO,
                          capture_output=True, text=True, timeout=180,
                          env=clean_env(TMPDIR=str(tmpdir_), PYTHONPATH=str(probe.parent)))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert json.loads(out.read_text()) == {"threading": False, "socket": False, "pyinfra_cli": False}
    assert leftovers(tmpdir_) == []


# -- inventory loading through the child process -----------------------------------------------------

def test_load_fleet_rebuilds_hosts_with_their_ssh_settings_and_limits(tmp_path):
    inventory = write_inventory(tmp_path, '''
        linux = [("h1", {"ssh_hostname": "10.0.0.1", "ssh_port": 2222, "ssh_user": "ops", "port": 8190}),
                 ("h2", {"ssh_strict_host_key_checking": "yes"})]
        runpod = [("pod-1", {"ssh_key": "~/.ssh/pod"})]
    ''')
    hosts = {h.name: h for h in load_fleet(inventory)}
    assert set(hosts) == {"h1", "h2", "pod-1"} and all(isinstance(h, FleetHost) for h in hosts.values())
    assert isinstance(hosts["h1"].spec, HostSpec) and hosts["h1"].spec.port == 8190
    assert hosts["h1"].data == {"ssh_hostname": "10.0.0.1", "ssh_port": 2222, "ssh_user": "ops"}
    assert hosts["pod-1"].spec.host_kind.value == "runpod" and "runpod" in hosts["pod-1"].groups
    assert [h.name for h in load_fleet(inventory, ["runpod"])] == ["pod-1"]
    assert [h.name for h in load_fleet(inventory, ["h*"])] == ["h1", "h2"]
    with pytest.raises(ValueError, match="matches no host"):
        load_fleet(inventory, ["nope"])
    with ssh_config(list(hosts.values())) as path:
        text = Path(path).read_text()
    assert "Host h1\n    HostName 10.0.0.1\n    Port 2222\n    User ops\nHost h2\n    StrictHostKeyChecking yes" in text
    assert "IdentityFile ~/.ssh/pod" in text and text.endswith("Host *\n    StrictHostKeyChecking accept-new\n")


def test_invalid_inventory_keeps_its_clear_message(tmp_path):
    inventory = write_inventory(tmp_path, 'linux = [("h1", {"port": 70000})]\nrunpod = (["h2"], {"listen": "x"})')
    with pytest.raises(InventoryError) as error:
        load_fleet(inventory)
    message = str(error.value)
    assert inventory in message and "2 problem(s)" in message
    assert "host h1, field port (set in " + inventory + "): " in message and "less than or equal to 65535" in message
    assert "host h2, field listen" in message and "group runpod" in message


def test_unloadable_inventory_is_an_inventory_error(tmp_path):
    with pytest.raises(InventoryError, match="cannot load inventory .*broken.py"):
        load_fleet(write_inventory(tmp_path, "linux = [(", "broken.py"))


# -- C: no deploy secrets needed to verify --------------------------------------------------------

def test_verifying_needs_no_deploy_secrets(tmp_path, tmpdir_, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    monkeypatch.delenv(SECRET_ENV, raising=False)
    inventory = write_inventory(tmp_path, SECRETS_INVENTORY)
    [host] = load_fleet(inventory)
    assert host.spec.model_catalog["sd"].token_env == TOKEN_ENV and host.spec.service_secrets == {"API_KEY": SECRET_ENV}
    proc = run_smoke_collect(inventory, tmpdir_)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "[ssh://h1]" in proc.stdout
    assert leftovers(tmpdir_) == []


def test_smoke_suite_refuses_an_invalid_inventory_with_its_message(tmp_path, tmpdir_):
    inventory = write_inventory(tmp_path, 'linux = [("h1", {"comfyui_ref": "master"})]')
    proc = run_smoke_collect(inventory, tmpdir_)
    assert proc.returncode == 4, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "host h1, field comfyui_ref" in proc.stderr and "'master' is a branch" in proc.stderr
    assert leftovers(tmpdir_) == []


# -- B: no ssh_config left behind ------------------------------------------------------------------

def test_ssh_config_is_removed_when_the_block_is_interrupted():
    hosts = [FleetHost("h1", HostSpec.model_construct(), {"ssh_port": 22})]  # the ssh_config needs no spec
    with pytest.raises(KeyboardInterrupt):
        with ssh_config(hosts) as path:
            assert "Port 22" in Path(path).read_text()
            raise KeyboardInterrupt
    assert not Path(path).exists()


def test_smoke_collect_leaves_no_ssh_config(tmpdir_):
    proc = run_smoke_collect("inventory/prod.py", tmpdir_)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "[ssh://gpu-4090]" in proc.stdout
    assert leftovers(tmpdir_) == []


def test_load_test_inventory_run_leaves_no_ssh_config(comfy, tmp_path, tmpdir_):
    proc = loadtest_cli(local_inventory(tmp_path, comfy.port), tmp_path, tmpdir_)
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 0, stdout + stderr
    summary = json.loads((tmp_path / "out" / "load-local.json").read_text())
    assert summary["succeeded"] == 4 and summary["concurrency"] == 2
    assert leftovers(tmpdir_) == []


def test_failed_load_test_leaves_no_ssh_config(tmp_path, tmpdir_):
    with socket.socket() as s:  # a port nobody listens on: ssh is refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inventory = write_inventory(tmp_path, f'''
        linux = [("h1", {{"ssh_hostname": "127.0.0.1", "ssh_port": {port},
                         "ssh_known_hosts_file": "{tmp_path}/known_hosts"}})]
    ''')
    proc = loadtest_cli(inventory, tmp_path, tmpdir_)
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 2, stdout + stderr
    assert "ssh tunnel to h1" in stderr
    assert leftovers(tmpdir_) == []


def test_load_test_interrupted_while_the_tunnel_opens_leaves_no_ssh_config(tmp_path, tmpdir_):
    """Ctrl-C (SIGINT) while ssh hangs on a port that accepts TCP but never speaks SSH."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the TCP handshake; nobody ever answers
        inventory = write_inventory(tmp_path, f'''
            linux = [("h1", {{"ssh_hostname": "127.0.0.1", "ssh_port": {silent.getsockname()[1]},
                             "ssh_known_hosts_file": "{tmp_path}/known_hosts"}})]
        ''')
        proc = loadtest_cli(inventory, tmp_path, tmpdir_)
        try:
            deadline = time.monotonic() + 60
            while not leftovers(tmpdir_):  # the ssh_config exists: the tunnel is being opened
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the load test never wrote its ssh_config"
                time.sleep(0.05)
            time.sleep(0.5)
            assert proc.poll() is None, proc.communicate()
            proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 130, stdout + stderr
    assert "interrupted" in stderr
    assert leftovers(tmpdir_) == []
