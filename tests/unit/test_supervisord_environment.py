"""supervisord, where the deploy starts it, passes its programs a clean, declared environment (not the SSH
session's) and the systemd unit's UMask=0027: the rendered programs read by supervisor's own parser, the
operation's commands, and those commands run for real against a supervisord in a temporary directory."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest
from supervisor.options import ServerOptions, UnhosedConfigParser

from comfyinfra.artifacts import host_artifacts
from comfyinfra.operations.service import SUPERVISORD_ENV, SupervisorStatus, supervisord_running
from tests.unit.test_operations import op_commands, run_op
from tests.unit.test_rendered_units import RTX4090, opt, plan_for  # noqa: F401 (opt is a fixture)

CONF = "/etc/supervisor/supervisord.conf"


def programs(plan) -> dict:
    """Every [program:x] of the rendered templates as supervisord itself would configure it."""
    parser = UnhosedConfigParser()
    for artifact in host_artifacts(replace(plan, service_manager="supervisor")):
        if artifact.dest.startswith("/etc/supervisor/"):
            parser.read_string(artifact.render().decode())
    options = ServerOptions()
    options.here = "/"
    found = {}
    for section in parser.sections():
        if parser.has_option(section, "user"):
            parser.set(section, "user", "root")  # the service user does not exist on this machine
        (config,) = options.processes_from_section(parser, section, section.split(":", 1)[1])
        found[config.name] = config
    return found


def test_every_program_gets_the_units_umask(opt):  # noqa: F811
    (opt / "logs").mkdir(parents=True)  # supervisord checks that each log file's directory exists
    found = programs(plan_for(opt, RTX4090, run_cron_daemon=True))
    assert set(found) == {"comfyui", "comfyui-gpu-monitor", "comfyui-cron"}
    assert {name: config.umask for name, config in found.items()} == dict.fromkeys(found, 0o027)


def test_supervisord_is_started_with_only_the_declared_environment():
    executed, *_ = run_op(supervisord_running, {re.compile(r"^if supervisorctl"): "supervisord=down"}, conf=CONF)
    (command,) = op_commands(executed)
    assert f"env -i PATH={dict(SUPERVISORD_ENV)['PATH']} LANG=C.UTF-8 supervisord -c {CONF}" in command
    assert command.count("supervisord -c") == 1  # no other way in: every start is the clean one


def test_a_supervisord_started_from_an_ssh_session_is_restarted_clean():
    executed, *_ = run_op(supervisord_running, {re.compile(r"^if supervisorctl"): ["supervisord=up", "environment=ssh"]},
                          conf=CONF)
    (command,) = op_commands(executed)
    assert "shutdown" in command and "env -i" in command
    clean, *_ = run_op(supervisord_running, {re.compile(r"^if supervisorctl"): ["supervisord=up", "comfyui=RUNNING"]},
                       conf=CONF)
    assert op_commands(clean) == []


needs_supervisord = pytest.mark.skipif(not (shutil.which("supervisord") and shutil.which("supervisorctl")),
                                       reason="needs supervisord and supervisorctl on PATH")


@needs_supervisord
def test_the_commands_give_the_program_a_clean_environment_and_the_umask(tmp_path):
    """The operation's command and the fact's, run here as from an SSH session, against a supervisord of our
    own (its socket, pid file and logs in tmp_path): nothing of the session reaches the program."""
    conf = tmp_path / "supervisord.conf"
    conf.write_text(f"""\
[unix_http_server]
file={tmp_path}/s.sock
[supervisord]
pidfile={tmp_path}/s.pid
logfile={tmp_path}/s.log
childlogdir={tmp_path}
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[supervisorctl]
serverurl=unix://{tmp_path}/s.sock
[program:probe]
command=/bin/sh -c 'tr "\\\\0" "\\\\n" < /proc/self/environ > {tmp_path}/environ; umask > {tmp_path}/umask; sleep 60'
umask=027
startsecs=0
""")
    session = {**os.environ, "SSH_CONNECTION": "203.0.113.9 50000 10.0.0.2 22", "SSH_CLIENT": "203.0.113.9 50000 22",
               "DEPLOYER_SECRET_HINT": "x"}
    subprocess.run(["supervisord", "-c", str(conf)], env=session, check=True, timeout=60)  # as older deploys did
    try:
        wait_for(lambda: (tmp_path / "environ").exists())
        dirty = int((tmp_path / "s.pid").read_text())
        (tmp_path / "environ").unlink()
        executed, *_ = run_op(supervisord_running, {re.compile(r"^if supervisorctl"): facts(conf, session)},
                              conf=str(conf))
        (command,) = op_commands(executed)
        subprocess.run(["sh", "-c", command], env=session, check=True, timeout=120)
        assert int((tmp_path / "s.pid").read_text()) != dirty  # shut down by the command, then started clean
        wait_for(lambda: (tmp_path / "umask").exists() and (tmp_path / "environ").exists())
        environ = dict(line.split("=", 1) for line in (tmp_path / "environ").read_text().splitlines() if "=" in line)
        assert not [key for key in environ if key.startswith("SSH_") or key == "DEPLOYER_SECRET_HINT"]
        assert environ["PATH"] == dict(SUPERVISORD_ENV)["PATH"] and environ["LANG"] == "C.UTF-8"
        assert (tmp_path / "umask").read_text().strip() == "0027"
        assert facts(conf, session) == ["supervisord=up", "probe=RUNNING"]  # clean now: the next run is a no-op
    finally:
        subprocess.run(["supervisorctl", "-c", str(conf), "shutdown"], capture_output=True, timeout=60)


def facts(conf: Path, env: dict) -> list[str]:
    """SupervisorStatus's output on this machine."""
    command = SupervisorStatus().command(str(conf))
    return subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True, timeout=60).stdout.split()


def wait_for(condition, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
