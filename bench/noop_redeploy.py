"""No-op redeploy vs pyinfra's floor over SSH, measured in one run, with where the no-op's time goes.

Sets up a deploy target the way the end-to-end tests do (tests/e2e/harness.py, tests/e2e/conftest.py):
real OpenSSH on loopback with throwaway keys, the fixture ComfyUI and demo node served by `git daemon`,
torch 2.13.0+cpu from the machine's wheelhouse, supervisord. The venv is made about the real ComfyUI's
size: ComfyUI 0.3.64's own requirements (those this machine's package indexes hold) plus small
pure-python packages through `extra_pip_packages` (~90 distributions).

Then, in one run:
- floor: a one-operation pyinfra deploy (files.directory on the install root, already in place)
  through the same sshd and host connection data, run from a scratch directory (no config.py):
  interpreter + pyinfra start-up + connect + one operation;
- first deploy (timed, must succeed);
- no-op redeploy `pyinfra <inventory> deploy.py -y --json` from the repo root (must report 0 changes);
  floor and no-op alternate, best of --runs each;
- one more no-op redeploy under bench/pyinfra_profile.py: every SSH round trip timed and attributed to
  the fact or operation that issued it; the top five costs, per-fact counts, and pyinfra's own overhead
  (wall minus time spent in remote calls).

Prints human-readable lines, then one JSON line. Run as root (the target is this machine), one at a
time (wrap it in `flock /tmp/comfyinfra-host.lock ...` when e2e tests may run too):

    .venv/bin/python bench/noop_redeploy.py [--runs 3] [--keep]

Everything is torn down on every exit path: sshd, git daemon, the supervisord program `comfyui`
(conf removed + `supervisorctl update`; supervisord shut down if it was not running before), the temp dir.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from bench_env import REPO, use_project_venv  # bench/bench_env.py (this script's directory is on sys.path)

use_project_venv()

from tests.e2e.conftest import SUPERVISORD_CONF, World
from tests.e2e.harness import (
    FIXTURES,
    free_port,
    pyinfra,
    start_git_daemon,
    start_sshd,
    write_inventory,
)

HOST = "target"
PROFILER = REPO / "bench" / "pyinfra_profile.py"
PROGRAM_CONF = Path("/etc/supervisor/conf.d/comfyui.conf")

# ComfyUI 0.3.64's requirements.txt without the torch set (pinned by comfyinfra) and without the
# packages no local index here holds (comfyui-frontend-package, -workflow-templates, -embedded-docs,
# torchsde, kornia, spandrel); plus `requests`, which 0.3.64 imports (group_data/all.py).
COMFYUI_REQUIREMENTS = [
    "numpy", "einops", "transformers", "tokenizers", "sentencepiece", "safetensors", "aiohttp", "yarl", "pyyaml",
    "pillow", "scipy", "tqdm", "psutil", "alembic", "sqlalchemy", "av", "soundfile", "pydantic",
    "pydantic-settings", "requests",
]
# Small pure-python distributions standing in for what custom nodes pull in, to reach ~90 in the venv.
FILLERS = [
    "six", "python-dateutil", "pytz", "tzdata", "decorator", "colorama", "tabulate", "toml", "pluggy",
    "iniconfig", "more-itertools", "zipp", "importlib-metadata", "platformdirs", "distlib", "filetype", "humanize",
    "soupsieve", "beautifulsoup4", "cachetools", "blinker", "itsdangerous", "markdown", "jsonpointer", "jmespath",
]
LOCAL_INDEXES = [p for p in ("/opt/pypi/simple", "/opt/pypi-more/simple") if Path(p, "index.html").is_file()]

FLOOR_DEPLOY = '''"""pyinfra's floor: one operation that finds everything in place."""
from pyinfra.operations import files

