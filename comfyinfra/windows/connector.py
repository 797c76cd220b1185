"""The pyinfra connector `winrm` (pyinfra 3 has none: removed in 3.0, reference windows-iis-wsl.md 4.6): an inventory
name `@winrm/win-3090` makes a host called `win-3090` whose commands are PowerShell scripts run over WinRM by
comfyinfra.windows.winrm's executor, and whose files travel in checked chunks. It reads the host's data key `winrm`
(host, port, scheme, transport, user, password_env, cert_validation, ca_trust_path, allow_insecure_transport: the
keys of comfyinfra.windows.spec.WinRM) and the password from the controller's environment variable named by
`password_env`, at connect. Every command runs as the WinRM user: sudo, su, doas, _env, _chdir and _stdin are refused
with a sentence, since a Windows script sets its own location and environment. Registered under the entry point
group `pyinfra.connectors` in pyproject.toml.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from pyinfra import logger
from pyinfra.api.command import StringCommand
from pyinfra.api.exceptions import ConnectError, InventoryError
from pyinfra.api.output import echo
from pyinfra.api.util import get_file_io
from pyinfra.connectors.base import BaseConnector
from pyinfra.connectors.util import CommandOutput, OutputLine
from typing_extensions import Unpack, override


if TYPE_CHECKING:
    from comfyinfra.windows.winrm import Executor, WinRMTarget
    from pyinfra.api.arguments import ConnectorArguments

SETTINGS = ("host", "port", "scheme", "transport", "user", "password_env", "cert_validation", "ca_trust_path",
            "allow_insecure_transport")
REQUIRED = ("host", "user", "password_env")
# pyinfra arguments that would change who runs the command or its context: a Windows host runs every command as the
# WinRM user, and a PowerShell script sets its own location ($PWD) and environment ($env:NAME).
REFUSED = {
    "_sudo": "sudo", "_sudo_user": "sudo", "_su_user": "su", "_doas": "doas", "_doas_user": "doas",
    "_dzdo": "dzdo", "_dzdo_user": "dzdo", "_chdir": "_chdir", "_env": "_env", "_stdin": "_stdin",
}


def transport():
    """comfyinfra.windows.winrm, imported when a Windows host connects: pyinfra loads every registered connector on
    every run, and pywinrm with its dependencies costs about 0.1 s to import."""
    from comfyinfra.windows import winrm

    return winrm


def winrm_target(host_name: str, settings: object, environ: Mapping[str, str]) -> WinRMTarget:
    """The executor's target from the host's `winrm` data and the controller's environment (the password)."""
    if hasattr(settings, "model_dump"):  # the validated spec model itself
        settings = settings.model_dump()
    if not isinstance(settings, Mapping):
        raise ConnectError(f"{host_name}: host data `winrm` is missing: a @winrm host needs "
                           "winrm = {'host': ..., 'user': ..., 'password_env': ...}")
    unknown = sorted(set(settings) - set(SETTINGS))
    missing = [key for key in REQUIRED if not settings.get(key)]
    if unknown or missing:
        what = "; ".join(filter(None, (f"unknown {', '.join(unknown)}" if unknown else "",
                                       f"missing {', '.join(missing)}" if missing else "")))
        raise ConnectError(f"{host_name}: host data `winrm`: {what}; allowed: {', '.join(SETTINGS)}")
    scheme = settings.get("scheme", "https")
    cert_validation = settings.get("cert_validation", True)
    if (scheme != "https" or not cert_validation) and not settings.get("allow_insecure_transport"):
        raise ConnectError(f"{host_name}: winrm scheme {scheme} with cert_validation {cert_validation} would send the "
                           "credentials readable or to an impostor; use https with cert_validation, or set "
                           "allow_insecure_transport = True on purpose")
    password_env = settings["password_env"]
    password = environ.get(password_env)
    if not password:
        raise ConnectError(f"{host_name}: the environment variable {password_env} (winrm.password_env) is not set "
                           f"or empty on this machine: export the WinRM password of {settings['user']} in it, "
                           "then run again")
    address = settings["host"]
    try:
        if ipaddress.ip_address(address).version == 6:
            address = f"[{address}]"
    except ValueError:
        pass
    return transport().WinRMTarget(
        host_name=host_name,
        endpoint=f"{scheme}://{address}:{settings.get('port', 5986)}/wsman",
        transport=settings.get("transport", "ntlm"),
        user=settings["user"],
        password=password,
        cert_validation=cert_validation,
        ca_trust_path=settings.get("ca_trust_path"),
    )


