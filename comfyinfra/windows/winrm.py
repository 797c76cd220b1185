"""Run PowerShell on a Windows host over WinRM (WinRS, pywinrm's Protocol API), send and fetch files, with no
cmd.exe command-line limit: a small fixed bootstrap travels as `-EncodedCommand` (always far below cmd.exe's 8191
characters) and the real script or file travels over stdin as base64 lines, in Send messages well under WinRM's
MaxEnvelopeSize, as Ansible's WinRM plugin does (reference windows-iis-wsl.md 4.2-4.3, pitfall 20). Uploads land in
`<dest>.comfyinfra-part`, are checked against their SHA-256 on the host and then moved over the destination, and the
executor checks the hash the host reports too. Errors are sentences naming the host, what failed and how to fix it;
the password is in no message, log line or repr. No pyinfra here: comfyinfra.windows.connector adapts this to pyinfra.
The PowerShell side of the bootstraps has been parsed, never run, here (no Windows): the WinRS exchange is tested
against tests/support/wsman_server.py, whose Windows side is emulated.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import requests
from typing_extensions import Self  # typing.Self needs Python 3.11; the project allows 3.10
from winrm.exceptions import (
    InvalidCredentialsError,
    WinRMError,
    WinRMOperationTimeoutError,
    WinRMTransportError,
    WSManFaultError,
)
from winrm.protocol import Protocol

log = logging.getLogger(__name__)

# cmd.exe refuses longer command lines ("The command line is too long."), and WinRS runs every command through
# cmd /c; pywinrm's Session.run_ps hits it at about 3 KB of script (reference 4.2, pitfall 20).
CMD_LINE_LIMIT = 8191
# Raw bytes per stdin line: a multiple of 3, so every line is a complete base64 block the host decodes alone. Its
# 64 KiB of base64, base64-encoded again inside the SOAP Send, makes an envelope of about 90 KB: far under WinRM's
# default MaxEnvelopeSizekb (500) and under the 150 KB of older hosts.
STDIN_CHUNK_BYTES = 48 * 1024
POWERSHELL = "powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand "
UTF8_CODEPAGE = 65001  # the shell's code page: what powershell.exe writes to stdout is UTF-8
PART_SUFFIX = ".comfyinfra-part"
Transport = Literal["ntlm", "kerberos", "credssp"]
TRANSPORTS = ("ntlm", "kerberos", "credssp")

# Each bootstrap starts with a marker line (tests/support/wsman_server.py recognises the bootstraps by it). They run
# with $ErrorActionPreference = 'Stop', so an error ends them with exit 1 and the error record on stderr as CLIXML;
# progress records are silenced, or they would fill stderr with CLIXML noise.
_RUN = """# comfyinfra-winrm: run
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$encoded = $input | Out-String
$source = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($encoded))
$global:LASTEXITCODE = 0
& ([scriptblock]::Create($source))
exit $global:LASTEXITCODE
"""

_PUT = """# comfyinfra-winrm: put
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$dest = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('{dest_b64}'))
$expected = '{sha256}'
$part = $dest + '{part_suffix}'
$folder = [IO.Path]::GetDirectoryName($dest)
if ($folder) {{ [void][IO.Directory]::CreateDirectory($folder) }}
$sha = [Security.Cryptography.SHA256]::Create()
$stream = [IO.File]::Create($part)
try {{
    foreach ($line in $input) {{
        if ($line.Length -eq 0) {{ continue }}
        $bytes = [Convert]::FromBase64String($line)
        $stream.Write($bytes, 0, $bytes.Length)
        [void]$sha.TransformBlock($bytes, 0, $bytes.Length, $null, 0)
    }}
}} finally {{
    $stream.Dispose()
}}
[void]$sha.TransformFinalBlock((New-Object byte[] 0), 0, 0)
$actual = ([BitConverter]::ToString($sha.Hash) -replace '-', '').ToLowerInvariant()
if ($actual -ne $expected) {{
    Remove-Item -LiteralPath $part -Force
    throw "The upload arrived damaged (SHA-256 $actual, expected $expected); $dest was left as it was."
}}
Move-Item -LiteralPath $part -Destination $dest -Force
$actual
"""

_GET = """# comfyinfra-winrm: get
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$path = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('{path_b64}'))
$bytes = [IO.File]::ReadAllBytes($path)
$sha = [Security.Cryptography.SHA256]::Create()
([BitConverter]::ToString($sha.ComputeHash($bytes)) -replace '-', '').ToLowerInvariant()
[Convert]::ToBase64String($bytes, [Base64FormattingOptions]::InsertLineBreaks)
"""

_WINDOWS_ABSOLUTE = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\[^\\/]+[\\/])")


@dataclass(frozen=True)
class WinRMTarget:
    """Where and as whom to connect. `host_name` is the inventory name, used in every message."""

    host_name: str
    endpoint: str  # full URL, e.g. https://win.lan:5986/wsman
    transport: Transport
    user: str
    password: str = field(repr=False)
    cert_validation: bool = True
    ca_trust_path: str | None = None  # PEM bundle; None: the system's trust store (never REQUESTS_CA_BUNDLE)
    operation_timeout_s: int = 20  # how long the host may hold one WS-Man request (a Receive waiting for output)
    read_timeout_s: int = 30  # HTTP read timeout; pywinrm requires it above operation_timeout_s

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ValueError(f"{self.host_name}: WinRM transport {self.transport!r} is not supported; "
                             f"allowed: {', '.join(TRANSPORTS)}")
        if not re.match(r"^https?://", self.endpoint):
            raise ValueError(f"{self.host_name}: WinRM endpoint {self.endpoint!r} is not a URL; "
                             "allowed: https://<host>:5986/wsman")
        if not 0 < self.operation_timeout_s < self.read_timeout_s:
            raise ValueError(f"{self.host_name}: the WinRM read timeout ({self.read_timeout_s} s) must be above the "
                             f"operation timeout ({self.operation_timeout_s} s), both above 0")


@dataclass(frozen=True)
class Result:
    """What a PowerShell run gave: its exit code, stdout (UTF-8) and stderr (CLIXML decoded to plain text)."""

    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0


class WinRMFailure(Exception):
    """Base of this module's errors: the message is a sentence naming the host; it never holds the password."""

    def __init__(self, host_name: str, message: str):
        super().__init__(message)
        self.host_name = host_name


