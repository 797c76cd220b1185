"""A WS-Management (WinRS) server on 127.0.0.1 that the real pywinrm client talks to, for tests of the WinRM
transport: HTTPS with a certificate made at test time (the client validates it), NTLM authentication by pyspnego's
acceptor (connection-based, over the 401 round trips, with channel binding checked), and the WinRS actions pywinrm
sends: Create (shell), Command, Send (stdin), Receive, Signal, Delete. Like cmd.exe, it refuses command lines over
8191 characters; like WinRM, it refuses envelopes over MaxEnvelopeSize, answers a Receive with no output yet with
the OperationTimeout fault, and splits long output over several Receives.

THE WINDOWS SIDE IS EMULATED: no PowerShell runs here. `EmulatedWindows` decodes the -EncodedCommand bootstrap,
recognises comfyinfra.windows.winrm's three bootstraps by their marker line and does in Python what their
PowerShell would do: `put` keeps files in `files` (path -> bytes) after checking the SHA-256, `get` answers them,
`run` hands the decoded script to `handler(script) -> (rc, stdout, stderr_bytes)`, which each test provides.

    windows = EmulatedWindows(handler=lambda script: (0, "ok\\r\\n", b""))
    with WSManServer(windows, tls, users={"WIN3090\\\\deploy": password}) as server:
        ...  # server.url, server.command_lines, server.sends, windows.files, windows.scripts
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
import re
import socket
import ssl
import threading
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape

import spnego
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from typing_extensions import Self  # typing.Self needs Python 3.11; the project allows 3.10

CMD_LINE_LIMIT = 8191  # cmd.exe; a command run without cmd (WINRS_SKIP_CMD_SHELL) gets CreateProcess's 32767
MAX_ENVELOPE_BYTES = 500 * 1024  # WinRM's default MaxEnvelopeSizekb
MAX_ENVELOPE_DETAIL = "http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/MaxEnvelopeSize"  # DSP0226 EncodingLimit
OUTPUT_PER_RECEIVE = 32 * 1024  # bytes of each stream per Receive answer: long output takes several Receives

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "x": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
}
SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
TRANSFER = "http://schemas.xmlsoap.org/ws/2004/09/transfer"
CLIXML_HEAD = '#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
# Windows PowerShell 5.1 writes this progress record before the first module load; the decoder must drop it.
CLIXML_PROGRESS = (
    '<Obj S="progress" RefId="0"><TN RefId="0"><T>System.Management.Automation.PSCustomObject</T>'
    '<T>System.Object</T></TN><MS><I64 N="SourceId">1</I64><PR N="Record"><AV>Preparing modules for first use.</AV>'
    "<AI>0</AI><Nil /><PI>-1</PI><PC>-1</PC><T>Completed</T><SR>-1</SR><SD> </SD></PR></MS></Obj>"
)

ScriptHandler = Callable[[str], tuple[int, "str | bytes", bytes]]


# --- TLS material ---

@dataclass(frozen=True)
class TlsFiles:
    cert: Path  # PEM; also what the client is given as ca_trust_path
    key: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """A self-signed certificate for 127.0.0.1 and localhost (EC P-256: made in milliseconds)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "comfyinfra test WinRM listener")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory / "listener.pem", directory / "listener.key")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    return files


# --- what powershell.exe writes to a redirected stderr ---

def clixml_error(*lines: str, progress: bool = True) -> bytes:
    """stderr as Windows PowerShell 5.1 writes an uncaught error under WinRS: `#< CLIXML`, the progress record of
    its first module load, then one <S S="Error"> per line of the error view, CR LF escaped as _x000D__x000A_."""
    records = "".join(f'<S S="Error">{_clixml_escape(line)}_x000D__x000A_</S>' for line in lines)
    return (CLIXML_HEAD + (CLIXML_PROGRESS if progress else "") + records + "</Objs>").encode("utf-8")


