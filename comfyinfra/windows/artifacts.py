"""Every file a Windows host gets: `windows_artifacts(plan)`, the Windows half of comfyinfra.artifacts.

The same Artifact as the Linux hosts (destination, template + one named view of the plan, role, operation name),
so the review render, the deploy and the tests read one list. Destinations are Windows paths; `access` says who
may read or write them (NTFS ACLs, set by the role), since POSIX owner and mode don't apply. Pure: no pyinfra.

The views are what the templates may read, and nothing else: a template never sees the spec.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from comfyinfra.artifacts import Artifact
from comfyinfra.windows.plan import POWERSHELL, WSL_EXE, WindowsPlan

ADMIN_ONLY = "Administrators, SYSTEM: full; others: none"
TASK_READS = "Administrators, SYSTEM: full; the task's user: read"
USER_PROFILE = "the task's user (its profile)"
# What the rewrite rule sets as server variables; each must be in allowedServerVariables at server level (else URL
# Rewrite answers 500.50). HTTP_SEC_WEBSOCKET_EXTENSIONS is blanked: ARR 3.0 can't relay permessage-deflate, which
# aiohttp (ComfyUI's /ws) negotiates by default.
SERVER_VARIABLES = (("HTTP_X_FORWARDED_PROTO", "https"), ("HTTP_X_FORWARDED_HOST", "{HTTP_HOST}"),
                    ("HTTP_SEC_WEBSOCKET_EXTENSIONS", ""))


@dataclass(frozen=True)
class IpRule:
    address: str
    mask: str  # IPv4: a dotted mask; IPv6: a prefix length (what IIS ipSecurity reads)


@dataclass(frozen=True)
class IisView:
    """The site, its web.config and the server-level settings the installer script applies."""

    site_name: str
    host_name: str
    site_path: str
    web_config: str  # where IIS reads it
    web_config_source: str  # the uploaded copy the installer compares and copies
    cert_thumbprint: str | None
    cert_subject: str | None
    proxy_target: str
    port: int
    proxy_timeout_s: int
    upload_limit_bytes: int
    hsts_max_age_s: int
    cors_origins: tuple[str, ...]
    basic_auth: bool
    allowed_ips: tuple[IpRule, ...]
    rate_limit: tuple[int, int, int] | None  # max concurrent, max requests, per interval ms
    server_variables: tuple[tuple[str, str], ...]
    fronted_host: str


@dataclass(frozen=True)
class TaskView:
    """The scheduled task: at boot, as the distro's owner, the watchdog for as long as it runs."""

    uri: str
    user: str
    command: str
    arguments: str
    workdir: str
    description: str


@dataclass(frozen=True)
class WatchdogView:
    distro: str
    wsl_exe: str
    health_url: str
    backend: str
    start: tuple[str, ...]
    restart: tuple[str, ...]
    tries: int
    interval_s: int
    startup_grace_s: int
    log_dir: str
    fronted_host: str


def ip_rules(networks: list[str]) -> tuple[IpRule, ...]:
    rules = []
    for text in networks:
        network = ipaddress.ip_network(text)
        mask = str(network.netmask) if network.version == 4 else str(network.prefixlen)
        rules.append(IpRule(str(network.network_address), mask))
    return tuple(rules)


def iis_view(plan: WindowsPlan) -> IisView:
    spec, site = plan.spec, plan.spec.site
    limit = spec.rate_limit
    return IisView(
        site_name=site.name, host_name=site.host_name, site_path=site.path, web_config=plan.web_config,
        web_config_source=plan.paths.web_config_source, cert_thumbprint=site.certificate.thumbprint,
        cert_subject=site.certificate.subject, proxy_target=plan.proxy_target, port=plan.fronted.port,
        proxy_timeout_s=spec.proxy_timeout_s, upload_limit_bytes=plan.upload_limit_bytes,
        hsts_max_age_s=site.hsts_max_age_s, cors_origins=tuple(spec.cors_origins), basic_auth=spec.basic_auth,
        allowed_ips=ip_rules(spec.allowed_ips),
        rate_limit=(limit.max_concurrent_requests, limit.max_requests, limit.interval_ms) if limit else None,
        server_variables=SERVER_VARIABLES, fronted_host=plan.fronted.host)


def task_view(plan: WindowsPlan) -> TaskView:
    return TaskView(
        uri=plan.task_uri, user=plan.spec.wsl_user, command=POWERSHELL,
        arguments=f'-NoProfile -NonInteractive -ExecutionPolicy Bypass -File "{plan.paths.watchdog}"',
        workdir=plan.paths.install_dir,
        description=f"comfyinfra: starts ComfyUI in WSL ({plan.spec.wsl_distro}, {plan.fronted.host}) at boot and "
                    "restarts it when /system_stats stops answering")


def watchdog_view(plan: WindowsPlan) -> WatchdogView:
    spec, fronted = plan.spec, plan.fronted
    return WatchdogView(
        distro=spec.wsl_distro, wsl_exe=WSL_EXE, health_url=fronted.health_url, backend=fronted.backend,
        start=fronted.start, restart=fronted.restart, tries=spec.watchdog.tries, interval_s=spec.watchdog.interval_s,
        startup_grace_s=spec.watchdog.startup_grace_s, log_dir=plan.paths.logs, fronted_host=fronted.host)


def windows_artifacts(plan: WindowsPlan) -> tuple[Artifact, ...]:
    """Every file of this Windows host, in the order the deploy uploads them."""
    paths = plan.paths
    iis = {"iis": iis_view(plan)}
    return (
        Artifact("windows", "iis", "web.config (source)", paths.web_config_source, "windows/web.config.j2", iis,
                 access=ADMIN_ONLY),
        Artifact("windows", "iis", "IIS installer script", paths.iis_setup, "windows/Install-ComfyProxy.ps1.j2", iis,
                 access=ADMIN_ONLY),
        Artifact("windows", "task", "Watchdog script", paths.watchdog, "windows/comfyui-watchdog.ps1.j2",
                 {"watchdog": watchdog_view(plan)}, access=TASK_READS),
        Artifact("windows", "task", "Scheduled task definition", paths.task_xml, "windows/task.xml.j2",
                 {"task": task_view(plan)}, access=ADMIN_ONLY),
        Artifact("windows", "wsl", ".wslconfig (keep the WSL VM and distro alive)", plan.wslconfig,
                 "windows/wslconfig.j2", {}, access=USER_PROFILE),
    )
