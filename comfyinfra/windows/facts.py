"""What the deploy asks a Windows host, and how a script is sent to it.

Each PowerShell program comfyinfra runs on a Windows host is a file of comfyinfra/windows/scripts/ (parsed and
linted by the tests like the rendered ones) prefixed with its parameters as DATA: one JSON document in a
single-quoted literal, read with ConvertFrom-Json. No inventory value becomes PowerShell code; the only secret (the
task user's password) travels base64-encoded inside a pyinfra HiddenValue, so pyinfra prints *MASKED* wherever it
shows a command. The connector (comfyinfra.windows.connector) sends the script over WinRM's stdin.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

from pyinfra.api import FactBase, StringCommand
from pyinfra.api.hiddenvalue import HiddenValue

from comfyinfra.quoting import ps_string

SCRIPTS = Path(__file__).resolve().parent / "scripts"


def script(name: str, params: dict, password: str | None = None) -> StringCommand:
    """The script comfyinfra/windows/scripts/<name>.ps1 with its $Params (and $Password) set first."""
    bits: list = ["$ErrorActionPreference = 'Stop'\n", f"# comfyinfra: {name}\n",
                  f"$Params = {ps_string(json.dumps(params, sort_keys=True))} | ConvertFrom-Json\n"]  # json: ASCII
    if password is not None:
        encoded = base64.b64encode(password.encode()).decode()
        bits += ["$Password = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('", HiddenValue(encoded),
                 "'))\n"]
    bits.append((SCRIPTS / f"{name}.ps1").read_text())
    return StringCommand(*bits, _separator="")


@dataclass(frozen=True)
class TaskState:
    state: str  # Ready, Running, Disabled, ...
    user: str
    logon: str


@dataclass(frozen=True)
class WindowsHostState:
    files: dict[str, str | None]  # path -> sha256, None when absent
    acls: dict[str, bool]  # directory -> exactly the intended ACL
    drift: tuple[str, ...] | None  # the installed IIS installer's -Check lines; None: not installed or not this one
    task: TaskState | None
    stamp: str | None  # what the last task registration recorded


class WindowsState(FactBase):
    """Everything the Windows role compares against, in one round trip (comfyinfra/windows/scripts/state.ps1)."""

    def command(self, params: str) -> StringCommand:
        return script("state", json.loads(params))

    def process(self, output) -> WindowsHostState:
        data = json.loads("".join(output))
        task = data.get("task")
        return WindowsHostState(
            files={path: digest for path, digest in (data.get("files") or {}).items()},
            acls={path: bool(ok) for path, ok in (data.get("acls") or {}).items()},
            drift=None if data.get("drift") is None else tuple(data["drift"]),
            task=TaskState(task["state"], task["user"], task["logon"]) if task else None,
            stamp=data.get("stamp"),
        )
