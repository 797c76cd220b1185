"""The fleet as tools other than the deploy see it: hosts from a pyinfra inventory (validated with the
deploy's own spec), an ssh_config for them, and SSH tunnels to their loopback-bound ComfyUI.

Used by the smoke suite (tests/smoke) and the load test's --inventory form, so nobody keeps a second
host list.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from comfyinfra.spec import HostSpec

REPO = Path(__file__).resolve().parents[1]
SSH_OPTIONS = (("ssh_hostname", "HostName"), ("ssh_port", "Port"), ("ssh_user", "User"), ("ssh_key", "IdentityFile"),
               ("ssh_known_hosts_file", "UserKnownHostsFile"))


@dataclass(frozen=True)
class FleetHost:
    name: str  # inventory name; "@local" for the local connector
    spec: HostSpec
    data: dict

    @property
    def local(self) -> bool:
        return self.name.startswith("@local")


def load_fleet(inventory_file: str, limits: list[str] | None = None) -> list[FleetHost]:
    """Hosts of an inventory (group_data/ of this repo included), validated, filtered like pyinfra's --limit."""
    from pyinfra.api import State
    from pyinfra.context import ctx_state
    from pyinfra_cli.inventory import make_inventory

    from comfyinfra.validate import check_inventory

    cwd = os.getcwd()
    os.chdir(REPO)  # group_data/ is read from here, as the deploy reads it
    try:
        with ctx_state.use(State()):
            inventory = make_inventory(inventory_file, cwd=str(REPO))
        specs = check_inventory(inventory, inventory_file)
    finally:
        os.chdir(cwd)
    hosts = [FleetHost(h.name, specs[h.name], h.data.dict()) for h in inventory
             if not limits or any(fnmatch.fnmatch(h.name, p) or p in h.groups for p in limits)]
    if not hosts:
        raise ValueError(f"--limit {limits} matches no host in {inventory_file}")
    return hosts


def write_ssh_config(hosts: list[FleetHost]) -> str:
    """An ssh_config with one block per SSH host (an inventory's own ssh_config_file is included)."""
    lines, includes = [], set()
    for host in hosts:
        if host.local:
            continue
        lines.append(f"Host {host.name}")
        for key, option in SSH_OPTIONS:
            if host.data.get(key):
                lines.append(f"    {option} {host.data[key]}")
        lines.append(f"    StrictHostKeyChecking {host.data.get('ssh_strict_host_key_checking', 'accept-new')}")
        if host.data.get("ssh_config_file"):
            includes.add(os.path.expanduser(host.data["ssh_config_file"]))
    lines += [f"Include {path}" for path in sorted(includes) if Path(path).exists()]
    fd, path = tempfile.mkstemp(prefix="comfyinfra-ssh-", suffix=".conf")
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


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
