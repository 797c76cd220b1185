"""Load test a ComfyUI server with one API-format workflow.

    python -m comfyinfra.loadtest --server http://127.0.0.1:8188 --workflow wf.json \\
        --jobs 50 --concurrency 4 --timeout 120 --output out/loadtest.json
    python -m comfyinfra.loadtest --inventory inventory/prod.py [--limit gpu-4090] --workflow ... (SSH tunnels)

Each job gets its own seed (every "seed"/"noise_seed" input is set; a workflow without seeds gets
its EmptyImage "color" perturbed, else its SaveImage filename_prefix suffixed) so ComfyUI's cache
does not answer. Jobs run on a thread pool of --concurrency workers (OS threads: nothing here imports
pyinfra_cli, whose gevent monkey-patching would make them greenlets on one thread), each with its own client.
Writes a JSON summary to --output and one NDJSON line per finished job to <output>.ndjson.
Exit codes: 0 SLA met (or --no-sla), 3 SLA breached, 2 usage error, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

from comfyinfra.client import ComfyClient, ComfyError, png_ok
from comfyinfra.validate import InventoryError

MAX_JOBS = 100_000
MAX_CONCURRENCY = 256
SEED_INPUTS = ("seed", "noise_seed")
SEED_MODULUS = 2 ** 48
DEFAULT_SLA = {"success_rate": 0.98, "p95_s": 45.0, "images_per_minute": 20.0}


class UsageError(Exception):
    pass


@dataclass
class JobResult:
    job: int
    prompt_id: str | None
    ok: bool
    latency_s: float
    images: int
    error_kind: str | None
    error: str | None


# -- workflow ------------------------------------------------------------------------------------

def load_workflow(path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"cannot read workflow {path}: {exc}") from exc
    except ValueError as exc:
        raise UsageError(f"workflow {path} is not JSON: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict):
        data = data["prompt"]
    if not isinstance(data, dict) or not data or not all(
            isinstance(n, dict) and "class_type" in n for n in data.values()):
        raise UsageError(f"workflow {path} is not an API-format workflow "
                         "({node_id: {class_type, inputs}}; export it with 'Save (API)')")
    return data


def vary_workflow(workflow: dict, job: int, seed_base: int = 0) -> dict:
    """A copy of ``workflow`` made unique for ``job`` so ComfyUI's cache cannot answer it."""
    wf = copy.deepcopy(workflow)
    value = seed_base + job
    nodes = [n for n in wf.values() if isinstance(n, dict) and isinstance(n.get("inputs"), dict)]
    seeded = False
    for node in nodes:
        for name in SEED_INPUTS:
            current = node["inputs"].get(name)
            if isinstance(current, int) and not isinstance(current, bool):
                node["inputs"][name] = value % SEED_MODULUS
                seeded = True
    if seeded:
        return wf
    for node in nodes:
        if node.get("class_type") == "EmptyImage" and isinstance(node["inputs"].get("color"), int):
            node["inputs"]["color"] = value % 0x1000000
            return wf
    for node in nodes:
        prefix = node["inputs"].get("filename_prefix")
        if isinstance(prefix, str):
            node["inputs"]["filename_prefix"] = f"{prefix}_lt{seed_base}_{job}"
            seeded = True
    return wf


# -- statistics ----------------------------------------------------------------------------------

def percentile(values, p: float):
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(results: list[JobResult], wall_s: float, sla: dict | None, seed_base: int | None = None) -> dict:
    jobs = len(results)
    ok = [r for r in results if r.ok]
    latencies = [r.latency_s for r in ok]
    images = sum(r.images for r in ok)
    errors: dict[str, int] = {}
    for r in results:
        if not r.ok:
            errors[r.error_kind or "unknown"] = errors.get(r.error_kind or "unknown", 0) + 1
    rnd = lambda v, n=3: None if v is None else round(v, n)  # noqa: E731
    summary = {
        "jobs": jobs,
        "succeeded": len(ok),
        "failed": jobs - len(ok),
        "success_rate": rnd(len(ok) / jobs if jobs else 0.0, 4),
        "latency_s": {k: rnd(percentile(latencies, p)) for k, p in (("p50", 50), ("p95", 95), ("p99", 99))}
        | {"max": rnd(max(latencies) if latencies else None)},
        "images": images,
        "images_per_minute": rnd(images / wall_s * 60.0 if wall_s > 0 else 0.0, 2),
        "wall_s": rnd(wall_s),
        "errors_by_kind": dict(sorted(errors.items())),
    }
    if seed_base is not None:
        summary["seed_base"] = seed_base
    summary["sla"] = evaluate_sla(summary, sla)
    return summary


