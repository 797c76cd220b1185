"""`pyinfra <inventory> deploy.py` on a Windows host: the real CLI, comfyinfra's WinRM connector, the real pywinrm
over HTTPS + NTLM to a local WS-Management server (tests/support/wsman_server.py), and behind it an EMULATED Windows
(tests/support/windows_host.py: no PowerShell runs here). What this proves: the deploy reaches the Windows host from
the same inventory and command, `--dry` predicts exactly what the run then does and changes nothing, a second deploy
changes nothing, a half-done host gets only what it lacks, and no password shows in any output.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from tests.e2e.harness import pyinfra
from tests.support.windows_host import EmulatedWindowsHost
from tests.support.wsman_server import WSManServer, make_tls_files

WINRM_PASSWORD = "Wi-nRM pass'word\"1"  # quotes: whatever reaches a command line unquoted would show
TASK_PASSWORD = "t4sk-user secret!"
INSTALL = "C:\\ProgramData\\comfyinfra"
SITE_WEB_CONFIG = "C:\\inetpub\\comfyui\\web.config"
ROLE = "Windows host | "  # pyinfra prefixes the @deploy name
ENV = {"WIN_WINRM_PASSWORD": WINRM_PASSWORD, "WIN_COMFY_PASSWORD": TASK_PASSWORD}


@pytest.fixture
def box(tmp_path):
    """The emulated Windows host behind a real WinRM endpoint, and an inventory pointing at it."""
    tls = make_tls_files(tmp_path)
    host = EmulatedWindowsHost(task_password=TASK_PASSWORD)
    with WSManServer(host.windows, tls, users={"WIN\\deploy": WINRM_PASSWORD}) as server:
        winrm = {"host": "127.0.0.1", "port": server.port, "user": "WIN\\deploy", "password_env": "WIN_WINRM_PASSWORD",
                 "ca_trust_path": str(tls.cert)}
        windows = {"fronts": "wsl-box", "winrm": winrm, "wsl_user": "WIN\\comfy",
                   "wsl_user_password_env": "WIN_COMFY_PASSWORD",
                   "site": {"host_name": "comfy.example.com", "certificate": {"subject": "CN=*.example.com"}}}
        inventory = tmp_path / "windows_inventory.py"
        inventory.write_text(f"wsl = [('wsl-box', {{'platform_init': 'systemd'}})]\n"
                             f"windows = [('@winrm/win-box', {windows!r})]\n")
        yield host, inventory


def deploy(inventory, *args, env=None):
    result = pyinfra(inventory, "--limit", "win-box", "--json", *args, timeout=300, env={**ENV, **(env or {})})
    for secret in (WINRM_PASSWORD, TASK_PASSWORD, base64.b64encode(TASK_PASSWORD.encode()).decode()):
        assert secret not in result.stdout + result.stderr, "a password reached pyinfra's output"
    return result


def predicted(result) -> list[str]:
    """What `--dry --json` says would change on the Windows host, by operation name, in order."""
    assert result.rc == 0, result.stderr
    return [op["name"].removeprefix(ROLE) for op in result.data["plan"]
            if "win-box" in op["hosts_with_change"] or "win-box" in op["hosts_with_conditional_change"]]


def changed(result) -> list[str]:
    """What a deploy changed on the Windows host, by operation name, in order."""
    assert result.rc == 0, result.stderr
    return [name.removeprefix(ROLE) for name in result.changes("win-box")]


def test_dry_run_predicts_the_deploy_and_a_second_deploy_changes_nothing(box):
    host, inventory = box
    will_change = predicted(deploy(inventory, "--dry"))
    assert host.files == {} and host.ran == ["state"], "the dry run changed the host"
    assert "Scheduled task \\comfyinfra\\ComfyUI-Watchdog (at boot, as WIN\\comfy)" in will_change
    assert len(will_change) == 9  # directories, 5 files, register, start, IIS

    first = deploy(inventory, "-y")
    assert first.rc == 0, first.stderr
    assert changed(first) == will_change
    assert host.ran == ["state", "state", "layout", "register-task", "start-task", "apply-iis"]
    assert host.task == {"state": "Running", "user": "WIN\\comfy", "logon": "Password"}
    assert host.files[SITE_WEB_CONFIG] == host.files[f"{INSTALL}\\iis\\web.config"]
    assert b"maxAllowedContentLength=\"104857600\"" in host.files[SITE_WEB_CONFIG]

    again = deploy(inventory, "-y")
    assert changed(again) == []
    assert host.ran[-1] == "state"
    assert predicted(deploy(inventory, "--dry")) == []


def test_a_half_done_host_gets_only_what_it_lacks(box):
    host, inventory = box
    assert deploy(inventory, "-y").rc == 0
    del host.files[f"{INSTALL}\\bin\\comfyui-watchdog.ps1"]  # as if the first deploy had stopped there
    host.files[SITE_WEB_CONFIG] = b"<configuration/>"  # and someone edited the site by hand
    host.task["state"] = "Ready"

    will_change = predicted(deploy(inventory, "--dry"))
    assert will_change == ["Watchdog script", "Watchdog running",
                                      "IIS: https://comfy.example.com/ -> http://127.0.0.1:8188{UNENCODED_URL}"]
    fixed = deploy(inventory, "-y")
    assert changed(fixed) == will_change
    assert host.files[SITE_WEB_CONFIG] == host.files[f"{INSTALL}\\iis\\web.config"]
    assert changed(deploy(inventory, "-y")) == []


def test_a_new_task_password_re_registers_the_task_and_nothing_else(box):
    host, inventory = box
    assert deploy(inventory, "-y").rc == 0
    host.task_password = "rotated password"
    result = deploy(inventory, "-y", env={"WIN_COMFY_PASSWORD": "rotated password"})
    assert changed(result) == ["Scheduled task \\comfyinfra\\ComfyUI-Watchdog (at boot, as WIN\\comfy)",
                                         "Watchdog running"]
    stamp = host.files[f"{INSTALL}\\state\\task-registration.json"].decode()
    assert "rotated" not in stamp and hashlib.sha256(b"rotated password").hexdigest() not in stamp


def test_a_wrong_task_password_fails_the_host_with_the_reason_and_no_password(box):
    host, inventory = box
    result = deploy(inventory, "-y", env={"WIN_COMFY_PASSWORD": "not it"})
    assert result.rc != 0
    assert "The user name or password is incorrect" in result.stdout + result.stderr
    assert "not it" not in result.stdout + result.stderr
    assert host.task is None  # nothing registered with a password Windows refused


def test_windows_operations_are_ordered_after_every_comfyui_hosts():
    """pyinfra orders operations across hosts by the lines of deploy.py that issued them (its call stack): the
    Windows branch must come after the ComfyUI hosts' so that the check through IIS finds the WSL side deployed."""
    lines = (Path(__file__).resolve().parents[2] / "deploy.py").read_text().splitlines()
    comfyui_call = max(i for i, line in enumerate(lines) if line.strip() == "comfyui_host()")
    windows_call = max(i for i, line in enumerate(lines) if line.strip().startswith("windows.windows("))
    assert comfyui_call < windows_call
