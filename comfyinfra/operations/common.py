"""What every domain's operations share: failing one host with a message, and deciding on what
other operations changed in a way that a dry run predicts exactly."""

from __future__ import annotations

import shlex

from pyinfra import host, state
from pyinfra.api import operation
from pyinfra.api.operation import OperationMeta

# What a root shell on a host gets instead of the SSH session's PATH (root's own may lead under /root, e.g. pyenv):
# the interpreter a venv links to and the daemons root starts must be the system's.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

q = shlex.quote


def fail_command(message: str) -> str:
    """A command that prints the message and fails: pyinfra then fails this host only and goes on
    with the others (an exception raised inside an operation would abort the whole run)."""
    return f"echo {q('comfyinfra: ' + message)} >&2; exit 1"


@operation()
def refuse(message: str):
    """Fail this host (only) with a message, e.g. when its plan cannot be made."""
    yield fail_command(message)


def changed(*ops: OperationMeta) -> bool:
    """Whether any of these operations changes something on this host.

    While executing: what they did. While preparing (`--dry`, pyinfra's change detection): what
    they are about to do. pyinfra's own `_if=` is decided at execution only, so a dry run reports
    an `_if` operation as a "conditional change" on every run, even when nothing it depends on
    changes; deciding inside the operation lets `--dry` say exactly what the run will do.
    """
    if state.is_executing:
        return any(op.did_change() for op in ops)
    return any(op.will_change for op in ops)


@operation()
def on_change(commands: tuple[str, ...], watched: tuple = (), unless: tuple = (), why: str = ""):
    """
    Run commands when a watched operation changed (and none of `unless` did): restarts, reloads.

    + commands: shell commands to run
    + watched: OperationMeta of the operations this depends on
    + unless: OperationMeta of operations whose change already covers it (a start makes a restart moot)
    + why: said in the no-op message
    """
    if changed(*watched) and not changed(*unless):
        yield from commands
    else:
        host.noop(f"nothing changed that needs it{f' ({why})' if why else ''}")


def as_user(user: str, command: str) -> str:
    """Run `command` (sh) as `user` from a root shell: that user if it exists, else `nobody`.

    For checks that must fail the way the user's own later commands would (file permissions, git's
    ownership check) before that user has been created: `nobody` can read no less than it.
    """
    inner = q(command)
    return (f"if [ \"$(id -un)\" = {q(user)} ]; then sh -c {inner}; "
            f"elif id -u {q(user)} >/dev/null 2>&1; then runuser -u {q(user)} -- sh -c {inner}; "
            f"else runuser -u nobody -- sh -c {inner}; fi")
