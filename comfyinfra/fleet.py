"""The fleet as tools other than the deploy see it: hosts from a pyinfra inventory (validated with the
deploy's own spec), an ssh_config for them, and SSH tunnels to their loopback-bound ComfyUI.

Used by the smoke suite (tests/smoke) and the load test's --inventory form, so nobody keeps a second
host list.

The inventory is loaded by pyinfra's own loader, which lives in `pyinfra_cli`; importing that calls
gevent's `monkey.patch_all()`, after which threads are greenlets on one OS thread and the load test
would measure a single connection at a time. So the verify side never imports it: `load_fleet` runs
`python -m comfyinfra.inventory_export` and rebuilds the hosts from its JSON.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from comfyinfra.kinds import AnySpec, parse_spec
from comfyinfra.windows.spec import WindowsHostSpec
from comfyinfra.validate import InventoryError  # pyinfra's API only, which patches nothing

REPO = Path(__file__).resolve().parents[1]
SSH_OPTIONS = (("ssh_hostname", "HostName"), ("ssh_port", "Port"), ("ssh_user", "User"), ("ssh_key", "IdentityFile"),
               ("ssh_known_hosts_file", "UserKnownHostsFile"))
# The host data an ssh_config is written from: all that the verify side needs besides the spec.
SSH_DATA_KEYS = (*(key for key, _ in SSH_OPTIONS), "ssh_config_file", "ssh_strict_host_key_checking")
EXPORT_TIMEOUT_S = 300


@dataclass(frozen=True)
class FleetHost:
    name: str  # inventory name; "@local" for the local connector
    spec: AnySpec  # HostSpec, or WindowsHostSpec for a Windows host (only with load_fleet(..., windows=True))
    data: dict  # the host's SSH settings (SSH_DATA_KEYS that are set)
    groups: tuple[str, ...] = field(default=())

    @property
    def local(self) -> bool:
        return self.name.startswith("@local")


def load_fleet(inventory_file: str, limits: list[str] | None = None, windows: bool = False) -> list[FleetHost]:
    """Hosts of an inventory (group_data/ of this repo included), validated, filtered like pyinfra's --limit.

    The hosts that run ComfyUI; Windows hosts (which front one of them, reached over WinRM) only with windows=True.

    Validated without the deploy's secrets (model tokens, service secrets): verifying a fleet needs none.
    Raises InventoryError (invalid or unloadable inventory) or ValueError (--limit matches nothing).
    """
    hosts = [FleetHost(entry["name"], parse_spec(entry["spec"]), dict(entry["data"]), tuple(entry["groups"]))
             for entry in _export(inventory_file)]
    hosts = [host for host in hosts if windows or not isinstance(host.spec, WindowsHostSpec)]
    hosts = [host for host in hosts
             if not limits or any(fnmatch.fnmatch(host.name, p) or p in host.groups for p in limits)]
    if not hosts:
        raise ValueError(f"--limit {limits} matches no host in {inventory_file}")
    return hosts


def _export(inventory_file: str) -> list[dict]:
    """The inventory's hosts as comfyinfra.inventory_export prints them, loaded in a child process."""
    command = [sys.executable, "-m", "comfyinfra.inventory_export", inventory_file]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    try:
        proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=EXPORT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise InventoryError(f"loading inventory {inventory_file} took more than {EXPORT_TIMEOUT_S} s") from None
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        result = None
    if not isinstance(result, dict) or not ("hosts" in result or "error" in result):
        detail = (proc.stderr.strip() or proc.stdout.strip())[-3000:]
        raise InventoryError(f"cannot load inventory {inventory_file} (exit {proc.returncode}): {detail}")
    if proc.stderr.strip():  # pyinfra's warnings, what the inventory prints: shown as if loaded here
        sys.stderr.write(proc.stderr)
    if "error" in result:
        raise InventoryError(result["error"])
    return result["hosts"]


