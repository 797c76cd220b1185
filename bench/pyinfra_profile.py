"""Run the pyinfra CLI with every SSH round trip timed and attributed (helper of bench/noop_redeploy.py).

    python bench/pyinfra_profile.py OUT.json <pyinfra arguments...>     (cwd: where pyinfra would run)

Before handing over to pyinfra_cli.main it wraps, in this process only:
- pyinfra.api.facts._get_fact: which fact (class, arguments) is being loaded;
- SSHConnector.run_shell_command / put_file / get_file / connect: wall time of each round trip;
- State.set_stage: when each stage (setup, connect, prepare, execute, disconnect) starts.
Each remote call is recorded with the fact that issued it (if any), the operation being prepared or
executed (its name), the stage, the su user, and the command (shortened). At exit OUT.json gets
{"wall_s", "stages", "calls": [...]}; the CLI's own stdout/stderr and exit status are untouched.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import atexit
import json
import sys
import traceback
from pathlib import Path

import pyinfra_cli.main  # first: it monkey-patches the stdlib for gevent
from pyinfra import context
from pyinfra.api import facts as fact_api
from pyinfra.api.state import State
from pyinfra.connectors.ssh import SSHConnector

REPO = Path(__file__).resolve().parents[1]
SHORT = 200

calls: list[dict] = []
stages: list[tuple[str, float]] = []
_now: dict = {"fact": None, "upload": None}


def _since_start() -> float:
    return round(time.perf_counter() - T0, 4)


def _caller_in_repo() -> str:
    """file:line of the innermost frame in this repository (deploy code that asked for a fact)."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        path = Path(frame.filename).absolute()
        if REPO in path.parents and "site-packages" not in path.parts and path.parent.name != "bench":
            return f"{path.relative_to(REPO)}:{frame.lineno}"
    return "?"


def _operation(host) -> str | None:
    op_hash = host.current_op_hash or host.executing_op_hash
    if not op_hash:
        return None
    try:
        return " / ".join(sorted(context.state.get_op_meta(op_hash).names))
    except Exception:  # noqa: BLE001 - attribution is best effort
        return op_hash


def _stage() -> str:
    try:
        return context.state.current_stage.name
    except Exception:  # noqa: BLE001 - no state yet
        return "?"


def _describe(command) -> str:
    text = command.get_masked_value() if hasattr(command, "get_masked_value") else str(command)
    text = " ".join(text.split())
    return text if len(text) <= SHORT else text[: SHORT - 3] + "..."


def _record(connector, kind: str, seconds: float, command: str, arguments: dict) -> None:
    host = connector.host
    fact = _now["fact"]
    calls.append({
        "kind": kind,
        "seconds": round(seconds, 5),
        "at": _since_start(),
        "stage": _stage(),
        "fact": fact["name"] if fact else None,
        "fact_args": fact["args"] if fact else None,
        "origin": fact["origin"] if fact else None,
        "operation": _operation(host),
        "deploy": host.current_deploy_name,
        "su_user": arguments.get("_su_user"),
        "nested_in_upload": _now["upload"] is not None and kind == "command",
        "command": command,
    })


_orig_get_fact = fact_api._get_fact


def _get_fact(state, host, cls, *args, **kwargs):
    fact_kwargs = args[1] if len(args) > 1 else kwargs.get("kwargs")
    described = ", ".join(f"{k}={v!r}"[:80] for k, v in (fact_kwargs or {}).items())
    previous = _now["fact"]
    _now["fact"] = {"name": cls.__name__, "args": described,
                    "origin": None if host.current_op_hash or host.executing_op_hash else _caller_in_repo()}
    try:
        return _orig_get_fact(state, host, cls, *args, **kwargs)
    finally:
        _now["fact"] = previous


fact_api._get_fact = _get_fact

_orig_run = SSHConnector.run_shell_command
_orig_put = SSHConnector.put_file
_orig_get = SSHConnector.get_file
_orig_connect = SSHConnector.connect


def _run_shell_command(self, command, print_output=False, print_input=False, **arguments):
    started = time.perf_counter()
    try:
        return _orig_run(self, command, print_output, print_input, **arguments)
    finally:
        _record(self, "command", time.perf_counter() - started, _describe(command), arguments)


def _put_file(self, filename_or_io, remote_filename, *args, **arguments):
    started = time.perf_counter()
    _now["upload"] = remote_filename
    try:
        return _orig_put(self, filename_or_io, remote_filename, *args, **arguments)
    finally:
        _now["upload"] = None
        _record(self, "upload", time.perf_counter() - started, f"put {remote_filename}", arguments)


def _get_file(self, remote_filename, *args, **arguments):
    started = time.perf_counter()
    try:
        return _orig_get(self, remote_filename, *args, **arguments)
    finally:
        _record(self, "download", time.perf_counter() - started, f"get {remote_filename}", arguments)


def _connect(self):
    started = time.perf_counter()
    try:
        return _orig_connect(self)
    finally:
        _record(self, "connect", time.perf_counter() - started, "ssh connect + auth", {})


SSHConnector.run_shell_command = _run_shell_command
SSHConnector.put_file = _put_file
SSHConnector.get_file = _get_file
SSHConnector.connect = _connect

_orig_set_stage = State.set_stage


def _set_stage(self, stage):
    stages.append((stage.name, _since_start()))
    return _orig_set_stage(self, stage)


State.set_stage = _set_stage


def _write(out: Path) -> None:
    out.write_text(json.dumps({"wall_s": _since_start(), "stages": stages, "calls": calls}, indent=1))


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out = Path(sys.argv[1])
    atexit.register(_write, out)
    # Run like `python -m pyinfra` from the current directory: that, not bench/, is sys.path[0].
    sys.path[0] = str(Path.cwd())
    sys.argv = ["pyinfra", *sys.argv[2:]]
    pyinfra_cli.main.main()


if __name__ == "__main__":
    main()