class WinRMConnector(BaseConnector):
    """
    The ``@winrm`` connector runs PowerShell scripts on a Windows host over WinRM (HTTPS, NTLM by default).

    .. code:: python

        windows_hosts = [("@winrm/win-3090", {"winrm": {"host": "win.lan", "user": "WIN3090\\\\deploy",
                                                        "password_env": "WIN3090_WINRM_PASSWORD"}})]
    """

    handles_execution = True
    executor: Executor | None = None

    @override
    @staticmethod
    def make_names_data(name: str | None = None) -> Iterator[tuple[str, dict, list[str]]]:
        if not name:
            raise InventoryError("@winrm needs the host's name: write @winrm/<name>, e.g. @winrm/win-3090")
        yield name, {}, []

    @override
    def connect(self) -> None:
        settings = self.host.data.get("winrm")
        target = winrm_target(self.host.name, settings, os.environ)
        self.executor = transport().Executor(target)
        try:
            self.executor.check_connection()
        except transport().WinRMConnectionError as error:
            self.executor.close()
            message = str(error)
            if error.kind == "credentials":
                message += f" (The password was read from the environment variable {settings['password_env']}.)"
            raise ConnectError(message) from error

    @override
    def disconnect(self) -> None:
        if self.executor is not None:
            self.executor.close()

    @override
    def run_shell_command(
        self,
        command: StringCommand,
        print_output: bool = False,
        print_input: bool = False,
        **arguments: Unpack[ConnectorArguments],
    ) -> tuple[bool, CommandOutput]:
        """Run `command` (its raw value is a PowerShell script) and return (success, output lines)."""
        refusal = self._refusal(arguments)
        if refusal:
            return False, CommandOutput([OutputLine("stderr", refusal)])
        script, shown = self._script(command)
        logger.debug("Running PowerShell on %s: %s", self.host.name, shown)
        if print_input:
            echo(f"{self.host.print_prefix}>>> {shown}", err=True)
        result = self._executor().run_ps(script, timeout=arguments.get("_timeout"))
        lines = [OutputLine("stdout", line) for line in result.stdout.splitlines()]
        lines += [OutputLine("stderr", line) for line in result.stderr.splitlines()]
        if print_output:
            for line in lines:
                echo(f"{self.host.print_prefix}{line.line}", err=True)
        success_exit_codes = arguments.get("_success_exit_codes")
        status = result.rc in success_exit_codes if success_exit_codes else result.rc == 0
        return status, CommandOutput(lines)

    @override
    def put_file(
        self,
        filename_or_io,
        remote_filename: str,
        remote_temp_filename: str | None = None,  # unused: the executor writes <dest>.comfyinfra-part itself
        print_output: bool = False,
        print_input: bool = False,
        **arguments: Unpack[ConnectorArguments],
    ) -> bool:
        refusal = self._refusal(arguments)
        if refusal:
            return self._failed(refusal)
        with get_file_io(filename_or_io) as file_io:
            data = file_io.read()
        if isinstance(data, str):
            data = data.encode("utf-8")
        try:
            self._executor().put_file(data, remote_filename)
        except (transport().WinRMCommandError, ValueError) as error:
            return self._failed(str(error))
        if print_output:
            echo(f"{self.host.print_prefix}file uploaded: {remote_filename}", err=True)
        return True

    @override
    def get_file(
        self,
        remote_filename: str,
        filename_or_io,
        remote_temp_filename: str | None = None,  # unused
        print_output: bool = False,
        print_input: bool = False,
        **arguments: Unpack[ConnectorArguments],
    ) -> bool:
        refusal = self._refusal(arguments)
        if refusal:
            return self._failed(refusal)
        try:
            data = self._executor().get_file(remote_filename)
        except (transport().WinRMCommandError, ValueError) as error:
            return self._failed(str(error))
        with get_file_io(filename_or_io, "wb") as file_io:
            file_io.write(data)
        if print_output:
            echo(f"{self.host.print_prefix}file downloaded: {remote_filename}", err=True)
        return True

    def _executor(self) -> Executor:
        if self.executor is None:
            raise ConnectError(f"{self.host.name}: not connected (pyinfra connects every host before its commands)")
        return self.executor

    def _refusal(self, arguments: Mapping[str, object]) -> str | None:
        used = sorted({name for key, name in REFUSED.items() if arguments.get(key)})
        if not used:
            return None
        return (f"{self.host.name}: {', '.join(used)} cannot be used on a Windows host: every command runs as the "
                "WinRM user (winrm.user); set the location and environment inside the PowerShell script "
                "(Set-Location, $env:NAME = ...) and drop these arguments for this host")

    def _failed(self, message: str) -> bool:
        self.host.log_styled(message, fg="red", log_func=logger.error)
        return False

    @staticmethod
    def _script(command: object) -> tuple[str, str]:
        # The raw value runs; only the masked value (HiddenValue parts as *MASKED*) is ever printed or logged.
        if isinstance(command, StringCommand):
            return command.get_raw_value(), command.get_masked_value()
        return str(command), str(command)
