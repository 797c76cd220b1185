"""Host operations around ComfyUI: cleanup crons, daily log rotation, workflow templates, the GPU monitor."""

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.crontab import Crontab

from comfyinfra.artifacts import EXTRAS, LOGROTATE, MONITOR_UNITS, WSL_CONF, SERVICE, helper_programs, host_artifacts, of
from comfyinfra.operations.common import on_change
from comfyinfra.operations.service import supervisor_programs_running
from comfyinfra.operations.snapshot import probe
from comfyinfra.operations.system import (
    PathState,
    SystemdUnit,
    absent_file,
    cron_entry,
    directory,
    unit_running,
)
from comfyinfra.plan import HostPlan
from comfyinfra.spec import HostKind
from roles import upload
from roles.service import SUPERVISORCTL, SUPERVISORD_CONF


def probes(plan: HostPlan) -> list:
    paths = plan.paths
    found = [probe(Crontab, user=plan.spec.service_user), probe(PathState, path=LOGROTATE),
             probe(PathState, path=paths.workflows),
             *(probe(PathState, path=f"{paths.workflows}/{w}") for w in plan.spec.smoke_workflows)]
    if plan.gpu_monitor:
        found += [probe(PathState, path=paths.gpu_monitor_dir), probe(PathState, path=paths.gpu_monitor_helper)]
    if plan.spec.host_kind is HostKind.wsl:
        found.append(probe(PathState, path=WSL_CONF))
    if plan.service_manager == "supervisor":
        return [*found, probe(PathState, path=EXTRAS)]  # program states: in the service role's SupervisorStatus
    if plan.gpu_monitor:
        found += [*(probe(PathState, path=unit) for unit in MONITOR_UNITS),
                  probe(SystemdUnit, unit=f"{SERVICE}-gpu-monitor.timer")]
    return found


@deploy("Host operations")
def host_ops(plan: HostPlan):
    paths, user = plan.paths, plan.spec.service_user
    artifacts = of(host_artifacts(plan), "host_ops")
    for job in host.loop(plan.cron):
        cron_entry(name=f"Cron: {job.name}", command=job.command, user=user, cron_name=job.name, **job.fields)
    upload(of(artifacts, "host_ops", "logrotate"))
    upload(of(artifacts, "host_ops", "wsl"))  # WSL hosts only: read at the distro's next start

    directory(name=f"Directory {paths.workflows}", path=paths.workflows, user="root", group="root", mode="755")
    upload(of(artifacts, "host_ops", "workflows"))

    monitor = plan.gpu_monitor
    if monitor:  # the monitor runs as the service user: its program is root's, only its samples are its own
        directory(name=f"Directory {paths.gpu_monitor_dir}", path=paths.gpu_monitor_dir, user=user, group=user,
                  mode="750")
        upload(of(artifacts, "host_ops", "gpu-monitor"))
    if plan.service_manager == "supervisor":
        helpers = helper_programs(plan)
        if helpers:
            extras, = upload(of(artifacts, "host_ops", "helpers"))
        else:
            extras = absent_file(name="supervisord programs: none needed", path=EXTRAS)
        reload = on_change(name="Reload supervisord helper programs", commands=(f"{SUPERVISORCTL} update",),
                           watched=(extras,))
        if helpers:  # stopped by hand or crashed for good (supervisord gives up after startretries)
            supervisor_programs_running(name=f"Helper programs running ({', '.join(helpers)})", conf=SUPERVISORD_CONF,
                                        programs=helpers, after=(reload,))
    elif monitor:
        service, timer = upload(of(artifacts, "host_ops", "helpers"))
        on_change(name="systemd daemon-reload (GPU monitor)", commands=("systemctl daemon-reload",),
                  watched=(service, timer))
        unit_running(name="GPU monitor timer enabled", unit=f"{SERVICE}-gpu-monitor.timer")
