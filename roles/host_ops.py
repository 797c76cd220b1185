"""Host operations around ComfyUI: cleanup crons, daily log rotation, workflow templates, the GPU monitor."""

from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import crontab, files, systemd

from comfyinfra.operations.common import on_change
from comfyinfra.operations.service import supervisor_programs_running
from comfyinfra.plan import HostPlan
from comfyinfra.spec import WORKFLOWS_DIR
from roles import template
from roles.service import SERVICE, SUPERVISORCTL, SUPERVISORD_CONF

GPU_MONITOR = Path(__file__).resolve().parent.parent / "comfyinfra" / "host_helpers" / "gpu_monitor.py"


@deploy("Host operations")
def host_ops(plan: HostPlan):
    paths, user = plan.paths, plan.spec.service_user
    for job in host.loop(plan.cron):
        crontab.crontab(name=f"Cron: {job.name}", command=job.command, user=user, cron_name=job.name, **job.fields)
    template(name="logrotate: ComfyUI logs daily", src="logrotate.j2", dest=f"/etc/logrotate.d/{SERVICE}", mode="644",
             plan=plan)

    files.directory(name=f"Directory {paths.workflows}", path=paths.workflows, user=user, group=user, mode="755")
    for workflow in host.loop(plan.spec.smoke_workflows):
        files.put(name=f"Workflow template {workflow}", src=str(WORKFLOWS_DIR / workflow),
                  dest=f"{paths.workflows}/{workflow}", user=user, group=user, mode="644")

    monitor = bool(plan.gpus) and plan.spec.gpu_monitor
    if monitor:
        files.directory(name=f"Directory {paths.gpu_monitor_dir}", path=paths.gpu_monitor_dir, user=user, group=user,
                        mode="755")
        files.put(name="GPU monitor helper", src=str(GPU_MONITOR), dest=paths.gpu_monitor_helper, user=user, group=user,
                  mode="755")
    if plan.service_manager == "supervisor":
        extras_needed = monitor or plan.spec.run_cron_daemon
        extras_path = f"/etc/supervisor/conf.d/{SERVICE}-extras.conf"
        if extras_needed:
            extras = template(name="supervisord programs: GPU monitor, cron", src="supervisor-extras.conf.j2",
                              dest=extras_path, mode="644", plan=plan, service_name=SERVICE, gpu_monitor=monitor)
        else:
            extras = files.file(name="supervisord programs: none needed", path=extras_path, present=False)
        reload = on_change(name="Reload supervisord helper programs", commands=(f"{SUPERVISORCTL} update",),
                           watched=(extras,))
        helpers = ((f"{SERVICE}-gpu-monitor",) if monitor else ()) + ((f"{SERVICE}-cron",) if plan.spec.run_cron_daemon else ())
        if helpers:  # stopped by hand or crashed for good (supervisord gives up after startretries)
            supervisor_programs_running(name=f"Helper programs running ({', '.join(helpers)})", conf=SUPERVISORD_CONF,
                                        programs=helpers, after=(reload,))
    elif monitor:
        service = template(name="GPU monitor service", src="gpu-monitor.service.j2",
                           dest=f"/etc/systemd/system/{SERVICE}-gpu-monitor.service", mode="644", plan=plan)
        timer = template(name="GPU monitor timer", src="gpu-monitor.timer.j2",
                         dest=f"/etc/systemd/system/{SERVICE}-gpu-monitor.timer", mode="644", plan=plan)
        on_change(name="systemd daemon-reload (GPU monitor)", commands=("systemctl daemon-reload",),
                  watched=(service, timer))
        systemd.service(name="GPU monitor timer enabled", service=f"{SERVICE}-gpu-monitor.timer", running=True,
                        enabled=True)