def evaluate_sla(summary: dict, targets: dict | None) -> dict:
    if targets is None:
        return {"targets": None, "passed": True, "breaches": [], "checked": False}
    breaches = []
    rate = summary["success_rate"]
    if targets.get("success_rate") is not None and rate < targets["success_rate"]:
        breaches.append({"metric": "success_rate", "target": f">= {targets['success_rate']}", "actual": rate})
    p95 = summary["latency_s"]["p95"]
    if targets.get("p95_s") is not None and (p95 is None or p95 > targets["p95_s"]):
        breaches.append({"metric": "latency_p95_s", "target": f"<= {targets['p95_s']}", "actual": p95})
    ipm = summary["images_per_minute"]
    if targets.get("images_per_minute") is not None and ipm < targets["images_per_minute"]:
        breaches.append({"metric": "images_per_minute", "target": f">= {targets['images_per_minute']}",
                         "actual": ipm})
    return {"targets": targets, "passed": not breaches, "breaches": breaches, "checked": True}


# -- running -------------------------------------------------------------------------------------

def run_job(server: str, workflow: dict, job: int, timeout_s: float, seed_base: int = 0,
            min_image_bytes: int = 0, request_timeout: float = 30.0, poll_s: float = 0.25) -> JobResult:
    started = time.monotonic()
    prompt_id = None
    client = ComfyClient(server, timeout=min(request_timeout, max(timeout_s, 1.0)))
    try:
        wf = vary_workflow(workflow, job, seed_base)
        prompt_id = client.submit(wf)
        remaining = timeout_s - (time.monotonic() - started)
        entry = client.wait(prompt_id, max(remaining, 0.0), poll_s=poll_s)
        count = 0
        for output in (entry.get("outputs") or {}).values():
            for image in (output or {}).get("images") or []:
                if not isinstance(image, dict) or "filename" not in image:
                    continue
                data = client.view(image["filename"], image.get("subfolder", ""), image.get("type", "output"))
                if image["filename"].lower().endswith(".png") and not png_ok(data, min_image_bytes):
                    return JobResult(job, prompt_id, False, time.monotonic() - started, count, "bad_image",
                                     f"{image['filename']}: not a valid PNG of >= {min_image_bytes} bytes "
                                     f"({len(data)} bytes)")
                count += 1
        return JobResult(job, prompt_id, True, time.monotonic() - started, count, None, None)
    except ComfyError as exc:
        return JobResult(job, prompt_id, False, time.monotonic() - started, 0, exc.kind, str(exc))
    except Exception as exc:  # a bug or an unexpected response must not kill the whole run
        return JobResult(job, prompt_id, False, time.monotonic() - started, 0, "unexpected",
                         f"{type(exc).__name__}: {exc}")
    finally:
        client.close()


