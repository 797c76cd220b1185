"""The ComfyUI service: supervisord (containers, hosts without systemd) or a systemd unit.

Restarts happen only when something the running process uses changed (handlers idiom); the deploy
ends with a health wait on /system_stats that shows the last log lines when it fails.
"""

from pyinfra.api import deploy
from pyinfra.operations import server, systemd
from pyinfra.operations.util import any_changed

from comfyinfra.operations import supervisor_program_running, supervisord_running, wait_healthy
from comfyinfra.plan import HostPlan
from roles import template

SERVICE = "comfyui"
SUPERVISORD_CONF = "/etc/supervisor/supervisord.conf"  # Debian/Ubuntu package layout


def or_show_logs(command: str, log_command: str) -> str:
    """Run command; when it fails (ComfyUI crashed on start), show why: the service's last log lines."""
    return (f"{command} || {{ rc=$?; echo 'comfyinfra: ComfyUI did not start; its last 30 log lines:' >&2; "
            f"{log_command} >&2; exit $rc; }}")


@deploy("Service")
def service(plan: HostPlan, changed: list):
    if plan.service_manager == "supervisor":
        log_command = f"tail -n 30 {plan.paths.logs}/comfyui.log"
        program = template(name="supervisord program", src="supervisor-comfyui.conf.j2",
                           dest=f"/etc/supervisor/conf.d/{SERVICE}.conf", mode="644",
                           plan=plan, service_name=SERVICE)
        supervisord_running(name="supervisord running", conf=SUPERVISORD_CONF)
        ctl = f"supervisorctl -c {SUPERVISORD_CONF}"
        server.shell(name="Reload supervisord program", commands=[or_show_logs(f"{ctl} update {SERVICE}", log_command)],
                     _if=program.did_change)
        server.shell(name="Restart ComfyUI (code, venv or nodes changed)",
                     commands=[or_show_logs(f"{ctl} restart {SERVICE}", log_command)],
                     _if=[any_changed(*changed), lambda: not program.did_change()])
        supervisor_program_running(name="ComfyUI running", conf=SUPERVISORD_CONF, program=SERVICE,
                                   start_command=or_show_logs(f"{ctl} start {SERVICE}", log_command))
    else:
        log_command = f"journalctl -u {SERVICE} -n 30 --no-pager"
        unit = template(name="systemd unit", src="comfyui.service.j2", dest=f"/etc/systemd/system/{SERVICE}.service",
                        mode="644", plan=plan)
        systemd.daemon_reload(name="systemd daemon-reload", _if=unit.did_change)
        systemd.service(name="ComfyUI enabled and running", service=SERVICE, running=True, enabled=True)
        systemd.service(name="Restart ComfyUI (code, venv, nodes or unit changed)", service=SERVICE, restarted=True,
                        _if=any_changed(unit, *changed))

    wait_healthy(name=f"ComfyUI answers {plan.health_url}", url=plan.health_url,
                 timeout_s=plan.spec.health_timeout_s, log_command=log_command)