class WinRMConnectionError(WinRMFailure, ConnectionError):
    """The WinRM service could not be reached or used. `kind` says why, for callers that add their own hint:
    "tls", "unreachable", "credentials", "timeout", "service" (a fault or an unexpected HTTP answer), "client"."""

    def __init__(self, host_name: str, message: str, kind: str):
        super().__init__(host_name, message)
        self.kind = kind


class WinRMCommandError(WinRMFailure):
    """A command ran and failed: its exit code and decoded stderr are kept (`rc`, `stderr`)."""

    def __init__(self, host_name: str, message: str, rc: int | None = None, stderr: str = ""):
        super().__init__(host_name, message)
        self.rc = rc
        self.stderr = stderr


class WinRMCommandTimeout(WinRMFailure, TimeoutError):
    """A command ran longer than the caller allowed; it was stopped (WinRS Signal terminate)."""


class CommandLineTooLong(ValueError):
    """The bootstrap would not fit cmd.exe's command line: raised before anything is sent."""


def powershell_command(bootstrap: str) -> str:
    """The command line that runs `bootstrap`: powershell.exe with it as -EncodedCommand (UTF-16LE, base64)."""
    command = POWERSHELL + base64.b64encode(bootstrap.encode("utf-16-le")).decode("ascii")
    if len(command) >= CMD_LINE_LIMIT:
        raise CommandLineTooLong(f"the PowerShell command line would be {len(command)} characters; cmd.exe accepts "
                                 f"at most {CMD_LINE_LIMIT - 1}: pass long content on stdin, not in the bootstrap")
    return command


