"""The ComfyUI service: supervisord (containers, hosts without systemd) or a hardened systemd unit.

Restarts happen only when something the running process uses changed (handlers idiom): code,
venv, torch, requirements, nodes, extra_model_paths, or the program/unit itself (flags, env). The
deploy ends with a health wait on /system_stats that checks the device and shows the last log
lines when it fails. Each restart is decided inside its operation, so `--dry` predicts it.
"""

import os
import shlex

from pyinfra.api import deploy

from comfyinfra.artifacts import PROGRAM_CONF, SERVICE, SUPERVISORD_CONF, UNIT, host_artifacts, of
from comfyinfra.operations.common import on_change
from comfyinfra.operations.service import (
    SupervisorStatus,
    SystemStats,
    secret_file,
    supervisor_programs_running,
    supervisord_running,
    wait_healthy,
)
from comfyinfra.operations.snapshot import probe
from comfyinfra.operations.system import PathState, SystemdUnit, absent_file, unit_running
from comfyinfra.plan import HostPlan
from roles import upload

SUPERVISORCTL = f"supervisorctl -c {SUPERVISORD_CONF}"


def or_show_logs(command: str, log_command: str) -> str:
    """Run command; when it fails (ComfyUI crashed on start), show why: the service's last log lines."""
    return (f"{command} || {{ rc=$?; echo 'comfyinfra: ComfyUI did not start; its last 30 log lines:' >&2; "
            f"{log_command} >&2; exit $rc; }}")


def log_command(plan: HostPlan) -> str:
    if plan.service_manager == "supervisor":
        return f"tail -n 30 {shlex.quote(plan.paths.logs + '/comfyui.log')}"  # root's shell: the path is one word
    return f"journalctl -u {SERVICE} -n 30 --no-pager"


def secrets_content(secrets: tuple[tuple[str, str], ...]) -> str:
    """KEY='value' lines from this machine's environment (presence and quoting checked by the preflight)."""
    return "".join(f"{key}='{os.environ[env]}'\n" for key, env in secrets)


def probes(plan: HostPlan) -> list:
    found = [probe(SystemStats, url=plan.health_url)]
    if not plan.spec.service_secrets:
        found.append(probe(PathState, path=plan.paths.secrets_env))
    if plan.service_manager == "supervisor":
        return [*found, probe(PathState, path=PROGRAM_CONF), probe(SupervisorStatus, conf=SUPERVISORD_CONF)]
    return [*found, probe(PathState, path=UNIT), probe(SystemdUnit, unit=f"{SERVICE}.service")]


@deploy("Service")
def service(plan: HostPlan, changed: list):
    logs = log_command(plan)
    artifacts = host_artifacts(plan)
    secrets = of(artifacts, "service", "secrets")
    if secrets:  # the file's values travel on stdin, never in an upload
        changed = [*changed, secret_file(name=secrets[0].name, path=secrets[0].dest, group=secrets[0].group,
                                         _stdin=secrets_content(secrets[0].secrets))]
    else:
        changed = [*changed, absent_file(name="Secrets env file: none declared", path=plan.paths.secrets_env)]
    if plan.service_manager == "supervisor":
        program, = upload(of(artifacts, "service", "service"))
        daemon = supervisord_running(name="supervisord running", conf=SUPERVISORD_CONF)
        reload = on_change(name="Reload supervisord program (flags or environment changed)",
                           commands=(or_show_logs(f"{SUPERVISORCTL} update {SERVICE}", logs),), watched=(program,))
        restart = on_change(name="Restart ComfyUI (code, venv, nodes or model paths changed)",
                            commands=(or_show_logs(f"{SUPERVISORCTL} restart {SERVICE}", logs),),
                            watched=tuple(changed), unless=(program,))
        started = supervisor_programs_running(name="ComfyUI running", conf=SUPERVISORD_CONF, programs=(SERVICE,),
                                              start_command=or_show_logs(f"{SUPERVISORCTL} start {SERVICE}", logs),
                                              after=(daemon, reload, restart))
        starts = (daemon, reload, restart, started)
    else:
        unit, = upload(of(artifacts, "service", "service"))
        on_change(name="systemd daemon-reload", commands=("systemctl daemon-reload",), watched=(unit,))
        started = unit_running(name="ComfyUI enabled and running", unit=f"{SERVICE}.service")
        restart = on_change(name="Restart ComfyUI (code, venv, nodes, model paths or unit changed)",
                            commands=(f"systemctl reset-failed {SERVICE}.service 2>/dev/null; "
                                      f"systemctl restart {SERVICE}.service",), watched=(unit, *changed),
                            unless=(started,))
        starts = (started, restart)

    wait_healthy(name=f"ComfyUI answers {plan.health_url} on {plan.expected_device}", url=plan.health_url,
                 timeout_s=plan.spec.health_timeout_s, log_command=logs, expect_device=plan.expected_device,
                 after=starts)
