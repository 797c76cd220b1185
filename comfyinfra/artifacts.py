"""Every file a host gets, and the one place that says so: `host_artifacts(plan)`.

Each Artifact names its destination, what it is made from (a template of templates/ with one named view of the
plan, a file shipped with comfyinfra, or the service's secrets), its owner and mode, whether a change means
restarting ComfyUI, the role that uploads it and the operation name it is uploaded under. The roles upload these
(comfyinfra.operations.system.managed_file; the secrets through service.secret_file, on stdin), the review render
writes them under rendered/<host>/ (comfyinfra.render), the tests read them. Pure: no pyinfra, no host.

A template sees one view object made from the plan for it (never the raw spec), so what a template can depend on
is written down here, and a change to the spec reaches a file only through its view.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from comfyinfra.plan import HostPlan
from comfyinfra.quoting import JINJA_FILTERS
from comfyinfra.spec import MODEL_FOLDERS, WORKFLOWS_DIR, HostKind

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = REPO / "templates"
HOST_HELPERS = Path(__file__).resolve().parent / "host_helpers"

SERVICE = "comfyui"
SUPERVISORD_CONF = "/etc/supervisor/supervisord.conf"  # Debian/Ubuntu package layout
PROGRAM_CONF = f"/etc/supervisor/conf.d/{SERVICE}.conf"
EXTRAS = f"/etc/supervisor/conf.d/{SERVICE}-extras.conf"
UNIT = f"/etc/systemd/system/{SERVICE}.service"
MONITOR_UNITS = tuple(f"/etc/systemd/system/{SERVICE}-gpu-monitor.{kind}" for kind in ("service", "timer"))
LOGROTATE = f"/etc/logrotate.d/{SERVICE}"
WSL_CONF = "/etc/wsl.conf"

_JINJA = Environment(undefined=StrictUndefined, keep_trailing_newline=True, loader=FileSystemLoader(str(TEMPLATES)))
# Every value a template writes goes through the filter for its target format (systemd_exec, supervisor_env,
# yaml_value, ...): comfyinfra.quoting escapes what the format gives a meaning to and refuses what it can't carry.
_JINJA.filters.update(JINJA_FILTERS)


def render_template(src: str, **context) -> bytes:
    """A template from templates/ rendered with `context` (StrictUndefined: a missing variable is an error)."""
    return _JINJA.get_template(src).render(**context).encode()


def secret_marker(env: str) -> str:
    return f"<secret from env {env}>"


@dataclass(frozen=True)
class Artifact:
    role: str  # the roles/ module that uploads it
    step: str  # which of that role's uploads (the role interleaves them with directories and reloads)
    name: str  # the upload's operation name, as --dry and the e2e tests show it
    dest: str  # absolute path on the host
    template: str | None = None  # templates/<template>, rendered with `context`
    context: dict[str, Any] = field(default_factory=dict)  # {variable: view}: one named view of the plan
    source: Path | None = None  # a file shipped with comfyinfra, uploaded as it is
    secrets: tuple[tuple[str, str], ...] = ()  # (name in the service, env var on the controller): names only
    mode: str = "644"
    user: str = "root"
    group: str = "root"
    restarts: bool = False  # a change means restarting (or reloading) ComfyUI
    access: str | None = None  # Windows hosts: who may read and write it (NTFS ACLs; user, group, mode don't apply)

    @property
    def rendered_path(self) -> str:
        """Where the review render puts it under rendered/<host>: the absolute path, C:\\x\\y as /C/x/y."""
        if self.dest[1:3] == ":\\":
            return "/" + self.dest[0] + self.dest[2:].replace("\\", "/")
        return self.dest

    def render(self) -> bytes:
        """The file's bytes; for the secrets file, markers in place of values (the values travel on stdin)."""
        if self.template is not None:
            return render_template(self.template, **self.context)
        if self.source is not None:
            return self.source.read_bytes()
        return "".join(f"{key}={secret_marker(env)}\n" for key, env in self.secrets).encode()


# --- views: what each template may read ---------------------------------------------------------------------

