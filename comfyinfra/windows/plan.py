"""A Windows host's plan: what it does for the WSL host it fronts, derived without connecting to either.

Pure, like comfyinfra.plan: a WindowsHostSpec plus the fronted host's plan (made from that host's declarations,
comfyinfra.plan.plan_without_host) give the proxy target, the upload limit in bytes, the commands the watchdog
runs inside WSL and every path on the Windows side. The checks that need both hosts live here and run in the
preflight, before anything connects: the fronted host exists, is a WSL host, listens on loopback, accepts
uploads at least as large as IIS lets through, and leaves CORS to IIS.
"""

from __future__ import annotations

from dataclasses import dataclass

from comfyinfra.artifacts import SUPERVISORD_CONF
from comfyinfra.operations.common import SYSTEM_PATH
from comfyinfra.plan import HostPlan, PlanError
from comfyinfra.spec import HostKind
from comfyinfra.windows.spec import WindowsHostSpec

TASK_PATH = "\\comfyinfra\\"
TASK_NAME = "ComfyUI-Watchdog"
# The Store WSL's own wsl.exe: the System32 stub fails in session 0, where a task that runs whether or not the user
# is logged on lives ("The file cannot be accessed by the system", microsoft/WSL#9231).
WSL_EXE = "C:\\Program Files\\WSL\\wsl.exe"
POWERSHELL = "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class FrontedHostError(PlanError):
    """The fronted host does not fit the Windows host's settings; `field` names the Windows host's field."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class WindowsPaths:
    install_dir: str

    @property
    def scripts(self) -> str:
        return f"{self.install_dir}\\bin"

    @property
    def logs(self) -> str:
        return f"{self.install_dir}\\logs"

    @property
    def state(self) -> str:
        return f"{self.install_dir}\\state"

    @property
    def iis_setup(self) -> str:
        return f"{self.scripts}\\Install-ComfyProxy.ps1"

    @property
    def watchdog(self) -> str:
        return f"{self.scripts}\\comfyui-watchdog.ps1"

    @property
    def task_xml(self) -> str:
        return f"{self.install_dir}\\task\\comfyui-watchdog.xml"

    @property
    def web_config_source(self) -> str:
        return f"{self.install_dir}\\iis\\web.config"


@dataclass(frozen=True)
class FrontedService:
    """The WSL host's ComfyUI as the Windows side sees it."""

    host: str  # its inventory name
    port: int
    health_url: str  # from Windows: WSL forwards loopback ports (localhostForwarding, or mirrored networking)
    backend: str  # systemd | supervisor
    start: tuple[str, ...]  # wsl.exe arguments after `-d <distro> -u root --exec`
    restart: tuple[str, ...]
    max_upload_size_mb: float


@dataclass(frozen=True)
class WindowsPlan:
    name: str  # inventory name
    spec: WindowsHostSpec
    paths: WindowsPaths
    fronted: FrontedService
    web_config: str  # where IIS reads it: <site path>\web.config
    wslconfig: str  # <profile of wsl_user>\.wslconfig
    task_name: str = TASK_NAME
    task_path: str = TASK_PATH

    @property
    def proxy_target(self) -> str:
        """ARR's rewrite target: 127.0.0.1, never localhost (Windows may try ::1, which mirrored WSL does not carry),
        and {UNENCODED_URL}, never {R:1} (IIS decodes %2F, breaking ComfyUI's /userdata/{file})."""
        return f"http://127.0.0.1:{self.fronted.port}{{UNENCODED_URL}}"

    @property
    def upload_limit_bytes(self) -> int:
        return self.spec.upload_limit_bytes

    @property
    def task_uri(self) -> str:
        return f"{self.task_path}{self.task_name}"


def fronted_service(name: str, plan: HostPlan) -> FrontedService:
    """How the watchdog starts and restarts the fronted ComfyUI (as root inside the distro: the unit and the
    supervisord config are root's, so nothing the service user can write is run by the elevated task)."""
    if plan.service_manager == "systemd":
        start = ("/usr/bin/systemctl", "start", "comfyui.service")
        restart = ("/usr/bin/systemctl", "restart", "comfyui.service")
    else:  # no init in the distro: the watchdog starts supervisord itself, with the clean environment the deploy uses
        ctl = f"supervisorctl -c {SUPERVISORD_CONF}"
        start = ("/bin/sh", "-c", f"{ctl} pid >/dev/null 2>&1 || env -i PATH={SYSTEM_PATH} LANG=C.UTF-8 supervisord "
                 f"-c {SUPERVISORD_CONF}; sleep 2; {ctl} start comfyui")
        restart = ("/bin/sh", "-c", f"{ctl} restart comfyui")
    return FrontedService(host=name, port=plan.spec.port, health_url=f"http://127.0.0.1:{plan.spec.port}/system_stats",
                          backend=plan.service_manager, start=start, restart=restart,
                          max_upload_size_mb=plan.spec.max_upload_size_mb)


def check_fronted(spec: WindowsHostSpec, fronted_name: str, plan: HostPlan) -> None:
    """Raise FrontedHostError (naming the Windows host's field) when the fronted host can't be served as declared."""
    fronted = plan.spec
    if fronted.host_kind is not HostKind.wsl:
        raise FrontedHostError("fronts", f"{fronted_name} is a {fronted.host_kind.value} host; allowed: a host in the "
                               "wsl group (ComfyUI in WSL2 on this Windows box)")
    listen = [part.strip() for part in fronted.listen.split(",")]
    if any(address not in LOOPBACK for address in listen):
        raise FrontedHostError("fronts", f"{fronted_name} listens on {fronted.listen}: IIS would not be the only way in "
                               "(mirrored WSL networking puts it on the LAN); allowed: listen 127.0.0.1 on the fronted "
                               "host, IIS adds HTTPS and authentication")
    if spec.upload_limit_mb > fronted.max_upload_size_mb:
        raise FrontedHostError("upload_limit_mb", f"{spec.upload_limit_mb:g} MiB is more than {fronted_name}'s "
                               f"max_upload_size_mb {fronted.max_upload_size_mb:g}: IIS would pass uploads ComfyUI "
                               f"refuses; allowed: at most {fronted.max_upload_size_mb:g}, or raise max_upload_size_mb "
                               f"on {fronted_name}")
    if any(arg.split("=", 1)[0] == "--enable-cors-header" for arg in fronted.extra_args):
        raise FrontedHostError("cors_origins", f"{fronted_name} runs ComfyUI with --enable-cors-header: with IIS in "
                               "front, browsers would get CORS headers twice (e.g. 'Access-Control-Allow-Origin: *, *') "
                               "and refuse them; allowed: CORS from IIS only (cors_origins here), remove the flag "
                               f"from {fronted_name}'s extra_args")


def make_windows_plan(name: str, spec: WindowsHostSpec, fronted_plan: HostPlan) -> WindowsPlan:
    check_fronted(spec, spec.fronts, fronted_plan)
    profile = spec.wsl_user_profile or f"C:\\Users\\{spec.wsl_user.split(chr(92))[-1].split('@')[0]}"
    return WindowsPlan(
        name=name,
        spec=spec,
        paths=WindowsPaths(spec.install_dir),
        fronted=fronted_service(spec.fronts, fronted_plan),
        web_config=f"{spec.site.path}\\web.config",
        wslconfig=f"{profile}\\.wslconfig",
    )