def run_bootstrap() -> str:
    return _RUN


def put_bootstrap(dest: str, sha256: str) -> str:
    return _PUT.format(dest_b64=_b64_text(dest), sha256=sha256, part_suffix=PART_SUFFIX)


def get_bootstrap(path: str) -> str:
    return _GET.format(path_b64=_b64_text(path))


def stdin_lines(payload: bytes) -> Iterator[bytes]:
    """The payload as base64 lines of STDIN_CHUNK_BYTES raw bytes each: one WinRS Send per line. Bytes, never str:
    pywinrm encodes a str stdin as cp437 (reference 4.2)."""
    for start in range(0, len(payload), STDIN_CHUNK_BYTES):
        yield base64.b64encode(payload[start:start + STDIN_CHUNK_BYTES]) + b"\r\n"


def _b64_text(text: str) -> str:
    # Paths travel as base64 of their UTF-8: no PowerShell quoting to get wrong, no code page to mangle them.
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


# --- CLIXML: how powershell.exe writes its error, warning, verbose and progress streams to a redirected stderr ---

_CLIXML_MARK = "#< CLIXML"
_CLIXML_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")
_STREAM_PREFIX = {"error": "", "warning": "WARNING: ", "verbose": "VERBOSE: ", "debug": "DEBUG: ",
                  "information": ""}


def decode_stderr(raw: bytes) -> str:
    """Plain text from powershell.exe's stderr: every `#< CLIXML` document becomes the text of its <S> stream
    records (errors as they are, others prefixed WARNING:/VERBOSE:/DEBUG:), progress records are dropped, `_xHHHH_`
    escapes are decoded; text that is not CLIXML (a native program's stderr) is kept as it is."""
    text = raw.decode("utf-8", "replace")
    pieces = text.split(_CLIXML_MARK)
    decoded = [pieces[0]]
    for piece in pieces[1:]:
        end = piece.find("</Objs>")
        start = piece.find("<Objs")
        if start == -1 or end == -1:
            decoded.append(_CLIXML_MARK + piece)  # not a document after all: keep the text
            continue
        end += len("</Objs>")
        try:
            document = _clixml_text(piece[start:end])
        except ET.ParseError:
            decoded.append(_CLIXML_MARK + piece)
            continue
        printed_between = piece[:start].strip("\r\n")  # a program's own text between the marker and <Objs> stays
        decoded += [printed_between + "\n" if printed_between else "", document, piece[end:]]
    lines = "".join(decoded).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).strip("\n")


def _clixml_text(document: str) -> str:
    root = ET.fromstring(document)
    parts = []
    for element in root:
        # Only <S S="stream"> children carry stream text; <Obj S="progress"> and other objects are not messages.
        if element.tag.rsplit("}", 1)[-1] != "S":
            continue
        stream = element.get("S", "").lower()
        parts.append(_STREAM_PREFIX.get(stream, "") + _unescape(element.text or ""))
    return "".join(parts)


def _unescape(text: str) -> str:
    # PowerShell serialises characters XML can't hold (CR, LF, ESC, and '_' itself as _x005F_) as UTF-16 code units;
    # surrogatepass rebuilds characters outside the BMP from their two escaped halves.
    units = _CLIXML_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    return units.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def error_headline(stderr: str) -> str:
    """The error message itself, without PowerShell's position block ("At line:3 char:5", "+ ...", "+ Category...")
    and with the console's line wrapping undone."""
    headline = []
    for line in stderr.splitlines():
        if re.match(r"^At (line:\d+|.+:\d+) char:\d+$", line.strip()) or line.lstrip().startswith("+ "):
            break
        headline.append(line.strip())
    return re.sub(r"\s+", " ", " ".join(headline)).strip() or re.sub(r"\s+", " ", stderr).strip()


# --- The executor ---

