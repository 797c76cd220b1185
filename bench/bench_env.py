"""Shared by the benchmarks: run under the project's venv (the e2e harness starts pyinfra with
sys.executable), with the repository importable."""

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_PYTHON = REPO / ".venv" / "bin" / "python"


def use_project_venv() -> None:
    if Path(sys.prefix).resolve() != (REPO / ".venv").resolve() and VENV_PYTHON.exists() \
            and not os.environ.get("COMFYINFRA_BENCH_REEXEC"):
        os.environ["COMFYINFRA_BENCH_REEXEC"] = "1"
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])
    sys.path.insert(0, str(REPO))