class Progress:
    def __init__(self, total: int, enabled: bool, stream=None):
        self.total, self.enabled = total, enabled
        self.stream = stream or sys.stderr
        self.done = self.ok = self.failed = 0
        self.started = time.monotonic()
        self._last = 0.0

    def update(self, result: JobResult, force=False):
        self.done += 1
        if result.ok:
            self.ok += 1
        else:
            self.failed += 1
        now = time.monotonic()
        if self.enabled and (force or self.done == self.total or now - self._last >= 0.1):
            self._last = now
            width = 30
            filled = int(width * self.done / self.total) if self.total else width
            bar = "#" * filled + "-" * (width - filled)
            self.stream.write(f"\r[{bar}] {self.done}/{self.total} ok={self.ok} failed={self.failed} "
                              f"elapsed={now - self.started:.1f}s")
            self.stream.flush()

    def finish(self):
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def run_load_test(server: str, workflow: dict, jobs: int, concurrency: int, timeout_s: float,
                  output: str | Path | None = None, sla: dict | None = None, seed_base: int | None = None,
                  progress: bool = False, min_image_bytes: int = 0, request_timeout: float = 30.0,
                  poll_s: float = 0.25) -> dict:
    """Run the load test and return the summary (also written to ``output`` and ``output``.ndjson)."""
    if not 1 <= jobs <= MAX_JOBS:
        raise UsageError(f"--jobs must be between 1 and {MAX_JOBS}")
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise UsageError(f"--concurrency must be between 1 and {MAX_CONCURRENCY}")
    if not timeout_s > 0:
        raise UsageError("--timeout must be positive")
    if seed_base is None:
        seed_base = random.SystemRandom().randrange(SEED_MODULUS // 2)
    ndjson_file = None
    if output is not None:
        output = Path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        ndjson_file = open(ndjson_path(output), "w")
    results: list[JobResult] = []
    lock = threading.Lock()
    bar = Progress(jobs, progress)
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=min(concurrency, jobs), thread_name_prefix="loadtest") as pool:
            futures = [pool.submit(run_job, server, workflow, job, timeout_s, seed_base, min_image_bytes,
                                   request_timeout, poll_s) for job in range(jobs)]
            try:
                for future in as_completed(futures):
                    result = future.result()
                    with lock:
                        results.append(result)
                        if ndjson_file is not None:
                            ndjson_file.write(json.dumps(asdict(result) | {"latency_s": round(result.latency_s, 4)})
                                              + "\n")
                            ndjson_file.flush()
                        bar.update(result)
            except BaseException:  # Ctrl-C or a bug: start no further job, let the running ones end
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    finally:
        if ndjson_file is not None:
            ndjson_file.close()
        bar.finish()
    wall_s = time.monotonic() - started
    results.sort(key=lambda r: r.job)
    summary = summarize(results, wall_s, sla, seed_base)
    summary["server"] = server
    summary["concurrency"] = concurrency
    if output is not None:
        output.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def ndjson_path(output) -> Path:
    return Path(str(output) + ".ndjson")


def format_table(summary: dict) -> str:
    lat = summary["latency_s"]
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    rows = [
        ("jobs", f"{summary['jobs']} ({summary['succeeded']} ok, {summary['failed']} failed)"),
        ("success rate", f"{summary['success_rate'] * 100:.2f}%"),
        ("latency p50/p95/p99/max s", " / ".join(fmt(lat[k]) for k in ("p50", "p95", "p99", "max"))),
        ("images", str(summary["images"])),
        ("images/minute", f"{summary['images_per_minute']:.2f}"),
        ("wall time s", f"{summary['wall_s']:.3f}"),
        ("errors", ", ".join(f"{k}={v}" for k, v in summary["errors_by_kind"].items()) or "none"),
    ]
    sla = summary["sla"]
    if not sla.get("checked", True):
        rows.append(("SLA", "not checked (--no-sla)"))
    elif sla["passed"]:
        rows.append(("SLA", "passed"))
    else:
        rows.append(("SLA", "BREACHED: " + "; ".join(
            f"{b['metric']} {b['actual']} (target {b['target']})" for b in sla["breaches"])))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