def _clixml_escape(text: str) -> str:
    text = text.replace("_x", "_x005F_x")  # PowerShell escapes an '_' that would read as an escape
    return escape(text)


def _script_error(message: str, line: int, statement: str) -> bytes:
    return clixml_error(message, f"At line:{line} char:5", f"+     {statement}", "+     " + "~" * len(statement),
                        "    + CategoryInfo          : OperationStopped: (:) [], RuntimeException",
                        "    + FullyQualifiedErrorId : RuntimeException")


# --- the emulated Windows host ---

@dataclass
class EmulatedWindows:
    """What comfyinfra.windows.winrm's bootstraps would do on Windows, done in Python (no PowerShell runs).

    files: path -> content, as the executor's uploads left them (exact path strings; Windows would ignore case).
    scripts: every script the run bootstrap received, decoded, in order.
    handler: answers a script: (exit code, stdout as str or bytes, stderr bytes, e.g. clixml_error(...)).
    damage_next_upload / misreport_next_hash: faults for the integrity checks (flip a byte in transit; have the
    host print a wrong hash after a good upload).
    """

    handler: ScriptHandler = field(default=lambda script: (0, "", b""))
    files: dict[str, bytes] = field(default_factory=dict)
    scripts: list[str] = field(default_factory=list)
    damage_next_upload: bool = False
    misreport_next_hash: bool = False

    def execute(self, command_line: str, stdin: bytes) -> tuple[int, bytes, bytes]:
        program = command_line.split(" ", 1)[0]
        if not re.fullmatch(r"(?i)powershell(\.exe)?", program):
            return 1, b"", (f"'{program}' is not recognized as an internal or external command,\r\n"
                            "operable program or batch file.\r\n").encode()
        encoded = re.search(r"(?i)\s-(?:EncodedCommand|enc|ec|e)\s+(\S+)", command_line)
        if not encoded:
            return 1, b"", clixml_error("emulated Windows: only powershell.exe -EncodedCommand is emulated")
        bootstrap = base64.b64decode(encoded.group(1)).decode("utf-16-le")
        kind = re.match(r"# comfyinfra-winrm: (\w+)", bootstrap)
        emulate = {"run": self._run, "put": self._put, "get": self._get}.get(kind.group(1) if kind else "")
        if emulate is None:
            return 1, b"", clixml_error("emulated Windows: this bootstrap is none of comfyinfra's (run, put, get)")
        return emulate(bootstrap, stdin)

    def _run(self, bootstrap: str, stdin: bytes) -> tuple[int, bytes, bytes]:
        # $input | Out-String, then FromBase64String, which skips the line breaks.
        source = base64.b64decode(b"".join(stdin.split())).decode("utf-8")
        self.scripts.append(source)
        rc, stdout, stderr = self.handler(source)
        return rc, stdout.encode("utf-8") if isinstance(stdout, str) else stdout, stderr

    def _put(self, bootstrap: str, stdin: bytes) -> tuple[int, bytes, bytes]:
        dest = _b64_literal(bootstrap)
        expected = re.search(r"\$expected = '([0-9a-f]{64})'", bootstrap).group(1)
        data = b"".join(base64.b64decode(line) for line in stdin.split(b"\r\n") if line)  # foreach ($line in $input)
        if self.damage_next_upload and data:
            self.damage_next_upload = False
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:  # the part file is removed; dest keeps what it had
            return 1, b"", _script_error(f"The upload arrived damaged (SHA-256 {actual}, expected {expected}); "
                                         f"{dest} was left as it was.", 24, 'throw "The upload arrived damaged ..."')
        self.files[dest] = data  # Move-Item -Force of the checked part file over dest
        return 0, (self._reported(actual) + "\r\n").encode(), b""

    def _get(self, bootstrap: str, stdin: bytes) -> tuple[int, bytes, bytes]:
        path = _b64_literal(bootstrap)
        if path not in self.files:
            return 1, b"", _script_error(f'Exception calling "ReadAllBytes" with "1" argument(s): "Could not find '
                                         f"file '{path}'.\"", 5, "$bytes = [IO.File]::ReadAllBytes($path)")
        data = self.files[path]
        encoded = base64.b64encode(data).decode()
        wrapped = "\r\n".join(encoded[i:i + 76] for i in range(0, len(encoded), 76))  # InsertLineBreaks: 76, CR LF
        return 0, f"{self._reported(hashlib.sha256(data).hexdigest())}\r\n{wrapped}\r\n".encode(), b""

    def _reported(self, sha256: str) -> str:
        if self.misreport_next_hash:
            self.misreport_next_hash = False
            return hashlib.sha256(b"something else").hexdigest()
        return sha256