@dataclass(frozen=True)
class ServiceView:
    """ComfyUI's process, for its systemd unit or supervisord program."""

    name: str
    label: str  # the ComfyUI pin, for people
    listen: str
    port: int
    user: str
    workdir: str
    env: tuple[tuple[str, str], ...]
    secrets_env: str
    argv: tuple[str, ...]
    supervisor_command: str
    writable_paths: tuple[str, ...]
    read_only_paths: tuple[str, ...]
    protect_home: str
    gpu_devices: bool
    log_file: str
    logrotate: str


@dataclass(frozen=True)
class GpuMonitorView:
    """The GPU monitor as a systemd service + timer."""

    user: str
    python: str
    helper: str
    samples_dir: str
    interval_s: int
    retention_days: int
    protect_home: str


@dataclass(frozen=True)
class HelperProgramsView:
    """Programs supervisord runs beside ComfyUI (containers have no init to run them)."""

    service_name: str
    user: str
    gpu_monitor: bool
    monitor_argv: tuple[str | int, ...]
    monitor_log: str
    cron_daemon: bool
    cron_log: str


@dataclass(frozen=True)
class LogrotateView:
    pattern: str
    retention_days: int


@dataclass(frozen=True)
class WslConfView:
    """/etc/wsl.conf of a WSL host: systemd as init or not, and the wall between the service and Windows."""

    systemd: bool
    windows_access: bool
    default_user: str | None


@dataclass(frozen=True)
class PipConfView:
    lines: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ConstraintsView:
    variant: str
    reason: str
    venv: str
    requirements: tuple[str, ...]


@dataclass(frozen=True)
class ModelPathsView:
    base_path: str
    folders: tuple[str, ...]


def service_view(plan: HostPlan) -> ServiceView:
    spec, paths = plan.spec, plan.paths
    return ServiceView(
        name=SERVICE, label=plan.comfyui.label, listen=spec.listen, port=spec.port, user=spec.service_user,
        workdir=paths.app, env=plan.env, secrets_env=paths.secrets_env, argv=plan.argv,
        supervisor_command=plan.supervisor_command, writable_paths=plan.writable_paths,
        read_only_paths=paths.read_only(), protect_home=plan.protect_home, gpu_devices=bool(plan.gpus),
        log_file=f"{paths.logs}/comfyui.log", logrotate=LOGROTATE)


def helper_programs(plan: HostPlan) -> tuple[str, ...]:
    """supervisord programs beside ComfyUI (containers have no init to run them)."""
    return ((f"{SERVICE}-gpu-monitor",) if plan.gpu_monitor else ()) + \
        ((f"{SERVICE}-cron",) if plan.spec.run_cron_daemon else ())


# --- the list ----------------------------------------------------------------------------------------------

def _comfyui(plan: HostPlan) -> list[Artifact]:
    paths = plan.paths
    constraints = ConstraintsView(plan.torch.variant, plan.torch.reason, paths.venv, plan.constraints)
    return [
        Artifact("comfyui", "venv", "Torch constraints", paths.constraints, "constraints.txt.j2",
                 {"constraints": constraints}, restarts=True),
        Artifact("comfyui", "venv", "pip.conf (sources, constraints)", paths.pip_conf, "pip.conf.j2",
                 {"pip": PipConfView(plan.pip_config)}, restarts=True),
    ]


def _models(plan: HostPlan) -> list[Artifact]:
    paths = plan.paths
    found = [] if plan.service_manager == "compose" else [  # a container's is built into its image
        Artifact("models", "models", "extra_model_paths.yaml", paths.extra_model_paths, "extra_model_paths.yaml.j2",
                 {"model_paths": ModelPathsView(paths.models, MODEL_FOLDERS)}, restarts=True)]
    if plan.models:
        found.append(Artifact("models", "models", "Model sync helper", paths.model_sync_helper,
                              source=HOST_HELPERS / "model_sync.py", mode="755"))
    return found