def _config_value(value) -> str:
    """A value as ssh_config reads it: quoted when it holds a space."""
    text = str(value)
    return f'"{text}"' if any(c.isspace() for c in text) else text


def ssh_config_text(hosts: list[FleetHost]) -> str:
    """ssh_config lines for the SSH hosts, in the order ssh's first-obtained-value-wins needs:

    1. the inventory's ssh_config_file(s) first, so that their aliases (HostName, ProxyJump) and a user's
       StrictHostKeyChecking `yes` win. A file every SSH host names is included before any Host block, for
       every host ssh resolves, jump hosts too; a file only some hosts name, for exactly those hosts;
    2. the inventory's SSH settings per host (HostName, Port, User, ...), where the file left them unset;
    3. the defaults last, for whatever neither set: StrictHostKeyChecking accept-new, as pyinfra's.

    (An Include after a Host block belongs to that block: appended at the end, it applied to the last host only.)
    """
    ssh_hosts = [host for host in hosts if not host.local]
    by_file: dict[str, list[str]] = {}
    for host in ssh_hosts:
        if host.data.get("ssh_config_file"):  # relative: to the working directory, as pyinfra opens it
            path = os.path.abspath(os.path.expanduser(host.data["ssh_config_file"]))
            by_file.setdefault(path, []).append(host.name)
    files = [(path, names) for path, names in by_file.items() if Path(path).exists()]
    lines = [f"Include {_config_value(path)}" for path, names in files if len(names) == len(ssh_hosts)]
    for path, names in files:
        if len(names) < len(ssh_hosts):
            lines += [f"Host {' '.join(names)}", f"    Include {_config_value(path)}"]
    for host in ssh_hosts:
        lines.append(f"Host {host.name}")
        lines += [f"    {option} {_config_value(host.data[key])}" for key, option in SSH_OPTIONS if host.data.get(key)]
        if host.data.get("ssh_strict_host_key_checking"):
            lines.append(f"    StrictHostKeyChecking {_config_value(host.data['ssh_strict_host_key_checking'])}")
    lines += ["Host *", "    StrictHostKeyChecking accept-new"]
    return "\n".join(lines) + "\n"


def write_ssh_config(hosts: list[FleetHost]) -> str:
    """An ssh_config file for the SSH hosts (`ssh_config_text`) in $TMPDIR.

    The caller removes the file; `ssh_config` does it on every exit path."""
    fd, path = tempfile.mkstemp(prefix="comfyinfra-ssh-", suffix=".conf")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(ssh_config_text(hosts))
    except BaseException:
        remove_ssh_config(path)
        raise
    return path


def remove_ssh_config(path: str | None) -> None:
    if path:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


@contextlib.contextmanager
def ssh_config(hosts: list[FleetHost]):
    """`write_ssh_config` for the duration of a with-block: the file is removed however the block ends
    (errors and Ctrl-C included)."""
    path = write_ssh_config(hosts)
    try:
        yield path
    finally:
        remove_ssh_config(path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def comfy_url(host: FleetHost, ssh_config: str | None):
    """Base URL of the host's ComfyUI from this machine: direct for @local, else an SSH local forward
    (ComfyUI listens on loopback by default and has no authentication)."""
    address = host.spec.listen.split(",")[0].strip()
    address = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(address, address)
    if host.local:
        yield f"http://{address}:{host.spec.port}"
        return
    port = _free_port()
    command = ["ssh", *(["-F", ssh_config] if ssh_config else []), "-N", "-o", "BatchMode=yes",
               "-o", "ExitOnForwardFailure=yes", "-L", f"127.0.0.1:{port}:{address}:{host.spec.port}", host.name]
    tunnel = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            if tunnel.poll() is not None:
                raise ConnectionError(f"ssh tunnel to {host.name} failed: {tunnel.stderr.read().strip()}")
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            if time.monotonic() > deadline:
                raise ConnectionError(f"ssh tunnel to {host.name} did not open within 20 s")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        tunnel.terminate()
        tunnel.wait(timeout=10)