# -- command line --------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m comfyinfra.loadtest", description=__doc__.split("\n\n")[0])
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--server", help="ComfyUI base URL, e.g. http://127.0.0.1:8188")
    target.add_argument("--inventory", help="pyinfra inventory: test every host (through SSH tunnels); "
                        "outputs go to <output>-<host>.json, SLA targets from each host's `sla` unless given here")
    p.add_argument("--limit", action="append", default=[], help="with --inventory: host, group or glob (repeatable)")
    p.add_argument("--workflow", required=True, help="API-format workflow JSON file")
    p.add_argument("--jobs", type=int, required=True, help=f"number of prompts (1..{MAX_JOBS})")
    p.add_argument("--concurrency", type=int, default=1, help="parallel submitters")
    p.add_argument("--timeout", type=float, default=120.0, help="per-job timeout in seconds")
    p.add_argument("--output", required=True, help="JSON summary path; per-job NDJSON goes to <output>.ndjson")
    p.add_argument("--sla-success-rate", type=float, default=None, help=f"default {DEFAULT_SLA['success_rate']}")
    p.add_argument("--sla-p95", type=float, default=None, help=f"seconds, default {DEFAULT_SLA['p95_s']}")
    p.add_argument("--sla-images-per-minute", type=float, default=None,
                   help=f"default {DEFAULT_SLA['images_per_minute']}")
    p.add_argument("--no-sla", action="store_true", help="report only; exit 0 whatever the numbers")
    p.add_argument("--seed-base", type=int, default=None,
                   help="job N uses seed seed-base+N (default: random, recorded in the summary)")
    p.add_argument("--min-image-bytes", type=int, default=0, help="a PNG output smaller than this fails its job")
    p.add_argument("--request-timeout", type=float, default=30.0, help="per HTTP request, seconds")
    p.add_argument("--progress", action="store_true", help="progress bar on stderr even when it is not a TTY")
    return p


def sla_targets(args, configured: dict | None = None) -> dict | None:
    """Flags win over the host's configured `sla`, which wins over the seed's targets."""
    if args.no_sla:
        return None
    flags = {"success_rate": args.sla_success_rate, "p95_s": args.sla_p95, "images_per_minute": args.sla_images_per_minute}
    return {key: flags[key] if flags[key] is not None else (configured or DEFAULT_SLA)[key] for key in DEFAULT_SLA}


def run_inventory(args, workflow: dict) -> int:
    """The inventory form: one load test per host, each through an SSH tunnel to its loopback ComfyUI."""
    from comfyinfra.fleet import comfy_url, load_fleet, ssh_config  # the inventory loads in a child process

    hosts = load_fleet(args.inventory, args.limit)
    worst = 0
    with ssh_config(hosts) as config_file:  # removed on every way out, Ctrl-C included
        for host in hosts:
            output = Path(args.output)
            output = output.with_name(f"{output.stem}-{host.name.lstrip('@')}{output.suffix or '.json'}")
            with comfy_url(host, config_file) as url:
                summary = run_load_test(url, workflow, args.jobs, args.concurrency, args.timeout, output=output,
                                        sla=sla_targets(args, host.spec.sla.model_dump()), seed_base=args.seed_base,
                                        progress=args.progress or sys.stderr.isatty(),
                                        min_image_bytes=args.min_image_bytes, request_timeout=args.request_timeout)
            print(f"== {host.name} ({output})")
            print(format_table(summary))
            worst = max(worst, 0 if summary["sla"]["passed"] else 3)
    return worst


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.inventory:
            return run_inventory(args, load_workflow(args.workflow))
        sla = sla_targets(args)
        if args.seed_base is not None and args.seed_base < 0:
            raise UsageError("--seed-base must be >= 0")
        if args.request_timeout <= 0:
            raise UsageError("--request-timeout must be positive")
        workflow = load_workflow(args.workflow)
        summary = run_load_test(args.server, workflow, args.jobs, args.concurrency, args.timeout,
                                output=args.output, sla=sla, seed_base=args.seed_base,
                                progress=args.progress or sys.stderr.isatty(),
                                min_image_bytes=args.min_image_bytes, request_timeout=args.request_timeout)
    except (UsageError, ValueError, ConnectionError, InventoryError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{parser.prog}: interrupted", file=sys.stderr)
        return 130
    print(format_table(summary))
    return 0 if summary["sla"]["passed"] else 3


if __name__ == "__main__":
    sys.exit(main())
