"""Operations on a Windows host, each deciding from the WindowsState fact alone (asked once, before any of them),
so that `--dry` predicts exactly what the run then does: a file is uploaded when its SHA-256 differs, the IIS
installer runs when one of its inputs changed or its own -Check reports drift, the task is registered when its
definition or its user's password changed, and started when it is not running or what it runs changed.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os

from pyinfra import host
from pyinfra.api import FileUploadCommand, operation

from comfyinfra.windows.facts import script

PBKDF2_ROUNDS = 200_000


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


@operation(is_idempotent=True)
def acl_layout(dirs: tuple[str, ...], logs: str, user: str, acls: dict[str, bool]):
    """comfyinfra's directories, each with its own ACL (comfyinfra/windows/scripts/layout.ps1).

    + dirs: the directories; logs: the one the task's user may write; user: the task's user
    + acls: directory -> already exactly right (WindowsState)
    """
    if all(acls.get(d) for d in dirs):
        host.noop(f"{len(dirs)} directories exist, owned by Administrators, with their own ACLs")
        return
    yield script("layout", {"dirs": list(dirs), "logs": logs, "user": user})  # all: a parent's reset reaches children


@operation(is_idempotent=True)
def windows_file(dest: str, content: bytes, current: str | None):
    """A file written whole: uploaded beside `dest` and moved over it after its SHA-256 was checked on the host.

    + current: the SHA-256 the host has now (WindowsState), None when absent
    """
    if current == sha256(content):
        host.noop(f"{dest} is current (sha256 {current[:12]})")
        return
    yield FileUploadCommand(io.BytesIO(content), dest)


@operation(is_idempotent=True)
def iis_applied(installer: str, host_name: str, timeout_s: int, reasons: tuple[str, ...]):
    """The IIS installer run, then the site checked end to end over HTTPS on the box itself.

    + reasons: why it must run (changed inputs, the installer's DRIFT lines); empty: nothing to do
    """
    if not reasons:
        host.noop("IIS already as configured (the installer's -Check reports no drift)")
        return
    yield script("apply-iis", {"installer": installer, "host_name": host_name, "timeout_s": timeout_s})


def task_stamp(xml: bytes, password: str, salt: bytes | None = None) -> str:
    """What a registration records: the definition's hash and a salted PBKDF2 of the password Task Scheduler stored
    (in comfyinfra's administrators-only state directory), so a new password re-registers and nothing else does."""
    salt = salt if salt is not None else os.urandom(16)
    derived = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, PBKDF2_ROUNDS).hex()
    return json.dumps({"xml": sha256(xml), "salt": salt.hex(), "password": derived}, sort_keys=True)


def stamp_matches(stamp: str | None, xml: bytes, password: str) -> bool:
    try:
        recorded = json.loads(stamp or "")
        salt = bytes.fromhex(recorded["salt"])
    except (ValueError, KeyError, TypeError):
        return False
    return hmac.compare_digest(task_stamp(xml, password, salt), json.dumps(recorded, sort_keys=True))


@operation(is_idempotent=True)
def task_registered(task_path: str, task_name: str, xml_path: str, xml: bytes, user: str, password: str,
                    stamp_path: str, reasons: tuple[str, ...]):
    """The watchdog's scheduled task registered from its XML as `user` (LogonType Password).

    + reasons: why it must be (re-)registered (WindowsState against the plan); empty: nothing to do
    """
    if not reasons:
        host.noop(f"task {task_path}{task_name} registered as {user}, definition and password unchanged")
        return
    params = {"xml": xml_path, "task_path": task_path, "task_name": task_name, "user": user, "stamp": stamp_path,
              "stamp_text": task_stamp(xml, password)}
    yield script("register-task", params, password=password)


@operation(is_idempotent=True)
def task_running(task_path: str, task_name: str, state: str | None, restart: bool):
    """The watchdog's task running now; restarted when what it runs changed (`restart`)."""
    if state == "Running" and not restart:
        host.noop(f"task {task_path}{task_name} is running")
        return
    yield script("start-task", {"task_path": task_path, "task_name": task_name, "restart": restart})
