"""The service user as an attacker (issue 10): ComfyUI runs custom-node code, so assume it is hostile and try
what it would. Shared by the supervisord e2e host (this machine) and a systemd container host.

`run(command) -> (rc, stdout)` runs a shell command as root on the host under test.
"""

from __future__ import annotations

import shlex

CANARIES = "/root/comfyinfra-canary"  # root's home is 700: the service can neither read nor find them


def as_user(user: str, command: str) -> str:
    return f"runuser -u {shlex.quote(user)} -- sh -c {shlex.quote(command)}"


def root_paths(paths, service_manager: str) -> list[str]:
    """Every path that the deploy, a restart, the failure path or the smoke suite writes, reads or runs as root."""
    found = [
        paths.constraints, paths.pip_conf, paths.extra_model_paths, paths.model_sync_helper, paths.gpu_monitor_helper,
        paths.secrets_env, paths.secrets_env + ".tmp", f"{paths.state}/requirements-comfyui.sha256",
        f"{paths.state}/requirements-node-demo.sha256", f"{paths.logs}/comfyui.log", f"{paths.logs}/gpu-monitor.log",
        f"{paths.model_logs}/tiny.log", f"{paths.workflows}/cpu_smoke.json", f"{paths.app}/comfyui_version.py",
        f"{paths.app}/main.py", f"{paths.venv}/pyvenv.cfg", f"{paths.venv}/bin/python3-evil",
        f"{paths.model_blobs}/marker", f"{paths.models}/loras/tiny.safetensors", f"{paths.root}/planted",
        f"{paths.custom_nodes}/demo/__init__.py", f"{paths.custom_nodes}/evil",
    ]
    if service_manager == "systemd":
        found += ["/etc/systemd/system/comfyui.service"]
    else:
        found += ["/etc/supervisor/conf.d/comfyui.conf"]
    return found + ["/etc/logrotate.d/comfyui"]


def make_canaries(run, count: int) -> dict[str, str]:
    rc, _ = run(f"mkdir -p {CANARIES} && chmod 700 {CANARIES} && for i in $(seq {count}); do "
                f"head -c 32 /dev/urandom | base64 > {CANARIES}/$i && chmod 600 {CANARIES}/$i; done")
    assert rc == 0
    return canary_state(run)


def canary_state(run) -> dict[str, str]:
    rc, out = run(f"cd {CANARIES} && for f in *; do echo \"$f $(stat -c '%U:%G %a' $f) $(sha256sum < $f)\"; done")
    assert rc == 0, out
    return dict(line.split(" ", 1) for line in out.splitlines())


def writable_by_service(run, user: str, paths, gpu_dir: str) -> list[str]:
    """What the service user can write under the tree, besides its own directories, plus the system files."""
    own = [*paths.service_writable(), gpu_dir]
    prune = " -o ".join(f"-path {shlex.quote(p)}" for p in own)
    tree = f"find {shlex.quote(paths.root)} {shlex.quote(paths.models)} \\( {prune} \\) -prune -o -writable -print"
    _, out = run(as_user(user, f"{tree} 2>/dev/null; true"))
    return sorted(set(out.split()))


def plant_links(run, user: str, targets: list[str]) -> list[str]:
    """Try, as the service user, to put a link to a root-only canary at each path; returns the paths where it worked."""
    planted = []
    for i, path in enumerate(targets, start=1):
        link = f"ln -sfn {CANARIES}/{(i % 3) + 1} {shlex.quote(path)}"
        rc, _ = run(as_user(user, f"{link} 2>/dev/null || {{ rm -f {shlex.quote(path)} 2>/dev/null && {link}; }}"))
        if rc == 0:
            planted.append(path)
    return planted


def plant_in_own_dirs(run, user: str, paths) -> None:
    """Links the service may legitimately make in its own directories, named like files root handles elsewhere."""
    for directory in paths.service_writable():
        for name in ("comfyui.log", "secrets.env", "constraints.txt", "comfyui_version.py"):
            run(as_user(user, f"ln -sfn {CANARIES}/1 {shlex.quote(directory + '/' + name)}"))