class Executor:
    """PowerShell, uploads and downloads on one Windows host. The WinRM connection is made on first use and kept
    (NTLM authenticates the TCP connection: reusing it saves the handshake on every command); `close()` ends it.

        with Executor(target) as windows:
            windows.put_file(web_config, r"C:\\inetpub\\comfyui\\web.config")
            windows.run_ps_checked(script, "Register the task")
    """

    def __init__(self, target: WinRMTarget):
        self.target = target
        self._protocol: Protocol | None = None

    def __repr__(self) -> str:
        return f"Executor({self.target!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        if self._protocol is not None:
            self._protocol.transport.close_session()
            self._protocol = None

    def check_connection(self) -> None:
        """Open and close a remote shell: proves TLS, the credentials and WinRS in two requests."""
        with self._transport_errors("open a remote shell"):
            protocol = self._connection()
            shell_id = protocol.open_shell(codepage=UTF8_CODEPAGE)
            protocol.close_shell(shell_id, close_session=False)

    def run_ps(self, script: str, *, timeout: float | None = None) -> Result:
        """Run a PowerShell script of any length (it travels on stdin, UTF-8). Its exit code is what it passes to
        `exit`, else the last native program's, else 0; an uncaught error gives 1 ($ErrorActionPreference is Stop).
        `timeout` (seconds): stop it and raise WinRMCommandTimeout when it runs longer."""
        log.debug("%s: running a PowerShell script of %d characters", self.target.host_name, len(script))
        rc, stdout, stderr = self._execute(run_bootstrap(), script.encode("utf-8"), "run a PowerShell script",
                                           timeout)
        return Result(rc, stdout.decode("utf-8", "replace").replace("\r\n", "\n"), decode_stderr(stderr))

    def run_ps_checked(self, script: str, what: str, *, timeout: float | None = None) -> Result:
        """run_ps, raising WinRMCommandError("<host>: <what> failed (exit N): <error>") unless it exits 0."""
        result = self.run_ps(script, timeout=timeout)
        if not result.ok:
            raise self._command_error(what, result)
        return result

    def put_file(self, data: bytes, dest: str) -> None:
        """Write `data` to `dest` (an absolute Windows path; its folder is created): complete or not at all."""
        self._require_absolute(dest, "upload to")
        sha256 = hashlib.sha256(data).hexdigest()
        what = f"upload {dest}"
        log.debug("%s: uploading %d bytes to %s", self.target.host_name, len(data), dest)
        rc, stdout, stderr = self._execute(put_bootstrap(dest, sha256), data, what, None)
        result = Result(rc, stdout.decode("utf-8", "replace"), decode_stderr(stderr))
        if not result.ok:
            raise self._command_error(what, result)
        reported = (result.stdout.split() or ["nothing"])[-1]
        if reported != sha256:
            raise WinRMCommandError(self.target.host_name, f"{self.target.host_name}: {what} failed: the host reported "
                                    f"SHA-256 {reported}, expected {sha256}; upload it again", rc, result.stderr)

    def get_file(self, path: str) -> bytes:
        """The content of `path` (an absolute Windows path), checked against the SHA-256 the host computed."""
        self._require_absolute(path, "download")
        what = f"download {path}"
        rc, stdout, stderr = self._execute(get_bootstrap(path), b"", what, None)
        result = Result(rc, "", decode_stderr(stderr))
        if not result.ok:
            raise self._command_error(what, result)
        reported, _, encoded = stdout.decode("ascii", "replace").strip().partition("\n")
        try:
            data = base64.b64decode("".join(encoded.split()), validate=True)
        except ValueError:
            data = None
        if data is None or hashlib.sha256(data).hexdigest() != reported.strip():
            raise WinRMCommandError(self.target.host_name, f"{self.target.host_name}: {what} failed: what arrived "
                                    "does not match the SHA-256 the host computed; download it again", rc)
        return data

    # --- one WinRS command: shell, command, stdin, output, signal, delete ---

    def _execute(self, bootstrap: str, payload: bytes, what: str, timeout: float | None) -> tuple[int, bytes, bytes]:
        try:
            command_line = powershell_command(bootstrap)
        except CommandLineTooLong as error:
            raise CommandLineTooLong(f"{self.target.host_name}: cannot {what}: {error}") from None
        with self._transport_errors(what):
            protocol = self._connection()
            shell_id = protocol.open_shell(codepage=UTF8_CODEPAGE)
            try:
                # console_mode_stdin=False: stdin is a pipe the bootstrap reads to its end, as Ansible does.
                command_id = protocol.run_command(shell_id, command_line, console_mode_stdin=False)
                try:
                    try:
                        self._send_stdin(protocol, shell_id, command_id, list(stdin_lines(payload)))
                    except WSManFaultError as fault:
                        # The program stopped reading stdin (it failed early: a folder it may not create, ...): its
                        # own error says more than the fault of the next Send, if it has ended with one.
                        return self._ended_early(protocol, shell_id, command_id, fault)
                    return self._receive(protocol, shell_id, command_id, what, timeout)
                finally:
                    self._quietly(protocol.cleanup_command, shell_id, command_id)
            finally:
                self._quietly(protocol.close_shell, shell_id, close_session=False)

    @staticmethod
    def _send_stdin(protocol: Protocol, shell_id: str, command_id: str, lines: list[bytes]) -> None:
        if not lines:
            protocol.send_command_input(shell_id, command_id, b"", end=True)
        for index, line in enumerate(lines):
            protocol.send_command_input(shell_id, command_id, line, end=index == len(lines) - 1)

    @staticmethod
    def _ended_early(protocol: Protocol, shell_id: str, command_id: str,
                     fault: WSManFaultError) -> tuple[int, bytes, bytes]:
        try:
            out, err, rc, done = protocol.get_command_output_raw(shell_id, command_id)
        except (WinRMError, WinRMOperationTimeoutError):
            done = False
        if not done or rc == 0:
            raise fault
        return rc, out, err

    def _receive(self, protocol: Protocol, shell_id: str, command_id: str, what: str,
                 timeout: float | None) -> tuple[int, bytes, bytes]:
        # pywinrm's get_command_output retries forever; this loop is the same with a deadline between Receives.
        deadline = None if timeout is None else time.monotonic() + timeout
        stdout, stderr = [], []
        while True:
            try:
                out, err, rc, done = protocol.get_command_output_raw(shell_id, command_id)
            except WinRMOperationTimeoutError:  # no output within the operation timeout: ask again
                out, err, rc, done = b"", b"", -1, False
            stdout.append(out)
            stderr.append(err)
            if done:
                return rc, b"".join(stdout), b"".join(stderr)
            if deadline is not None and time.monotonic() >= deadline:
                raise WinRMCommandTimeout(self.target.host_name, f"{self.target.host_name}: {what} did not finish "
                                          f"within {timeout:g} s; it was stopped")

    def _connection(self) -> Protocol:
        if self._protocol is None:
            target = self.target
            self._protocol = Protocol(
                endpoint=target.endpoint,
                transport=target.transport,
                username=target.user,
                password=target.password,
                server_cert_validation="validate" if target.cert_validation else "ignore",
                # None, not pywinrm's default "legacy_requests": no environment variable silently changes the CA.
                ca_trust_path=target.ca_trust_path,  # type: ignore[arg-type]
                read_timeout_sec=target.read_timeout_s,
                operation_timeout_sec=target.operation_timeout_s,
                proxy=None,  # a proxy from the environment would see the NTLM exchange: connect directly
            )
        return self._protocol

    def _quietly(self, call, *args, **kwargs) -> None:
        # Cleanup after a failure must not hide the failure; a shell left behind expires on the host (IdleTimeout).
        try:
            call(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - any cleanup error is secondary
            log.warning("%s: WinRM cleanup (%s) failed: %s", self.target.host_name, call.__name__,
                        type(error).__name__)

    def _require_absolute(self, path: str, what: str) -> None:
        if not _WINDOWS_ABSOLUTE.match(path):
            # .NET resolves relative paths against the process's directory (the user's profile under WinRS).
            raise ValueError(f"{self.target.host_name}: cannot {what} {path!r}: allowed: an absolute Windows path "
                             "such as C:\\ProgramData\\ComfyUI\\web.config")

    def _command_error(self, what: str, result: Result) -> WinRMCommandError:
        detail = error_headline(result.stderr) if result.stderr else (
            result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "no error output")
        return WinRMCommandError(self.target.host_name, f"{self.target.host_name}: {what} failed (exit {result.rc}): "
                                 f"{detail}", result.rc, result.stderr)

    def _transport_errors(self, what: str):
        return _TransportErrors(self.target, what)


class _TransportErrors:
    """Turns what requests and pywinrm raise into one sentence: host, endpoint, what failed, the likely fix."""

    def __init__(self, target: WinRMTarget, what: str):
        self.target = target
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, error, traceback) -> bool:
        if error is None or isinstance(error, WinRMFailure):
            return False
        translated = self._translate(error)
        if translated is None:
            return False
        raise translated from error

    def _translate(self, error: BaseException) -> WinRMConnectionError | None:
        t = self.target
        where = f"{t.host_name}: cannot {self.what}: the WinRM endpoint {t.endpoint}"
        if isinstance(error, requests.exceptions.SSLError):
            return WinRMConnectionError(t.host_name, f"{where} presented a TLS certificate that could not be "
                                        f"verified ({_ssl_reason(error)}). Set winrm.ca_trust_path to the PEM file of "
                                        "the CA that signed the listener's certificate, or give the listener a "
                                        "certificate for this host name.", "tls")
        if isinstance(error, requests.exceptions.Timeout):
            return WinRMConnectionError(t.host_name, f"{where} did not answer within {t.read_timeout_s} s. Check "
                                        "that the host is up and the WinRM service is running.", "timeout")
        if isinstance(error, requests.exceptions.ConnectionError):
            return WinRMConnectionError(t.host_name, f"{where} could not be reached ({_socket_reason(error)}). "
                                        "Check that the host is up, that a WinRM HTTPS listener is on that port "
                                        "(winrm enumerate winrm/config/listener) and that the firewall lets it in.",
                                        "unreachable")
        if isinstance(error, InvalidCredentialsError):
            return WinRMConnectionError(t.host_name, f"{where} rejected the credentials of {t.user!r} (HTTP 401, "
                                        f"{t.transport}). Check the user name (COMPUTER\\user for a local account) and "
                                        "the password; the account must be an administrator, and a local account "
                                        "also needs LocalAccountTokenFilterPolicy = 1.", "credentials")
        if isinstance(error, WSManFaultError):
            code = f", WS-Management fault {error.wsman_fault_code}" if error.wsman_fault_code else ""
            return WinRMConnectionError(t.host_name, f"{where} answered with a fault (HTTP {error.code}{code}): "
                                        f"{error.reason.strip()}", "service")
        if isinstance(error, WinRMTransportError):
            return WinRMConnectionError(t.host_name, f"{where} answered HTTP {error.code}. Check that the URL is "
                                        "the WinRM listener's (https://<host>:5986/wsman).", "service")
        if isinstance(error, WinRMError):
            hint = (f" Transport {t.transport} needs pywinrm's {t.transport} extra on this machine; ntlm needs none."
                    if "not installed" in str(error) else "")
            return WinRMConnectionError(t.host_name, f"{t.host_name}: cannot {self.what}: {error}.{hint}", "client")
        return None


def _ssl_reason(error: BaseException) -> str:
    match = re.search(r"certificate verify failed: ([^(]+?)\s*\(_ssl", str(error))
    return match.group(1) if match else "TLS handshake failed"


def _socket_reason(error: BaseException) -> str:
    text = str(error)
    for pattern in (r"\[Errno -?\d+\] ([^'\")]+)", r"(Name or service not known|Temporary failure in name resolution)"):
        match = re.search(pattern, text)
        if match:
            return match.group(1).strip().lower()
    return "connection failed"
