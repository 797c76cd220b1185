"""Model sync benchmarks, each measured in one run on this machine (ratios are what count).

P1  no-op redeploy of a host whose models are already in place: comfyinfra's models_synced vs pyinfra's
    stock files.download(sha256sum=...), both through the real pyinfra CLI (@local); and our no-op time
    with 2 GB vs 8 GB of models (flat in model bytes: within 10 %).
P3  fresh verified download of a 2 GB file vs `curl` alone and `sha256sum` alone, same loopback server:
    target <= 1.1 x max(curl, sha256sum), i.e. hashing overlaps the transfer.

Usage: python bench/model_sync.py [--gb 2] [--large-gb 8] [--runs 3] [--only p1|p3]
Needs ~ (gb + large-gb) x 2 + gb GB free under /var/tmp; prints ratios, keeps nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.model_server import ModelServer, make_model_file  # noqa: E402

HELPER = REPO / "comfyinfra" / "host_helpers" / "model_sync.py"
GB = 1 << 30
PYTHON = shutil.which("python3", path="/usr/bin") or sys.executable


def timed(cmd, **kwargs) -> float:
    started = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)
    return time.monotonic() - started


def pyinfra_run(deploy: Path, work: Path) -> float:
    env = {**os.environ, "PYINFRA_PROGRESS": "off", "PYTHONPATH": str(REPO)}
    return timed([sys.executable, "-m", "pyinfra", "@local", str(deploy), "-y"], cwd=work, env=env)


def write_deploys(work: Path, server: ModelServer, files: list[tuple[str, str, int]], tag: str) -> tuple[Path, Path]:
    models = [{"name": name, "url": server.url(name), "sha256": sha, "size": size,
               "dests": [str(work / f"ours-{tag}" / "checkpoints" / name)]} for name, sha, size in files]
    manifest = {"host": "@local", "blobs": str(work / f"ours-{tag}" / ".blobs"), "logs": str(work / f"ours-{tag}" / "logs"),
                "parallel": 2, "models": models}
    ours = work / f"ours_{tag}.py"
    ours.write_text(
        "import json\nfrom comfyinfra.operations.models import models_synced\n"
        f"manifest = json.loads({json.dumps(json.dumps(manifest))})\n"
        f"models_synced(name='models', python={PYTHON!r}, helper={str(HELPER)!r}, manifest=manifest)\n")
    stock = work / f"stock_{tag}.py"
    stock.write_text("from pyinfra.operations import files\n" + "".join(
        f"files.download(name='model {name}', src={server.url(name)!r}, dest={str(work / f'stock-{tag}' / name)!r}, "
        f"sha256sum={sha!r})\n" for name, sha, _ in files))
    (work / f"stock-{tag}").mkdir()
    return ours, stock


def best(runs: int, fn) -> float:
    return min(fn() for _ in range(runs))


def p1(work: Path, server: ModelServer, gb: int, large_gb: int, runs: int) -> None:
    files = []
    for i in range(large_gb // gb):
        name = f"model{i}.safetensors"
        files.append((name, make_model_file(server.root / name, gb * GB, seed=i), gb * GB))
    small_ours, stock = write_deploys(work, server, files[:1], "small")
    large_ours, _ = write_deploys(work, server, files, "large")
    empty = work / "empty.py"
    empty.write_text("")
    for deploy in (small_ours, large_ours, stock):  # first runs: download everything
        pyinfra_run(deploy, work)
    t_empty = best(runs, lambda: pyinfra_run(empty, work))
    t_small = best(runs, lambda: pyinfra_run(small_ours, work))
    t_large = best(runs, lambda: pyinfra_run(large_ours, work))
    t_stock = best(runs, lambda: pyinfra_run(stock, work))
    print(f"P1 no-op redeploy, best of {runs} (pyinfra CLI, @local):")
    print(f"  empty deploy                        {t_empty:6.2f} s")
    print(f"  stock files.download, {gb} GB        {t_stock:6.2f} s")
    print(f"  models_synced, {gb} GB               {t_small:6.2f} s")
    print(f"  models_synced, {large_gb} GB ({len(files)} files)    {t_large:6.2f} s")
    print(f"  speed-up, whole runs:                {t_stock / t_small:6.1f}x")
    net_ours = max(t_small - t_empty, 0.01)
    print(f"  speed-up, operation cost (run - empty deploy): {(t_stock - t_empty) / net_ours:6.1f}x (target >= 20x)")
    print(f"  {large_gb} GB vs {gb} GB no-op: {100 * (t_large / t_small - 1):+5.1f} % (target within 10 %)")


def p3(work: Path, server: ModelServer, gb: int, runs: int) -> None:
    name = "p3.safetensors"
    sha = make_model_file(server.root / name, gb * GB, seed=99)
    url = server.url(name)

    def curl() -> float:
        out = work / "curl.out"
        took = timed(["curl", "-s", "-f", "-o", str(out), url])
        out.unlink()
        return took

    def sha256sum() -> float:
        return timed(["sha256sum", str(server.root / name)])

    def ours() -> float:
        target = work / "p3"
        shutil.rmtree(target, ignore_errors=True)
        manifest = {"host": "bench", "blobs": str(target / ".blobs"), "logs": str(target / "logs"), "parallel": 1,
                    "models": [{"name": "p3", "url": url, "sha256": sha, "size": gb * GB, "dests": [str(target / "m")]}]}
        started = time.monotonic()
        subprocess.run([PYTHON, str(HELPER), "sync"], input=json.dumps(manifest), text=True, check=True,
                       stdout=subprocess.DEVNULL)
        took = time.monotonic() - started
        shutil.rmtree(target)
        return took

    t_curl, t_sha, t_ours = best(runs, curl), best(runs, sha256sum), best(runs, ours)
    bound = max(t_curl, t_sha)
    print(f"P3 fresh verified download of {gb} GB from a loopback server, best of {runs}:")
    print(f"  curl alone        {t_curl:6.2f} s")
    print(f"  sha256sum alone   {t_sha:6.2f} s")
    print(f"  model_sync        {t_ours:6.2f} s   (curl then sha256sum would be {t_curl + t_sha:.2f} s)")
    print(f"  model_sync / max(curl, sha256sum) = {t_ours / bound:.2f} (target <= 1.10)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=int, default=2)
    parser.add_argument("--large-gb", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=["p1", "p3"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="comfyinfra-bench-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        (work / "srv").mkdir()
        with ModelServer(work / "srv") as server:
            if args.only in (None, "p3"):
                p3(work, server, args.gb, args.runs)
            if args.only in (None, "p1"):
                p1(work, server, args.gb, args.large_gb, args.runs)


if __name__ == "__main__":
    main()
