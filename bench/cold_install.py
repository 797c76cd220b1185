"""Cold-deploy install time on the host: pip vs uv, same packages, same sources, in one run.

What a first deploy installs into a fresh venv: the torch set (here torch 2.13.0+cpu from the
machine's wheelhouse) plus ComfyUI-style requirements, with empty caches for both tools.
Prints seconds per tool and the ratio. Usage: python bench/cold_install.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PACKAGES = ["torch==2.13.0+cpu", "pyyaml", "requests", "numpy", "pillow", "tqdm", "psutil"]
PYTHON = shutil.which("python3", path="/usr/bin") or sys.executable


def wheelhouse() -> str:
    for link in os.environ.get("PIP_FIND_LINKS", "").split() + ["/opt/wheels"]:
        if Path(link).is_dir():
            return link
    sys.exit("no wheelhouse with torch 2.13.0+cpu (PIP_FIND_LINKS or /opt/wheels)")


def timed(cmd: list[str], env: dict) -> float:
    started = time.monotonic()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - started


def install(tool: str, work: Path, links: str) -> float:
    venv = work / f"venv-{tool}"
    subprocess.run([PYTHON, "-m", "venv", str(venv)], check=True)
    env = {**os.environ, "PIP_CACHE_DIR": str(work / "pip-cache"), "UV_CACHE_DIR": str(work / "uv-cache")}
    sources = ["--index-url", "https://pypi.org/simple", "--find-links", links]
    if tool == "pip":
        cmd = [str(venv / "bin/python"), "-m", "pip", "install", "-q", "--no-input", *sources, *PACKAGES]
    else:
        cmd = [shutil.which("uv") or "uv", "pip", "install", "-q", "--python", str(venv / "bin/python"), *sources, *PACKAGES]
    return timed(cmd, env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    if not shutil.which("uv"):
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "uv"], check=True)
    links = wheelhouse()
    results: dict[str, list[float]] = {"pip": [], "uv": []}
    for _ in range(args.rounds):
        for tool in ("pip", "uv"):
            with tempfile.TemporaryDirectory(prefix=f"bench-{tool}-") as work:
                results[tool].append(install(tool, Path(work), links))
    pip_s, uv_s = min(results["pip"]), min(results["uv"])
    print(f"cold install of {len(PACKAGES)} packages (torch 2.13.0+cpu from the wheelhouse, rest from PyPI), best of {args.rounds}:")
    print(f"  pip: {pip_s:6.1f} s")
    print(f"  uv:  {uv_s:6.1f} s")
    print(f"  pip/uv ratio: {pip_s / uv_s:.2f}")


if __name__ == "__main__":
    main()
