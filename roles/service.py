"""The ComfyUI service: supervisord (containers, hosts without systemd) or a hardened systemd unit.

Restarts happen only when something the running process uses changed (handlers idiom): code,
venv, torch, requirements, nodes, extra_model_paths, or the program/unit itself (flags, env). The
deploy ends with a health wait on /system_stats that checks the device and shows the last log
lines when it fails.
"""

import os

from pyinfra.api import deploy
from pyinfra.operations import files, systemd

from comfyinfra.operations.common import on_change
from comfyinfra.operations.service import secret_file, supervisor_programs_running, supervisord_running, wait_healthy
from comfyinfra.plan import HostPlan
from roles import template

SERVICE = "comfyui"
SUPERVISORD_CONF = "/etc/supervisor/supervisord.conf"  # Debian/Ubuntu package layout
SUPERVISORCTL = f"supervisorctl -c {SUPERVISORD_CONF}"


def or_show_logs(command: str, log_command: str) -> str:
    """Run command; when it fails (ComfyUI crashed on start), show why: the service's last log lines."""
    return (f"{command} || {{ rc=$?; echo 'comfyinfra: ComfyUI did not start; its last 30 log lines:' >&2; "
            f"{log_command} >&2; exit $rc; }}")


def log_command(plan: HostPlan) -> str:
    if plan.service_manager == "supervisor":
        return f"tail -n 30 {plan.paths.logs}/comfyui.log"
    return f"journalctl -u {SERVICE} -n 30 --no-pager"


def secrets_content(plan: HostPlan) -> str:
    """KEY='value' lines from this machine's environment (presence and quoting checked by the preflight)."""
    return "".join(f"{key}='{os.environ[env]}'\n" for key, env in sorted(plan.spec.service_secrets.items()))


@deploy("Service")
def service(plan: HostPlan, changed: list):
    logs = log_command(plan)
    if plan.spec.service_secrets:
        changed = [*changed, secret_file(name=f"Secrets env file {plan.paths.secrets_env} (0600)",
                                         path=plan.paths.secrets_env, owner=plan.spec.service_user,
                                         _stdin=secrets_content(plan))]
    else:
        changed = [*changed, files.file(name="Secrets env file: none declared", path=plan.paths.secrets_env,
                                        present=False)]
    if plan.service_manager == "supervisor":
        program = template(name="supervisord program", src="supervisor-comfyui.conf.j2",
                           dest=f"/etc/supervisor/conf.d/{SERVICE}.conf", mode="644", plan=plan, service_name=SERVICE)
        supervisord_running(name="supervisord running", conf=SUPERVISORD_CONF)
        reload = on_change(name="Reload supervisord program (flags or environment changed)",
                           commands=(or_show_logs(f"{SUPERVISORCTL} update {SERVICE}", logs),), watched=(program,))
        restart = on_change(name="Restart ComfyUI (code, venv, nodes or model paths changed)",
                            commands=(or_show_logs(f"{SUPERVISORCTL} restart {SERVICE}", logs),),
                            watched=tuple(changed), unless=(program,))
        starts = (reload, restart)
        supervisor_programs_running(name="ComfyUI running", conf=SUPERVISORD_CONF, programs=(SERVICE,),
                                    start_command=or_show_logs(f"{SUPERVISORCTL} start {SERVICE}", logs), after=starts)
    else:
        unit = template(name="systemd unit (hardened)", src="comfyui.service.j2",
                        dest=f"/etc/systemd/system/{SERVICE}.service", mode="644", plan=plan, service_name=SERVICE)
        on_change(name="systemd daemon-reload", commands=("systemctl daemon-reload",), watched=(unit,))
        started = systemd.service(name="ComfyUI enabled and running", service=SERVICE, running=True, enabled=True)
        restart = on_change(name="Restart ComfyUI (code, venv, nodes, model paths or unit changed)",
                            commands=(f"systemctl restart {SERVICE}.service",), watched=(unit, *changed),
                            unless=(started,))
        starts = (started, restart)

    wait_healthy(name=f"ComfyUI answers {plan.health_url} on {plan.expected_device}", url=plan.health_url,
                 timeout_s=plan.spec.health_timeout_s, log_command=logs, expect_device=plan.expected_device,
                 after=starts)
