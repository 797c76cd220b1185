"""Host operations around ComfyUI: cleanup crons, daily log rotation, workflow templates, the GPU monitor."""

from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.crontab import Crontab

from comfyinfra.operations.common import on_change
from comfyinfra.operations.service import supervisor_programs_running
from comfyinfra.operations.snapshot import probe
from comfyinfra.operations.system import (
    PathState,
    SystemdUnit,
    absent_file,
    cron_entry,
    directory,
    managed_file,
    unit_running,
)
from comfyinfra.plan import HostPlan
from comfyinfra.spec import WORKFLOWS_DIR
from roles import template
from roles.service import SERVICE, SUPERVISORCTL, SUPERVISORD_CONF

GPU_MONITOR = Path(__file__).resolve().parent.parent / "comfyinfra" / "host_helpers" / "gpu_monitor.py"
LOGROTATE = f"/etc/logrotate.d/{SERVICE}"
EXTRAS = f"/etc/supervisor/conf.d/{SERVICE}-extras.conf"
MONITOR_UNITS = tuple(f"/etc/systemd/system/{SERVICE}-gpu-monitor.{kind}" for kind in ("service", "timer"))


def helper_programs(plan: HostPlan) -> tuple[str, ...]:
    """supervisord programs beside ComfyUI (containers have no init to run them)."""
    return ((f"{SERVICE}-gpu-monitor",) if plan.gpu_monitor else ()) + \
        ((f"{SERVICE}-cron",) if plan.spec.run_cron_daemon else ())


def probes(plan: HostPlan) -> list:
    paths = plan.paths
    found = [probe(Crontab, user=plan.spec.service_user), probe(PathState, path=LOGROTATE),
             probe(PathState, path=paths.workflows),
             *(probe(PathState, path=f"{paths.workflows}/{w}") for w in plan.spec.smoke_workflows)]
    if plan.gpu_monitor:
        found += [probe(PathState, path=paths.gpu_monitor_dir), probe(PathState, path=paths.gpu_monitor_helper)]
    if plan.service_manager == "supervisor":
        return [*found, probe(PathState, path=EXTRAS)]  # program states: in the service role's SupervisorStatus
    if plan.gpu_monitor:
        found += [*(probe(PathState, path=unit) for unit in MONITOR_UNITS),
                  probe(SystemdUnit, unit=f"{SERVICE}-gpu-monitor.timer")]
    return found


@deploy("Host operations")
def host_ops(plan: HostPlan):
    paths, user = plan.paths, plan.spec.service_user
    for job in host.loop(plan.cron):
        cron_entry(name=f"Cron: {job.name}", command=job.command, user=user, cron_name=job.name, **job.fields)
    template("logrotate.j2", LOGROTATE, name="logrotate: ComfyUI logs daily", plan=plan)

    directory(name=f"Directory {paths.workflows}", path=paths.workflows, user="root", group="root", mode="755")
    for workflow in host.loop(plan.spec.smoke_workflows):
        managed_file(name=f"Workflow template {workflow}", content=(WORKFLOWS_DIR / workflow).read_bytes(),
                     dest=f"{paths.workflows}/{workflow}", mode="644")

    monitor = plan.gpu_monitor
    if monitor:  # the monitor runs as the service user: its program is root's, only its samples are its own
        directory(name=f"Directory {paths.gpu_monitor_dir}", path=paths.gpu_monitor_dir, user=user, group=user,
                  mode="750")
        managed_file(name="GPU monitor helper", content=GPU_MONITOR.read_bytes(), dest=paths.gpu_monitor_helper,
                     mode="755")
    if plan.service_manager == "supervisor":
        helpers = helper_programs(plan)
        if helpers:
            extras = template("supervisor-extras.conf.j2", EXTRAS, name="supervisord programs: GPU monitor, cron",
                              plan=plan, service_name=SERVICE, gpu_monitor=monitor)
        else:
            extras = absent_file(name="supervisord programs: none needed", path=EXTRAS)
        reload = on_change(name="Reload supervisord helper programs", commands=(f"{SUPERVISORCTL} update",),
                           watched=(extras,))
        if helpers:  # stopped by hand or crashed for good (supervisord gives up after startretries)
            supervisor_programs_running(name=f"Helper programs running ({', '.join(helpers)})", conf=SUPERVISORD_CONF,
                                        programs=helpers, after=(reload,))
    elif monitor:
        service = template("gpu-monitor.service.j2", MONITOR_UNITS[0], name="GPU monitor service", plan=plan)
        timer = template("gpu-monitor.timer.j2", MONITOR_UNITS[1], name="GPU monitor timer", plan=plan)
        on_change(name="systemd daemon-reload (GPU monitor)", commands=("systemctl daemon-reload",),
                  watched=(service, timer))
        unit_running(name="GPU monitor timer enabled", unit=f"{SERVICE}-gpu-monitor.timer")
