"""pyinfra's per-operation overhead, trimmed: two of its helpers replaced by equivalents that return the same.

Every operation call, on every host, goes through both; a no-op fan-out spends most of the client's CPU per
host there (bench/fanout.py):
- the operation order. In CLI mode pyinfra orders (and identifies, across hosts) every operation by the line
  numbers of the deploy code that called it: `get_operation_order_from_stack` builds them with
  `inspect.stack()` plus two `getframeinfo()` calls per frame, each reading the frame's source line through
  linecache; under gevent's deep stacks, milliseconds per operation. The numbers come from the frames
  themselves (`f_code.co_filename`, `f_lineno`: what getframeinfo() returns for them).
- the global arguments' names and types: `all_global_arguments()` evaluates `typing.get_type_hints` of a
  fixed TypedDict on every call; computed once here.
tests/unit/test_pyinfra_overhead.py compares each with pyinfra's own over real call stacks.
"""

from __future__ import annotations

import importlib
import sys

import pyinfra
from pyinfra.api import arguments as _arguments
from pyinfra.api import util as _util

# the module, not the `operation` decorator that pyinfra.api re-exports under the same name
_operation = importlib.import_module("pyinfra.api.operation")

ORIGINAL_ORDER = _util.get_operation_order_from_stack
ORIGINAL_ARGUMENTS = _arguments.all_global_arguments


def operation_order_from_stack(state) -> list[int]:
    frames = []
    frame = sys._getframe(1)  # the caller (pyinfra's solve_operation_consistency), as inspect.stack() there would start
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    frames.reverse()  # outermost first

    start = 0
    if state.current_deploy_filename:  # from its first frame on; none of them when it isn't on the stack
        start = next((i for i, f in enumerate(frames) if f.f_code.co_filename == state.current_deploy_filename),
                     len(frames))

    line_numbers = [state.current_op_file_number] if pyinfra.is_cli else []
    install_dir = _util.PYINFRA_INSTALL_DIR
    line_numbers += [f.f_lineno for f in frames[start:] if not f.f_code.co_filename.startswith(install_dir)]
    return line_numbers


_GLOBAL_ARGUMENTS: tuple = ()


def all_global_arguments() -> list[tuple[str, type]]:
    global _GLOBAL_ARGUMENTS
    if not _GLOBAL_ARGUMENTS:
        _GLOBAL_ARGUMENTS = tuple(ORIGINAL_ARGUMENTS())
    return list(_GLOBAL_ARGUMENTS)  # a fresh list, as pyinfra's


def install() -> None:
    """Use both for every operation of this process (idempotent)."""
    _operation.get_operation_order_from_stack = operation_order_from_stack
    _arguments.all_global_arguments = all_global_arguments
