"""An emulated Windows host for the Windows role: what comfyinfra/windows/scripts/*.ps1 would do, done in Python.

NO POWERSHELL RUNS HERE. It plugs into tests.support.wsman_server.EmulatedWindows (real WinRM, real pywinrm, real
NTLM and TLS, files uploaded by the real executor into `windows.files`) as its script handler. A script is
recognised by the `# comfyinfra: <name>` line comfyinfra.windows.facts.script writes, and its $Params are read
from the JSON literal the same function writes, so the emulation sees exactly what a host would be sent. What each
script does is reduced to the state the deploy reads back through the `state` script: directory ACLs, the site's
web.config copy made by the IIS installer, the scheduled task and the stamp of its registration.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field

from tests.support.wsman_server import EmulatedWindows, clixml_error

PARAMS = re.compile(r"^\$Params = '((?:[^']|'')*)' \| ConvertFrom-Json$", re.M)
PASSWORD = re.compile(r"FromBase64String\('([A-Za-z0-9+/=]*)'\)\)$", re.M)
INSTALLER_PATH = re.compile(r"^\$(WebConfigPath|WebConfigSource) = '((?:[^']|'')*)'$", re.M)


@dataclass
class EmulatedWindowsHost:
    task_password: str  # what the distro owner's account password is: a registration with another one fails
    windows: EmulatedWindows = field(default_factory=EmulatedWindows)
    acl_ok: set[str] = field(default_factory=set)
    task: dict | None = None  # {"state", "user", "logon"}
    ran: list[str] = field(default_factory=list)  # names of the scripts run, in order

    def __post_init__(self):
        self.windows.handler = self.handle

    @property
    def files(self) -> dict[str, bytes]:
        return self.windows.files

    def handle(self, script: str) -> tuple[int, str, bytes]:
        name = re.search(r"^# comfyinfra: ([\w-]+)$", script, re.M)
        params = PARAMS.search(script)
        if not name or not params:
            return 1, "", clixml_error("emulated Windows: not a script of comfyinfra.windows.facts.script")
        self.ran.append(name.group(1))
        handler = getattr(self, "_" + name.group(1).replace("-", "_"), None)
        if handler is None:
            return 1, "", clixml_error(f"emulated Windows: no emulation of {name.group(1)}")
        return handler(json.loads(params.group(1).replace("''", "'")), script)

    def _sha(self, path: str) -> str | None:
        return hashlib.sha256(self.files[path]).hexdigest() if path in self.files else None

    def _installer_paths(self, installer: str) -> dict[str, str]:
        text = self.files[installer].decode()
        return {key: value.replace("''", "'") for key, value in INSTALLER_PATH.findall(text)}

    def _state(self, params: dict, script: str):
        drift = None
        if self._sha(params["installer"]) == params["installer_sha256"]:
            paths = self._installer_paths(params["installer"])
            same = self.files.get(paths["WebConfigPath"]) == self.files.get(paths["WebConfigSource"])
            drift = [] if same else [f"DRIFT: web.config of the site differs from {paths['WebConfigSource']}"]
        stamp = self.files.get(params["stamp"])
        state = {"files": {path: self._sha(path) for path in params["files"]},
                 "acls": {d: d in self.acl_ok for d in params["dirs"]}, "drift": drift, "task": self.task,
                 "stamp": stamp.decode() if stamp is not None else None}
        return 0, json.dumps(state) + "\r\n", b""

    def _layout(self, params: dict, script: str):
        self.acl_ok.update(params["dirs"])
        return 0, "".join(f"CHANGED: {d}\r\n" for d in params["dirs"]), b""

    def _register_task(self, params: dict, script: str):
        password = base64.b64decode(PASSWORD.search(script).group(1)).decode()
        if password != self.task_password:
            return 1, "", clixml_error("Register-ScheduledTask : The user name or password is incorrect.")
        if params["xml"] not in self.files:
            return 1, "", clixml_error(f"Get-Content : Cannot find path '{params['xml']}' because it does not exist.")
        self.task = {"state": "Ready", "user": params["user"], "logon": "Password"}
        self.files[params["stamp"]] = params["stamp_text"].encode()
        return 0, "CHANGED: task registered\r\n", b""

    def _start_task(self, params: dict, script: str):
        if self.task is None:
            return 1, "", clixml_error("Get-ScheduledTask : No MSFT_ScheduledTask objects found.")
        self.task["state"] = "Running"
        return 0, "CHANGED: task started\r\n", b""

    def _apply_iis(self, params: dict, script: str):
        paths = self._installer_paths(params["installer"])
        self.files[paths["WebConfigPath"]] = self.files[paths["WebConfigSource"]]
        return 0, f"CHANGED: web.config\r\nOK: https://{params['host_name']}/system_stats answers 200\r\n", b""