def _service(plan: HostPlan) -> list[Artifact]:
    spec, paths = plan.spec, plan.paths
    found = []
    if spec.service_secrets:
        found.append(Artifact("service", "secrets", f"Secrets env file {paths.secrets_env} (0640)", paths.secrets_env,
                              secrets=tuple(sorted(spec.service_secrets.items())), mode="640",
                              group=spec.service_user, restarts=True))
    if plan.service_manager == "compose":
        return found  # the container's compose file: comfyinfra.container.artifacts
    view = {"service": service_view(plan)}
    if plan.service_manager == "supervisor":
        found.append(Artifact("service", "service", "supervisord program", PROGRAM_CONF, "supervisor-comfyui.conf.j2",
                              view, restarts=True))
    else:
        found.append(Artifact("service", "service", "systemd unit (hardened)", UNIT, "comfyui.service.j2", view,
                              restarts=True))
    return found


def _host_ops(plan: HostPlan) -> list[Artifact]:
    spec, paths = plan.spec, plan.paths
    found = [Artifact("host_ops", "logrotate", "logrotate: ComfyUI logs daily", LOGROTATE, "logrotate.j2",
                      {"logrotate": LogrotateView(f"{paths.logs}/*.log", spec.log_retention_days)})]
    found += [Artifact("host_ops", "workflows", f"Workflow template {workflow}", f"{paths.workflows}/{workflow}",
                       source=WORKFLOWS_DIR / workflow) for workflow in spec.smoke_workflows]
    if plan.gpu_monitor:  # the monitor runs as the service user: its program is root's, only its samples are its own
        found.append(Artifact("host_ops", "gpu-monitor", "GPU monitor helper", paths.gpu_monitor_helper,
                              source=HOST_HELPERS / "gpu_monitor.py", mode="755"))
    if spec.host_kind is HostKind.wsl:
        view = WslConfView(plan.service_manager == "systemd", spec.wsl_windows_access, spec.wsl_default_user)
        found.append(Artifact("host_ops", "wsl", "/etc/wsl.conf (systemd, no Windows interop for the service)",
                              WSL_CONF, "wsl.conf.j2", {"wsl": view}))
    if plan.service_manager == "supervisor":
        if helper_programs(plan):
            monitor_argv = (spec.python, paths.gpu_monitor_helper, "run", "--dir", paths.gpu_monitor_dir,
                            "--interval", spec.gpu_monitor_interval_s,
                            "--retention-days", spec.gpu_monitor_retention_days)
            view = HelperProgramsView(SERVICE, spec.service_user, plan.gpu_monitor, monitor_argv,
                                      f"{paths.logs}/gpu-monitor.log", spec.run_cron_daemon, f"{paths.logs}/cron.log")
            found.append(Artifact("host_ops", "helpers", "supervisord programs: GPU monitor, cron", EXTRAS,
                                  "supervisor-extras.conf.j2", {"helpers": view}))
    elif plan.gpu_monitor:
        view = {"monitor": GpuMonitorView(spec.service_user, spec.python, paths.gpu_monitor_helper,
                                          paths.gpu_monitor_dir, spec.gpu_monitor_interval_s,
                                          spec.gpu_monitor_retention_days, plan.protect_home)}
        found += [Artifact("host_ops", "helpers", "GPU monitor service", MONITOR_UNITS[0], "gpu-monitor.service.j2", view),
                  Artifact("host_ops", "helpers", "GPU monitor timer", MONITOR_UNITS[1], "gpu-monitor.timer.j2", view)]
    return found


def host_artifacts(plan: HostPlan) -> tuple[Artifact, ...]:
    """Every file this host gets, in the order the deploy uploads them."""
    if plan.service_manager == "compose":  # ComfyUI's own files are built into the image
        from comfyinfra.container.artifacts import container_artifacts  # it builds on this module
        from comfyinfra.container.plan import make_container_plan

        return (*_models(plan), *container_artifacts(make_container_plan(plan)), *_service(plan), *_host_ops(plan))
    return (*_comfyui(plan), *_models(plan), *_service(plan), *_host_ops(plan))


def of(artifacts: tuple[Artifact, ...], role: str, step: str | None = None) -> tuple[Artifact, ...]:
    """The artifacts one role uploads (one step of it, when given), in order."""
    return tuple(a for a in artifacts if a.role == role and (step is None or a.step == step))