def _b64_literal(bootstrap: str) -> str:
    return base64.b64decode(re.search(r"FromBase64String\('([A-Za-z0-9+/=]*)'\)", bootstrap).group(1)).decode()


# --- the WS-Management service ---

@dataclass
class Send:
    command_id: str
    stdin_bytes: int  # decoded size of this chunk of stdin
    envelope_bytes: int  # size of the whole SOAP request that carried it
    end: bool


@dataclass
class _Command:
    command_line: str
    stdin: bytearray = field(default_factory=bytearray)
    stdin_sends: int = 0
    started: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    rc: int = -1
    stdout: bytes = b""
    stderr: bytes = b""


class WSManServer:
    """The WinRS endpoint at `url`. Records: command_lines (each in full), sends, shell_options (per Create),
    signals, auth_failures. `users`: account -> password (DOMAIN\\user), given to pyspnego's NTLM acceptor.
    `stdin_stops_after = n`: each program stops reading stdin after n chunks and runs with what it got, as a
    bootstrap that fails early would; the next Send gets the fault of a closed pipe (its code and text as Win32's
    ERROR_NO_DATA: the exact fault a Windows host sends here is not verified)."""

    def __init__(self, windows: EmulatedWindows, tls: TlsFiles, users: dict[str, str],
                 max_envelope_bytes: int = MAX_ENVELOPE_BYTES):
        self.windows = windows
        self.tls = tls
        self.users = users
        self.max_envelope_bytes = max_envelope_bytes
        self.stdin_stops_after: int | None = None
        self.command_lines: list[str] = []
        self.sends: list[Send] = []
        self.shell_options: list[dict[str, str]] = []
        self.signals: list[str] = []
        self.auth_failures = 0
        self._shells: dict[str, dict[str, _Command]] = {}
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._httpd: ThreadingHTTPServer | None = None
        self._saved_user_file: str | None = None
        self._users_file: Path | None = None
        cert_der = ssl.PEM_cert_to_DER_cert(tls.cert.read_text())
        # RFC 5929 tls-server-end-point: what the client binds its NTLM answer to (requests_ntlm, send_cbt).
        self.channel_bindings = spnego.channel_bindings.GssChannelBindings(
            application_data=b"tls-server-end-point:" + hashlib.sha256(cert_der).digest())

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/wsman"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> Self:
        # pyspnego's NTLM acceptor reads its accounts from the file named by NTLM_USER_FILE (DOMAIN:user:password).
        users_file = self.tls.cert.parent / f"ntlm-users-{uuid.uuid4().hex}"
        lines = []
        for account, password in self.users.items():
            domain, _, user = account.rpartition("\\")
            lines.append(f"{domain}:{user}:{password}")
        users_file.write_text("\n".join(lines) + "\n")
        users_file.chmod(0o600)
        self._saved_user_file = os.environ.get("NTLM_USER_FILE")
        os.environ["NTLM_USER_FILE"] = str(users_file)
        self._users_file = users_file

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.tls.cert, self.tls.key)
        server = self

        class Httpd(ThreadingHTTPServer):
            daemon_threads = True

            def finish_request(self, request, client_address):
                # The TLS handshake happens here, in the connection's thread: a client that rejects the
                # certificate fails its own handshake without stalling the listener.
                try:
                    tls_socket = context.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError):
                    return
                with server._lock:
                    server._connections.add(tls_socket)
                try:
                    Handler(tls_socket, client_address, self)
                finally:
                    with server._lock:
                        server._connections.discard(tls_socket)

        class Handler(_WSManHandler):
            wsman = server

        self._httpd = Httpd(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            with self._lock:
                for connection in list(self._connections):
                    try:
                        connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
            self._httpd = None
        if self._saved_user_file is None:
            os.environ.pop("NTLM_USER_FILE", None)
        else:
            os.environ["NTLM_USER_FILE"] = self._saved_user_file
        if self._users_file is not None:
            self._users_file.unlink(missing_ok=True)

    # --- WinRS actions: each returns the SOAP body (or raises _Fault) ---

    def answer(self, envelope: ET.Element, envelope_bytes: int) -> tuple[str, str]:
        """(response action, body XML) for one request."""
        action = _text(envelope, "s:Header/a:Action")
        shell_id = _text(envelope, "s:Header/w:SelectorSet/w:Selector[@Name='ShellId']")
        options = {o.get("Name"): (o.text or "") for o in envelope.findall("s:Header/w:OptionSet/w:Option", NS)}
        body = envelope.find("s:Body", NS)
        if action == f"{TRANSFER}/Create":
            return f"{TRANSFER}/CreateResponse", self._create(options)
        shell = self._shell(shell_id)
        if action == f"{TRANSFER}/Delete":
            with self._lock:
                self._shells.pop(shell_id, None)
            return f"{TRANSFER}/DeleteResponse", ""
        if action == f"{SHELL}/Command":
            return f"{SHELL}/CommandResponse", self._command(shell, body, options)
        if action == f"{SHELL}/Send":
            return f"{SHELL}/SendResponse", self._send(shell, body, envelope_bytes)
        if action == f"{SHELL}/Receive":
            timeout = _seconds(_text(envelope, "s:Header/w:OperationTimeout") or "PT20S")
            return f"{SHELL}/ReceiveResponse", self._receive(shell, body, timeout)
        if action == f"{SHELL}/Signal":
            signal = body.find("rsp:Signal", NS)
            self.signals.append(_text(signal, "rsp:Code").rsplit("/", 1)[-1])
            shell.pop(signal.get("CommandId"), None)
            return f"{SHELL}/SignalResponse", "<rsp:SignalResponse/>"
        raise _Fault("s:Sender", "w:ActionNotSupported", f"The action {action} is not supported by this emulation.")

    def _create(self, options: dict[str, str]) -> str:
        shell_id = str(uuid.uuid4()).upper()
        with self._lock:
            self._shells[shell_id] = {}
        self.shell_options.append(options)
        return (f"<x:ResourceCreated><a:Address>{self.url}</a:Address><a:ReferenceParameters>"
                f"<w:ResourceURI>{SHELL}/cmd</w:ResourceURI><w:SelectorSet>"
                f'<w:Selector Name="ShellId">{shell_id}</w:Selector></w:SelectorSet></a:ReferenceParameters>'
                f"</x:ResourceCreated><rsp:Shell><rsp:ShellId>{shell_id}</rsp:ShellId></rsp:Shell>")

    def _shell(self, shell_id: str | None) -> dict[str, _Command]:
        with self._lock:
            shell = self._shells.get(shell_id or "")
        if shell is None:
            raise _Fault("s:Sender", "w:InvalidSelectors", f"The request for the Windows Remote Shell with ShellId "
                         f"{shell_id} failed because the shell was not found on the server.", 2150858843)
        return shell

    def _command(self, shell: dict[str, _Command], body: ET.Element, options: dict[str, str]) -> str:
        command_line = _text(body, "rsp:CommandLine/rsp:Command") or ""
        arguments = body.findall("rsp:CommandLine/rsp:Arguments", NS)
        command_line = " ".join([command_line] + [a.text or "" for a in arguments])
        self.command_lines.append(command_line)
        command_id = str(uuid.uuid4()).upper()
        command = shell[command_id] = _Command(command_line)
        limit = 32767 if options.get("WINRS_SKIP_CMD_SHELL", "").upper() == "TRUE" else CMD_LINE_LIMIT
        if len(command_line) > limit:  # what cmd.exe answers; the program never starts
            command.rc, command.stderr = 1, b"The command line is too long.\r\n"
            command.done.set()
        return f"<rsp:CommandResponse><rsp:CommandId>{command_id}</rsp:CommandId></rsp:CommandResponse>"

    def _send(self, shell: dict[str, _Command], body: ET.Element, envelope_bytes: int) -> str:
        stream = body.find("rsp:Send/rsp:Stream", NS)
        command_id = stream.get("CommandId")
        command = shell.get(command_id)
        chunk = base64.b64decode(stream.text or "")
        end = stream.get("End", "false").lower() == "true"
        self.sends.append(Send(command_id, len(chunk), envelope_bytes, end))
        if command is None:
            raise _Fault("s:Sender", "w:InvalidSelectors", "The command was not found in this shell.")
        if command.started or command.done.is_set():
            raise _Fault("s:Receiver", "w:InternalError", "The pipe is being closed.", 2147942632)
        command.stdin.extend(chunk)
        command.stdin_sends += 1
        if end or command.stdin_sends == self.stdin_stops_after:
            # The program runs once its stdin is complete: every comfyinfra bootstrap reads stdin to its end.
            command.started = True
            threading.Thread(target=self._run, args=(command,), daemon=True).start()
        return "<rsp:SendResponse/>"

    def _run(self, command: _Command) -> None:
        try:
            command.rc, command.stdout, command.stderr = self.windows.execute(command.command_line,
                                                                              bytes(command.stdin))
        except Exception as error:  # noqa: BLE001 - a broken test handler shows as the command's error
            command.rc, command.stderr = 1, clixml_error(f"emulated Windows failed: {error!r}")
        command.done.set()

    def _receive(self, shell: dict[str, _Command], body: ET.Element, timeout: float) -> str:
        command_id = body.find("rsp:Receive/rsp:DesiredStream", NS).get("CommandId")
        command = shell.get(command_id)
        if command is None:
            raise _Fault("s:Sender", "w:InvalidSelectors", "The command was not found in this shell.")
        if not command.done.wait(timeout):
            raise _Fault("s:Receiver", "w:TimedOut", "The WS-Management service cannot complete the operation "
                         "within the time specified in OperationTimeout.", 2150858793)
        out, command.stdout = command.stdout[:OUTPUT_PER_RECEIVE], command.stdout[OUTPUT_PER_RECEIVE:]
        err, command.stderr = command.stderr[:OUTPUT_PER_RECEIVE], command.stderr[OUTPUT_PER_RECEIVE:]
        streams = "".join(f'<rsp:Stream Name="{name}" CommandId="{command_id}">{base64.b64encode(data).decode()}'
                          "</rsp:Stream>" for name, data in (("stdout", out), ("stderr", err)) if data)
        if command.stdout or command.stderr:
            state = f'<rsp:CommandState CommandId="{command_id}" State="{SHELL}/CommandState/Running"/>'
        else:
            state = (f'<rsp:CommandState CommandId="{command_id}" State="{SHELL}/CommandState/Done">'
                     f"<rsp:ExitCode>{command.rc}</rsp:ExitCode></rsp:CommandState>")
        return f"<rsp:ReceiveResponse>{streams}{state}</rsp:ReceiveResponse>"


class _Fault(Exception):
    def __init__(self, code: str, subcode: str, reason: str, wsman_code: int | None = None):
        super().__init__(reason)
        self.code, self.subcode, self.reason, self.wsman_code = code, subcode, reason, wsman_code

    def body(self) -> str:
        detail = (f'<f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault" '
                  f'Code="{self.wsman_code}" Machine="127.0.0.1"><f:Message>{escape(self.reason)}</f:Message>'
                  "</f:WSManFault>") if self.wsman_code else ""
        if self.subcode == "w:EncodingLimit":
            detail = f"<w:FaultDetail>{MAX_ENVELOPE_DETAIL}</w:FaultDetail>"
        return (f"<s:Fault><s:Code><s:Value>{self.code}</s:Value><s:Subcode><s:Value>{self.subcode}</s:Value>"
                f'</s:Subcode></s:Code><s:Reason><s:Text xml:lang="en-US">{escape(self.reason)}</s:Text></s:Reason>'
                f"<s:Detail>{detail}</s:Detail></s:Fault>")


class _WSManHandler(BaseHTTPRequestHandler):
    """One TCP connection: NTLM authenticates the connection (three requests), then serves WinRS requests."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: Nagle + delayed ACK would add 40 ms each
    wsman: WSManServer

    def setup(self) -> None:
        super().setup()
        self.ntlm: spnego.ContextProxy | None = None
        self.authenticated = False

    def log_message(self, *args) -> None:  # the server records what matters in its own lists
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path != "/wsman":
            return self._reply(404, b"")
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() in ("negotiate", "ntlm") and token:
            return self._authenticate(scheme, base64.b64decode(token), body)
        if not self.authenticated:
            return self._reply(401, b"", {"WWW-Authenticate": "Negotiate"})
        self._serve(body)

    def _authenticate(self, scheme: str, token: bytes, body: bytes) -> None:
        if self.ntlm is None or self.authenticated:  # a new handshake on this connection
            self.authenticated = False
            self.ntlm = spnego.server(protocol="ntlm", channel_bindings=self.wsman.channel_bindings)
        try:
            answer = self.ntlm.step(token)
        except spnego.exceptions.SpnegoError:
            self.ntlm = None
            self.wsman.auth_failures += 1
            return self._reply(401, b"", {"WWW-Authenticate": "Negotiate"})
        if not self.ntlm.complete:
            return self._reply(401, b"", {"WWW-Authenticate": f"{scheme} {base64.b64encode(answer).decode()}"})
        self.authenticated = True
        self._serve(body)

    def _serve(self, body: bytes) -> None:
        try:
            envelope = ET.fromstring(body)
        except ET.ParseError:
            return self._reply(400, b"")
        message_id = _text(envelope, "s:Header/a:MessageID") or ""
        try:
            if len(body) > self.wsman.max_envelope_bytes:
                raise _Fault("s:Sender", "w:EncodingLimit", f"The request of {len(body)} bytes exceeds "
                             f"MaxEnvelopeSize ({self.wsman.max_envelope_bytes} bytes).")
            action, content = self.wsman.answer(envelope, len(body))
            status = 200
        except _Fault as fault:
            action, content, status = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault", fault.body(), 500
        response = (
            f'<s:Envelope xmlns:s="{NS["s"]}" xmlns:a="{NS["a"]}" xmlns:w="{NS["w"]}" xmlns:rsp="{NS["rsp"]}" '
            f'xmlns:x="{NS["x"]}"><s:Header><a:Action>{action}</a:Action>'
            f"<a:MessageID>uuid:{str(uuid.uuid4()).upper()}</a:MessageID>"
            "<a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>"
            f"<a:RelatesTo>{escape(message_id)}</a:RelatesTo></s:Header><s:Body>{content}</s:Body></s:Envelope>"
        )
        self._reply(status, response.encode("utf-8"), {"Content-Type": "application/soap+xml;charset=UTF-8"})

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _text(element: ET.Element | None, path: str) -> str | None:
    found = element.find(path, NS) if element is not None else None
    return found.text if found is not None else None


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"PT(\d+(?:\.\d+)?)S", duration.strip())
    return float(match.group(1)) if match else 20.0
