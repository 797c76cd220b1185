"""The WinRM transport end to end: the real pywinrm client (HTTPS with certificate validation, NTLM through
requests_ntlm) against tests/support/wsman_server.py, a WS-Management server on loopback whose Windows side is
emulated. Executor (comfyinfra.windows.winrm): chunked uploads with their SHA-256, scripts of any length within the
cmd.exe limit, CLIXML decoded, exit codes, timeouts, the password in no log or message, transport failures as
sentences. Connector (comfyinfra.windows.connector): a `@winrm/<name>` host through pyinfra's own API.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import re
import socket
import time
import traceback

import pytest
import winrm
from pyinfra.api import Config, Inventory, State
from pyinfra.api import output as pyinfra_output
from pyinfra.api.command import StringCommand
from pyinfra.api.connect import connect_all
from pyinfra.api.connectors import get_all_connectors
from pyinfra.api.exceptions import ConnectError
from pyinfra.api.hiddenvalue import HiddenValue
from pyinfra.api.host import Host
from pyinfra.api.operation import add_op
from pyinfra.api.operations import run_ops
from pyinfra.context import ctx_state
from pyinfra.operations import server as server_ops

from comfyinfra.windows.connector import WinRMConnector
from comfyinfra.windows.winrm import (
    CMD_LINE_LIMIT,
    CommandLineTooLong,
    Executor,
    WinRMCommandError,
    WinRMCommandTimeout,
    WinRMConnectionError,
    WinRMTarget,
    decode_stderr,
    error_headline,
    get_bootstrap,
    put_bootstrap,
    run_bootstrap,
)
from tests.support.powershell_lint import lint
from tests.support.wsman_server import MAX_ENVELOPE_BYTES, EmulatedWindows, WSManServer, clixml_error, make_tls_files

HOST = "win-3090"
USER = "WIN3090\\deploy"
PASSWORD = "Tr0ub4dor&3-never-logged"
PASSWORD_ENV = "WIN3090_WINRM_PASSWORD"
DEST = r"C:\ProgramData\ComfyUI\upload.bin"


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def windows():
    return EmulatedWindows()


@pytest.fixture
def wsman(windows, tls):
    with WSManServer(windows, tls, users={USER: PASSWORD}) as server:
        yield server


def make_target(wsman, tls, **changes) -> WinRMTarget:
    settings = {"host_name": HOST, "endpoint": wsman.url, "transport": "ntlm", "user": USER, "password": PASSWORD,
                "ca_trust_path": str(tls.cert)}
    return WinRMTarget(**{**settings, **changes})


@pytest.fixture
def executor(wsman, tls):
    with Executor(make_target(wsman, tls)) as connected:
        yield connected


def connect_once(target: WinRMTarget) -> None:
    with Executor(target) as executor:
        executor.check_connection()


def failure_of(call, *args, **kwargs) -> BaseException:
    with pytest.raises(Exception) as caught:
        call(*args, **kwargs)
    return caught.value


# --- files ---

def test_a_200_kb_file_is_uploaded_in_several_chunks_and_reassembled_with_its_sha256(executor, wsman, windows):
    data = os.urandom(200 * 1024)

    executor.put_file(data, DEST)

    assert windows.files[DEST] == data  # the host re-assembled it and checked its SHA-256 before moving it in place
    chunks = [send for send in wsman.sends if send.stdin_bytes]
    assert len(chunks) > 1
    assert all(send.envelope_bytes < MAX_ENVELOPE_BYTES for send in wsman.sends)
    assert sum(send.stdin_bytes for send in chunks) == len(base64.b64encode(data)) + 2 * len(chunks)  # + CR LF each
    assert executor.get_file(DEST) == data  # and back, over several Receives


def test_an_upload_damaged_in_transit_leaves_the_old_file_and_names_host_and_destination(executor, windows):
    windows.files[DEST] = b"the previous version"
    windows.damage_next_upload = True

    error = failure_of(executor.put_file, b"the new version" * 1000, DEST)

    assert isinstance(error, WinRMCommandError)
    assert str(error).startswith(f"{HOST}: upload {DEST} failed (exit 1): The upload arrived damaged")
    assert windows.files[DEST] == b"the previous version"


def test_a_program_that_stops_reading_its_upload_reports_its_own_error_not_the_pipe_fault(executor, wsman, windows):
    wsman.stdin_stops_after = 2  # the bootstrap ends after two of the five chunks

    error = failure_of(executor.put_file, os.urandom(200 * 1024), DEST)

    assert isinstance(error, WinRMCommandError)
    assert str(error).startswith(f"{HOST}: upload {DEST} failed (exit 1): The upload arrived damaged")
    assert DEST not in windows.files


def test_a_hash_the_host_reports_wrongly_is_caught_by_the_executor(executor, windows):
    windows.misreport_next_hash = True

    error = failure_of(executor.put_file, b"web.config", DEST)

    assert isinstance(error, WinRMCommandError)
    assert f"{HOST}: upload {DEST} failed: the host reported SHA-256" in str(error)


def test_downloading_a_missing_file_says_which_file_and_host(executor):
    error = failure_of(executor.get_file, r"C:\ProgramData\ComfyUI\missing.log")

    assert isinstance(error, WinRMCommandError)
    assert str(error) == (f"{HOST}: download C:\\ProgramData\\ComfyUI\\missing.log failed (exit 1): Exception calling "
                          "\"ReadAllBytes\" with \"1\" argument(s): \"Could not find file "
                          "'C:\\ProgramData\\ComfyUI\\missing.log'.\"")


def test_a_relative_destination_is_refused_before_connecting(executor, wsman):
    error = failure_of(executor.put_file, b"x", "web.config")

    assert isinstance(error, ValueError) and "allowed: an absolute Windows path" in str(error)
    assert wsman.command_lines == []


def test_a_bootstrap_over_the_command_line_limit_is_refused_before_anything_is_sent(executor, wsman):
    deep = "C:\\" + "folder\\" * 800 + "web.config"

    error = failure_of(executor.put_file, b"x", deep)

    assert isinstance(error, CommandLineTooLong)
    assert str(error).startswith(f"{HOST}: cannot upload C:\\folder") and "cmd.exe accepts at most 8190" in str(error)
    assert wsman.command_lines == [] and wsman.shell_options == []


# --- scripts ---

def test_a_100_kb_script_runs_whole_with_no_command_line_over_the_cmd_limit(executor, wsman, windows):
    script = "".join(f"Write-Output 'line {n}: café ✓'\n" for n in range(4000))
    assert len(script.encode("utf-8")) > 100 * 1024
    windows.handler = lambda received: (0, f"{len(received)} characters\r\n", b"")

    result = executor.run_ps(script)

    assert windows.scripts == [script]  # byte for byte, non-ASCII included
    assert result.rc == 0 and result.stdout == f"{len(script)} characters\n"
    assert wsman.command_lines and all(len(line) < CMD_LINE_LIMIT for line in wsman.command_lines)
    assert wsman.shell_options[-1]["WINRS_CODEPAGE"] == "65001"


def test_the_emulated_cmd_refuses_what_pywinrm_run_ps_sends_for_a_4_kb_script(wsman, tls):
    # The trap the executor avoids (reference pitfall 20), shown with pywinrm's own Session.run_ps.
    session = winrm.Session(wsman.url, auth=(USER, PASSWORD), transport="ntlm", ca_trust_path=str(tls.cert),
                            proxy=None)

    result = session.run_ps("Write-Output '" + "x" * 4000 + "'")

    assert result.status_code == 1 and b"The command line is too long." in result.std_err


def test_a_clixml_error_is_decoded_into_its_plain_message(executor, windows):
    windows.handler = lambda script: (1, "", clixml_error(
        "Register-ScheduledTask : Access is denied.", "At line:3 char:1", "+ Register-ScheduledTask -Xml $xml",
        "+ ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~", "    + CategoryInfo          : PermissionDenied: (PS_ScheduledTask:Root"
        "/Microsoft/...S_ScheduledTask) [Register-ScheduledTask], CimException"))

    result = executor.run_ps("Register-ScheduledTask -Xml $xml")
    error = failure_of(executor.run_ps_checked, "Register-ScheduledTask -Xml $xml", "Register the task")

    assert result.rc == 1
    assert result.stderr.splitlines()[:2] == ["Register-ScheduledTask : Access is denied.", "At line:3 char:1"]
    assert "CLIXML" not in result.stderr and "_x000D_" not in result.stderr and "Preparing modules" not in result.stderr
    assert str(error) == f"{HOST}: Register the task failed (exit 1): Register-ScheduledTask : Access is denied."


def test_a_failing_exit_code_is_surfaced_with_the_host_name(executor, windows):
    windows.handler = lambda script: (3, "checked the binding\r\n", b"appcmd: ERROR ( message:Cannot find SITE )\r\n")

    result = executor.run_ps("appcmd list site ComfyUI; exit $LASTEXITCODE")
    error = failure_of(executor.run_ps_checked, "appcmd list site ComfyUI", "Find the site")

    assert (result.rc, result.stdout, result.stderr) == (3, "checked the binding\n",
                                                         "appcmd: ERROR ( message:Cannot find SITE )")
    assert isinstance(error, WinRMCommandError) and error.rc == 3
    assert str(error) == f"{HOST}: Find the site failed (exit 3): appcmd: ERROR ( message:Cannot find SITE )"


def test_a_script_running_past_its_timeout_is_stopped(wsman, tls, windows):
    windows.handler = lambda script: (time.sleep(2.5), (0, "", b""))[1]
    started = time.monotonic()

    with Executor(make_target(wsman, tls, operation_timeout_s=1, read_timeout_s=3)) as slow:
        error = failure_of(slow.run_ps, "Start-Sleep 60", timeout=0.5)

    assert isinstance(error, WinRMCommandTimeout) and isinstance(error, TimeoutError)
    assert str(error) == f"{HOST}: run a PowerShell script did not finish within 0.5 s; it was stopped"
    assert time.monotonic() - started < 2.4 and "terminate" in wsman.signals


def test_the_bootstraps_parse_as_powershell_and_pass_the_lint():
    for bootstrap in (run_bootstrap(), put_bootstrap(DEST, "0" * 64), get_bootstrap(DEST)):
        assert lint(bootstrap) == []  # tree-sitter parse, ASCII only, no "$name:" in strings, ...


# --- transport failures: one sentence each, no password ---

def test_a_certificate_the_client_cannot_verify_gives_a_readable_sentence(wsman, tls):
    with Executor(make_target(wsman, tls, ca_trust_path=None)) as untrusting:  # the system's store: not our CA
        error = failure_of(untrusting.run_ps, "Write-Output hi")

    assert isinstance(error, WinRMConnectionError) and error.kind == "tls"
    assert re.fullmatch(re.escape(f"{HOST}: cannot run a PowerShell script: the WinRM endpoint {wsman.url} presented a "
                                  "TLS certificate that could not be verified (") + "self.signed certificate"
                        + re.escape("). Set winrm.ca_trust_path to the PEM file of the CA that signed the listener's "
                                    "certificate, or give the listener a certificate for this host name."), str(error))
    assert wsman.command_lines == []


def test_a_wrong_password_gives_a_readable_401_sentence(wsman, tls):
    with Executor(make_target(wsman, tls, password="not-" + PASSWORD)) as wrong:
        error = failure_of(wrong.check_connection)

    assert isinstance(error, WinRMConnectionError) and error.kind == "credentials"
    assert str(error).startswith(f"{HOST}: cannot open a remote shell: the WinRM endpoint {wsman.url} rejected the "
                                 f"credentials of {USER!r} (HTTP 401, ntlm). Check the user name")
    assert wsman.auth_failures >= 1 and wsman.shell_options == []


def test_an_endpoint_nobody_listens_on_gives_a_readable_sentence(tls):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    target = WinRMTarget(HOST, f"https://127.0.0.1:{port}/wsman", "ntlm", USER, PASSWORD, ca_trust_path=str(tls.cert))

    with Executor(target) as nowhere:
        error = failure_of(nowhere.check_connection)

    assert isinstance(error, WinRMConnectionError) and error.kind == "unreachable"
    assert str(error).startswith(f"{HOST}: cannot open a remote shell: the WinRM endpoint https://127.0.0.1:{port}"
                                 "/wsman could not be reached (connection refused). Check that the host is up")


def test_the_password_is_in_no_log_line_output_or_error(wsman, tls, windows, caplog, capfd):
    for name in ("", "urllib3", "requests", "requests_ntlm", "spnego", "winrm", "comfyinfra", "pyinfra"):
        caplog.set_level(logging.DEBUG, logger=name)
    windows.handler = lambda script: (1, "", clixml_error("Set-Content : Access to the path is denied."))
    texts = []
    with Executor(make_target(wsman, tls)) as good:
        texts += [repr(good), repr(good.target)]
        good.put_file(b"data" * 5000, DEST)
        texts.append(repr(good.run_ps("Set-Content C:\\x.txt 1")))
        for failing in (lambda: good.run_ps_checked("Set-Content C:\\x.txt 1", "Write x"),
                        lambda: connect_once(make_target(wsman, tls, password="x" + PASSWORD)),
                        lambda: connect_once(make_target(wsman, tls, ca_trust_path=None))):
            error = failure_of(failing)
            texts.append("".join(traceback.format_exception(error)))  # the message and every chained cause
    captured = capfd.readouterr()
    texts += [caplog.text, captured.out, captured.err]

    assert "NTLM step" in caplog.text  # the authentication itself was logged at DEBUG, and checked here
    forms = (PASSWORD, base64.b64encode(PASSWORD.encode()).decode(), base64.b64encode(f"{USER}:{PASSWORD}".encode())
             .decode(), PASSWORD.encode("utf-16-le").hex(), base64.b64encode(PASSWORD.encode("utf-16-le")).decode())
    assert not [form for form in forms for text in texts if form in text]


# --- decoding stderr ---

def test_powershell_stderr_as_windows_writes_it_is_decoded():
    raw = (b'#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
           b'<Obj S="progress" RefId="0"><TN RefId="0"><T>System.Management.Automation.PSCustomObject</T>'
           b'<T>System.Object</T></TN><MS><I64 N="SourceId">1</I64><PR N="Record"><AV>Preparing modules for first '
           b"use.</AV><AI>0</AI><Nil /><PI>-1</PI><PC>-1</PC><T>Completed</T><SR>-1</SR><SD> </SD></PR></MS></Obj>"
           b"<S S=\"Error\">no-such-cmd : The term 'no-such-cmd' is not recognized as the name of a cmdlet, function,"
           b" script file, or operable _x000D__x000A_</S><S S=\"Error\">program. Check the spelling of the name, or "
           b"if a path was included, verify that the path is correct and try again._x000D__x000A_</S>"
           b'<S S="Error">At line:1 char:1_x000D__x000A_</S><S S="Error">+ no-such-cmd_x000D__x000A_</S>'
           b'<S S="Error">+ ~~~~~~~~~~~_x000D__x000A_</S></Objs>')

    text = decode_stderr(raw)

    assert text.splitlines() == [
        ("no-such-cmd : The term 'no-such-cmd' is not recognized as the name of a cmdlet, function, script file, or "
         "operable"),
        ("program. Check the spelling of the name, or if a path was included, verify that the path is correct and try "
         "again."),
        "At line:1 char:1",
        "+ no-such-cmd",
        "+ ~~~~~~~~~~~",
    ]
    assert error_headline(text) == ("no-such-cmd : The term 'no-such-cmd' is not recognized as the name of a cmdlet, "
                                    "function, script file, or operable program. Check the spelling of the name, or "
                                    "if a path was included, verify that the path is correct and try again.")


def test_stderr_mixing_native_text_streams_and_escapes_is_decoded():
    head = '#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
    raw = ("wsl.exe: distro not running\r\n" + head + '<S S="warning">IIS_x005F_xRESET_x000D__x000A_</S></Objs>'
           + head + '<S S="Error">bad _xD83D__xDE00_ name_x000D__x000A_</S></Objs>').encode()

    assert decode_stderr(raw) == "wsl.exe: distro not running\nWARNING: IIS_xRESET\nbad \U0001F600 name"
    assert decode_stderr(b"#< CLIXML\r\n<Objs><S>not closed") == "#< CLIXML\n<Objs><S>not closed"
    assert decode_stderr(b"#< CLIXML\r\n<Objs><S>broken</Objs> after") == "#< CLIXML\n<Objs><S>broken</Objs> after"
    between = f"#< CLIXML\r\nOpenProcess failed\r\n{head[11:]}<S S=\"Error\">Denied</S></Objs>"
    assert decode_stderr(between.encode()) == "OpenProcess failed\nDenied"
    assert decode_stderr(b"plain error\r\n") == "plain error"


# --- the pyinfra connector ---

def settings_for(wsman, tls, **changes) -> dict:
    return {"host": "127.0.0.1", "port": wsman.port, "user": USER, "password_env": PASSWORD_ENV,
            "ca_trust_path": str(tls.cert), **changes}


def winrm_host(settings: dict) -> Host:
    """The host of a one-host inventory `@winrm/win-3090`, in a pyinfra State as the CLI makes it."""
    inventory = Inventory(([(f"@winrm/{HOST}", {"winrm": settings})], {}))
    State(inventory=inventory, config=Config())
    return inventory.get_host(HOST)


def connect(host: Host) -> None:
    with ctx_state.use(host.state):
        connect_all(host.state)


def test_the_connector_is_registered_and_names_the_host_by_its_inventory_name(wsman, tls):
    host = winrm_host(settings_for(wsman, tls))

    assert get_all_connectors()["winrm"] is WinRMConnector and WinRMConnector.handles_execution
    assert list(WinRMConnector.make_names_data(HOST)) == [(HOST, {}, [])]
    assert [each.name for each in host.inventory] == [HOST]
    assert isinstance(host.connector, WinRMConnector)


def test_a_winrm_host_connects_runs_scripts_and_moves_files_through_pyinfra(wsman, tls, windows, monkeypatch, caplog):
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    caplog.set_level(logging.DEBUG, logger="pyinfra")
    echoed = []  # what the pyinfra CLI would print (its echo is a no-op without the CLI)
    monkeypatch.setattr(pyinfra_output, "_echo", lambda message=None, **kwargs: echoed.append(str(message)))
    windows.handler = lambda script: (3, "", b"") if "exit 3" in script else (0, "done\r\n", b"")
    host = winrm_host(settings_for(wsman, tls))
    connect(host)
    token = HiddenValue("s3cret-token")

    ran, output = host.run_shell_command(StringCommand("$token =", token, ";", "Write-Output 'done'"),
                                         print_input=True, print_output=False)
    three, _ = host.run_shell_command(StringCommand("exit 3"), print_input=False, print_output=False,
                                      _success_exit_codes=[0, 3])
    failed, _ = host.run_shell_command(StringCommand("exit 3"), print_input=False, print_output=False)
    sent = host.put_file(io.BytesIO(b"<configuration/>"), r"C:\inetpub\comfyui\web.config")
    back = io.BytesIO()
    fetched = host.get_file(r"C:\inetpub\comfyui\web.config", back)

    assert host.connected and (ran, output.stdout) == (True, "done")
    assert windows.scripts[0] == "$token = s3cret-token ; Write-Output 'done'"
    shown = "\n".join(echoed) + caplog.text
    assert echoed[0] == f"[{HOST}] >>> $token = *MASKED* ; Write-Output 'done'" and "s3cret-token" not in shown
    assert f"Running PowerShell on {HOST}: $token = *MASKED* ;" in caplog.text
    assert (three, failed) == (True, False)
    assert sent and fetched and back.getvalue() == b"<configuration/>"
    assert windows.files[r"C:\inetpub\comfyui\web.config"] == b"<configuration/>"


def test_an_operation_with_pyinfra_default_arguments_runs_on_a_winrm_host(wsman, tls, windows, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    state = winrm_host(settings_for(wsman, tls)).state
    with ctx_state.use(state):
        connect_all(state)
        add_op(state, server_ops.shell, commands=["Write-Output 'from an operation'"])
        run_ops(state)

    assert windows.scripts == ["Write-Output 'from an operation'"]
    assert not state.failed_hosts


def test_sudo_chdir_and_env_are_refused_with_a_sentence_and_nothing_runs(wsman, tls, windows, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    host = winrm_host(settings_for(wsman, tls))
    connect(host)

    ran, output = host.run_shell_command(StringCommand("Get-Date"), print_input=False, print_output=False,
                                         _sudo=True, _chdir="C:\\", _env={"A": "1"})

    assert ran is False and windows.scripts == []
    assert output.stderr == (f"{HOST}: _chdir, _env, sudo cannot be used on a Windows host: every command runs as the "
                             "WinRM user (winrm.user); set the location and environment inside the PowerShell script "
                             "(Set-Location, $env:NAME = ...) and drop these arguments for this host")


def test_connecting_without_the_password_variable_names_the_variable(wsman, tls, monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    host = winrm_host(settings_for(wsman, tls))

    error = failure_of(host.connect, show_errors=False, raise_exceptions=True)

    assert isinstance(error, ConnectError)
    assert str(error) == (f"{HOST}: the environment variable {PASSWORD_ENV} (winrm.password_env) is not set or empty "
                          f"on this machine: export the WinRM password of {USER} in it, then run again")
    assert wsman.shell_options == []


def test_connecting_with_a_wrong_password_says_where_the_password_came_from(wsman, tls, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "not-" + PASSWORD)
    host = winrm_host(settings_for(wsman, tls))

    error = failure_of(host.connect, show_errors=False, raise_exceptions=True)

    assert isinstance(error, ConnectError) and "rejected the credentials" in str(error)
    assert str(error).endswith(f"(The password was read from the environment variable {PASSWORD_ENV}.)")
    assert PASSWORD not in str(error)


@pytest.mark.parametrize("changes, expected", [
    ({"cert_validation": False}, "would send the credentials readable or to an impostor"),
    ({"scheme": "http"}, "would send the credentials readable or to an impostor"),
    ({"pasword_env": "X"}, "host data `winrm`: unknown pasword_env; allowed: host, port"),
])
def test_unsafe_or_misspelt_winrm_settings_are_refused_at_connect(wsman, tls, monkeypatch, changes, expected):
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    host = winrm_host(settings_for(wsman, tls, **changes))

    error = failure_of(host.connect, show_errors=False, raise_exceptions=True)

    assert isinstance(error, ConnectError) and expected in str(error) and str(error).startswith(f"{HOST}: ")


def test_no_comfyinfra_code_uses_pywinrms_session_or_its_run_ps():
    """The reference's trap 20: winrm.Session.run_ps sends the script on cmd.exe's command line, which fails at about
    3 KB of script; comfyinfra sends every script over stdin (comfyinfra.windows.winrm). Checked on the syntax tree
    of every module: no winrm.Session, no import of it, no run_cmd/run_ps called on anything but our Executor."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "comfyinfra"
    offenders = []
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "winrm" and any(a.name == "Session" for a in node.names):
                offenders.append(f"{path.name}:{node.lineno} imports winrm.Session")
            if isinstance(node, ast.Attribute) and node.attr == "Session" and getattr(node.value, "id", "") == "winrm":
                offenders.append(f"{path.name}:{node.lineno} uses winrm.Session")
            if isinstance(node, ast.Attribute) and node.attr == "run_cmd":
                offenders.append(f"{path.name}:{node.lineno} calls run_cmd")
    assert offenders == []