files.directory(name="floor: install root in place", path={path!r}, present=True)
'''


class Interrupted(Exception):
    pass


def _on_signal(signum, _frame):
    raise Interrupted(f"signal {signum}")


# --- running pyinfra --------------------------------------------------------------------------------


def pyinfra_env() -> dict:
    return {**os.environ, "PYINFRA_PROGRESS": "off"}


def changed_ops(stdout: str) -> tuple[list[str], list[str]]:
    """(changed, failed) operation names of HOST from `--json` output (as tests/e2e/harness.py reads it)."""
    if not stdout.strip().startswith("{"):
        return [], []
    changed, failed = [], []
    for op in (json.loads(stdout).get("results") or {}).get("operations", []):
        if HOST in op.get("success", []):
            changed.append(op["name"])
        if HOST in op.get("error", []):
            failed.append(op["name"])
    return changed, failed


def run_floor(root: Path) -> float:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pyinfra", "floor_inventory.py", "floor_deploy.py", "-y"],
                          check=False, cwd=root, capture_output=True, text=True, env=pyinfra_env(), timeout=300)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"floor deploy failed (rc={proc.returncode}):\n{proc.stderr[-4000:]}")
    return elapsed


def run_noop(inventory: Path) -> tuple[float, list[str]]:
    started = time.monotonic()
    result = pyinfra(inventory, "-y", "--json", timeout=600)
    elapsed = time.monotonic() - started
    if result.rc != 0 or result.failed:
        raise RuntimeError(f"no-op redeploy failed (rc={result.rc}, failed={result.failed}):\n{result.stderr[-4000:]}")
    return elapsed, result.changes(HOST)


def run_profiled(cwd: Path, out: Path, *args: str) -> tuple[float, dict, list[str], str]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, str(PROFILER), str(out), *args], check=False, cwd=cwd,
                          capture_output=True, text=True, env=pyinfra_env(), timeout=600)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"profiled run {args} failed (rc={proc.returncode}):\n{proc.stderr[-4000:]}")
    changed, _ = changed_ops(proc.stdout)
    return elapsed, json.loads(out.read_text()), changed, proc.stderr


# --- analysis ---------------------------------------------------------------------------------------


def group_key(call: dict) -> str:
    if call["kind"] == "connect":
        return "connect: SSH handshake + auth"
    if call["fact"]:
        return f"fact {call['fact']}"
    if call["kind"] in ("upload", "download"):
        return f"{call['kind']} ({call['operation']})"
    return f"op command: {call['operation'] or '?'}"


def analyse(profile: dict, wall_s: float) -> dict:
    calls = profile["calls"]
    top_level = [c for c in calls if not c["nested_in_upload"]]
    remote_s = sum(c["seconds"] for c in top_level)
    round_trips = [c for c in calls if c["kind"] != "connect"]
    groups: dict[str, dict] = {}
    for call in top_level:
        g = groups.setdefault(group_key(call), {"count": 0, "seconds": 0.0, "stages": defaultdict(int),
                                                 "issued_by": set(), "commands": set(), "slowest": None})
        g["count"] += 1
        g["seconds"] += call["seconds"]
        g["stages"][call["stage"]] += 1
        g["commands"].add(call["command"])
        if call["fact"]:
            g["issued_by"].add(call["operation"] or f"deploy code {call['deploy'] or ''} {call['origin']}".replace("  ", " "))
        if g["slowest"] is None or call["seconds"] > g["slowest"]["seconds"]:
            g["slowest"] = call
    nested = [c for c in calls if c["nested_in_upload"]]
    for call in nested:  # round trips an upload made (su hand-over: setfacl, cp, rm)
        key = f"upload ({call['operation']})"
        if key in groups:
            groups[key].setdefault("nested_round_trips", 0)
            groups[key]["nested_round_trips"] += 1

    by_operation: dict[str, dict] = defaultdict(lambda: {"count": 0, "seconds": 0.0})
    for call in top_level:
        if call["kind"] == "connect":
            continue
        name = call["operation"] or f"(deploy code: {call['deploy'] or 'deploy.py'} @ {call['origin']})"
        by_operation[name]["count"] += 1
        by_operation[name]["seconds"] += call["seconds"]

    stages = profile["stages"]
    stage_spans = []
    for (name, start), nxt in zip(stages, [*stages[1:], ("end", profile["wall_s"])]):
        inside = sum(c["seconds"] for c in top_level if start <= c["at"] - c["seconds"] + 1e-9 and c["at"] <= nxt[1] + 1e-9)
        stage_spans.append({"stage": name, "seconds": round(nxt[1] - start, 3), "remote_s": round(inside, 3)})

    trips = sorted(c["seconds"] for c in top_level if c["kind"] == "command")
    return {
        "round_trip_median_s": trips[len(trips) // 2] if trips else 0.0,
        "round_trip_min_s": trips[0] if trips else 0.0,
        "wall_s": wall_s,
        "profile_wall_s": profile["wall_s"],
        "before_first_stage_s": stages[0][1] if stages else None,
        "remote_s": remote_s,
        "overhead_s": wall_s - remote_s,
        "remote_commands": len(round_trips),
        "groups": dict(sorted(groups.items(), key=lambda kv: -kv[1]["seconds"])),
        "by_operation": dict(sorted(by_operation.items(), key=lambda kv: -kv[1]["seconds"])),
        "stage_spans": stage_spans,
        "slowest_calls": sorted(top_level, key=lambda c: -c["seconds"])[:8],
    }


def top_costs(analysis: dict, n: int = 5) -> list[dict]:
    out = []
    for key, g in list(analysis["groups"].items())[:n]:
        out.append({"what": key, "count": g["count"], "seconds": round(g["seconds"], 3),
                    "stages": dict(g["stages"]), "distinct_commands": len(g["commands"]),
                    "issued_by": sorted(g["issued_by"]),
                    "command": g["slowest"]["command"], "su_user": g["slowest"]["su_user"]})
    return out


def print_analysis(title: str, a: dict, detail: bool) -> None:
    print(f"\n== {title}: wall {a['wall_s']:.2f} s (profiled), remote calls {a['remote_s']:.2f} s, "
          f"pyinfra's own overhead {a['overhead_s']:.2f} s (wall - remote), "
          f"{a['remote_commands']} remote round trips + {sum(1 for k in a['groups'] if k.startswith('connect'))} connect")
    print(f"   one remote command round trip: median {1000 * a['round_trip_median_s']:.0f} ms, "
          f"min {1000 * a['round_trip_min_s']:.0f} ms")
    print("   stages (profiled process; before the first stage: interpreter + imports "
          f"{a['before_first_stage_s']:.2f} s after the profiler's start):")
    for span in a["stage_spans"]:
        print(f"     {span['stage']:<11} {span['seconds']:6.2f} s, of which remote {span['remote_s']:6.2f} s")
    if not detail:
        return
    print("   remote time by fact / command (count = round trips; prep/exec = pyinfra stage):")
    for key, g in a["groups"].items():
        stages = ", ".join(f"{s.lower()[:4]} {n}" for s, n in sorted(g["stages"].items()))
        extra = f", +{g['nested_round_trips']} nested" if g.get("nested_round_trips") else ""
        print(f"     {g['seconds']:6.3f} s  {g['count']:3d}x  avg {1000 * g['seconds'] / g['count']:6.1f} ms  "
              f"[{stages}{extra}]  {key}")
    print("   remote time by operation (its facts + commands; facts asked outside operations by their caller):")
    for name, g in list(a["by_operation"].items())[:15]:
        print(f"     {g['seconds']:6.3f} s  {g['count']:3d}x  {name}")
    print("   slowest single round trips:")
    for c in a["slowest_calls"]:
        who = f"fact {c['fact']}" if c["fact"] else c["kind"]
        print(f"     {c['seconds']:6.3f} s  {c['stage'].lower()[:4]}  {who} <- {c['operation'] or c['origin'] or '-'}"
              f"{'  (su ' + c['su_user'] + ')' if c['su_user'] else ''}\n              $ {c['command']}")


# --- the world --------------------------------------------------------------------------------------


def venv_distributions(install_root: str) -> int:
    site = list(Path(install_root, "venv", "lib").glob("python3*/site-packages"))
    return sum(1 for p in site[0].iterdir() if p.name.endswith(".dist-info")) if site else 0


def supervisord_running() -> bool:
    if not shutil.which("supervisorctl"):
        return False
    return subprocess.run(["supervisorctl", "-c", SUPERVISORD_CONF, "pid"], check=False,
                          capture_output=True).returncode == 0


def teardown(state: dict, keep: bool) -> None:
    """Undo everything we started; each step on its own, so one failure doesn't skip the rest."""
    steps = []
    if shutil.which("supervisorctl"):
        steps.append(lambda: PROGRAM_CONF.unlink(missing_ok=True))
        steps.append(lambda: subprocess.run(["supervisorctl", "-c", SUPERVISORD_CONF, "update"],
                                            check=False, capture_output=True, timeout=60))
        if not state.get("supervisord_was_running"):
            steps.append(lambda: subprocess.run(["supervisorctl", "-c", SUPERVISORD_CONF, "shutdown"],
                                                check=False, capture_output=True, timeout=60))
    if state.get("sshd"):
        steps.append(state["sshd"].stop)
    if state.get("git"):
        steps.append(state["git"].stop)
    if state.get("root") and not keep:
        steps.append(lambda: shutil.rmtree(state["root"], ignore_errors=True))
    for step in steps:
        try:
            step()
        except Exception as error:  # noqa: BLE001 - keep tearing down
            print(f"teardown: {error}", file=sys.stderr)
    if keep and state.get("root"):
        print(f"kept {state['root']}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="floor and no-op runs each (best of)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (install root, profiles)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the deploy target is this machine over SSH as root")

    bench_started = time.monotonic()
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    state: dict = {"supervisord_was_running": supervisord_running()}
    try:
        root = Path(tempfile.mkdtemp(prefix="comfyinfra-bench-noop-", dir="/var/tmp"))
        state["root"] = root
        root.chmod(0o755)  # the service user reads the fixture repos from here
        state["sshd"] = sshd = start_sshd(root)
        state["git"] = daemon = start_git_daemon(root)
        comfyui = daemon.repo(FIXTURES / "comfyui", "ComfyUI")
        node = daemon.repo(FIXTURES / "custom_node_demo", "demo-node", tag="v1.0.0")
        world = World(root, sshd, daemon, comfyui, node, str(root / "install"), free_port())

        sources = dict(world.host_data()["pip_sources"])
        if LOCAL_INDEXES:  # this machine's package mirrors: the extras install offline
            sources["index_url"] = f"file://{LOCAL_INDEXES[0]}"
            sources["extra_index_urls"] = [f"file://{p}" for p in LOCAL_INDEXES[1:]]
        inventory = world.inventory("bench", {HOST: world.host_data(
            extra_pip_packages=COMFYUI_REQUIREMENTS + FILLERS, pip_sources=sources)})
        write_inventory(root / "floor_inventory.py", {HOST: sshd.connection_data()})
        (root / "floor_deploy.py").write_text(FLOOR_DEPLOY.format(path=world.install_root))

        print(f"target: root@127.0.0.1:{sshd.port} (OpenSSH on loopback), install root {world.install_root}")
        started = time.monotonic()
        first = pyinfra(inventory, "-y", "--json", timeout=1200)
        first_s = time.monotonic() - started
        if first.rc != 0 or first.failed:
            print(f"first deploy failed (rc={first.rc}, failed={first.failed}):\n{first.stderr[-6000:]}", file=sys.stderr)
            return 1
        distributions = venv_distributions(world.install_root)
        print(f"first deploy: {first_s:.1f} s, {len(first.changes(HOST))} operations changed; "
              f"venv: {distributions} distributions (torch 2.13.0+cpu, ComfyUI 0.3.64 requirements, "
              f"{len(FILLERS)} small extras)")

        floors, noops = [], []
        for i in range(args.runs):
            floors.append(run_floor(root))
            elapsed, changes = run_noop(inventory)
            if changes:
                print(f"no-op redeploy {i + 1} changed {len(changes)} operations: {changes}", file=sys.stderr)
                return 1
            noops.append(elapsed)
        floor_s, noop_s = min(floors), min(noops)
        print(f"floor (one-operation pyinfra deploy over the same sshd), best of {args.runs}: {floor_s:.2f} s "
              f"[{', '.join(f'{t:.2f}' for t in floors)}]")
        print(f"no-op redeploy (pyinfra {inventory.name} deploy.py -y, 0 changes), best of {args.runs}: {noop_s:.2f} s "
              f"[{', '.join(f'{t:.2f}' for t in noops)}]")
        print(f"ratio no-op / floor: {noop_s / floor_s:.2f}  (goal <= 3)")

        floor_wall, floor_profile, _, _ = run_profiled(root, root / "floor-profile.json", "floor_inventory.py",
                                                       "floor_deploy.py", "-y")
        noop_wall, noop_profile, changes, _ = run_profiled(REPO, root / "noop-profile.json", str(inventory),
                                                           "deploy.py", "-y", "--json")
        if changes:
            print(f"profiled no-op redeploy changed {len(changes)} operations: {changes}", file=sys.stderr)
            return 1
        floor_a = analyse(floor_profile, floor_wall)
        noop_a = analyse(noop_profile, noop_wall)
        print_analysis("floor, profiled", floor_a, detail=True)
        print_analysis("no-op redeploy, profiled", noop_a, detail=True)
        costs = top_costs(noop_a)
        print("\ntop five costs of the no-op redeploy:")
        for i, c in enumerate(costs, 1):
            print(f"  {i}. {c['what']}: {c['count']} round trips, {c['seconds']:.2f} s "
                  f"({', '.join(f'{s.lower()} {n}' for s, n in c['stages'].items())}; "
                  f"{c['distinct_commands']} distinct commands{'; su ' + c['su_user'] if c['su_user'] else ''})")
            print(f"       $ {c['command']}")
            if c["issued_by"]:
                more = f" (+{len(c['issued_by']) - 6} more)" if len(c["issued_by"]) > 6 else ""
                print(f"       issued by: {'; '.join(c['issued_by'][:6])}{more}")
        total_s = time.monotonic() - bench_started
        print(f"\nbench took {total_s:.0f} s end to end (first deploy {first_s:.0f} s)")
        print(json.dumps({
            "floor_s": round(floor_s, 3), "noop_s": round(noop_s, 3), "ratio": round(noop_s / floor_s, 2),
            "changes": 0, "remote_commands": noop_a["remote_commands"],
            "remote_s": round(noop_a["remote_s"], 3), "overhead_s": round(noop_a["overhead_s"], 3),
            "floor_remote_commands": floor_a["remote_commands"],
            "round_trip_median_s": round(noop_a["round_trip_median_s"], 3),
        "top_costs": [{k: c[k] for k in ("what", "count", "seconds", "command")} for c in costs],
            "venv_distributions": distributions, "first_deploy_s": round(first_s, 1), "bench_s": round(total_s, 1),
        }))
        return 0
    except (Interrupted, KeyboardInterrupt) as error:
        print(f"interrupted ({error}); tearing down", file=sys.stderr)
        return 130
    finally:
        teardown(state, args.keep)


if __name__ == "__main__":
    sys.exit(main())
