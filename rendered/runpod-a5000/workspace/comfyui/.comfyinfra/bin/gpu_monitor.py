#!/usr/bin/env python3
"""comfyinfra GPU monitor: runs ON the ComfyUI host (stdlib only, Python >= 3.8).

Uploaded by the deploy and run as the unprivileged service user, either under a process
supervisor or from a systemd timer:

    gpu_monitor.py run  --dir DIR [options]   sample every --interval seconds until SIGTERM/SIGINT (exit 0)
    gpu_monitor.py once --dir DIR [options]   take one sample, append it, prune old files, exit 0

Options: --interval 30, --retention-days 14, --nvidia-smi PATH, --warn-vram-pct 90, --warn-temp-c 80,
--critical-temp-c 85.

A sample runs `nvidia-smi --query-gpu=... --format=csv,noheader,nounits` and appends one row per GPU
to `DIR/gpu-YYYY-MM-DD.csv` (UTC date; the header is written when the file is new):

    Timestamp,GPU,MemoryUsed_MB,MemoryTotal_MB,MemoryPercent,Temperature_C,Utilization_Percent,PowerDraw_W,Status

Status is OK; WARN when VRAM % > --warn-vram-pct or temperature > --warn-temp-c; CRITICAL when
temperature > --critical-temp-c or when both warnings hold at once (all comparisons strictly greater).

A GPU whose memory reads `[N/A]` (unified memory, e.g. DGX Spark GB10) is reported from /proc/meminfo
MemTotal/MemAvailable instead: that memory is shared with the CPU. Any other `[...]` value (`[N/A]`,
`[Not Supported]`) leaves its cell empty.

When nvidia-smi is missing, hangs, exits non-zero or prints something other than numeric rows (e.g.
"Failed to initialize NVML: Driver/library version mismatch"), the sample is one row with an empty GPU,
empty numbers and Status ERROR, and the reason goes to stderr. The loop never stops on an error.

Each sample's rows reach the file in a single write() of complete lines, so a reader never sees half
a row. Retention deletes `gpu-YYYY-MM-DD.csv` files in DIR dated before today minus --retention-days,
and nothing else.
"""

import argparse
import csv
import datetime
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

HEADER = ("Timestamp,GPU,MemoryUsed_MB,MemoryTotal_MB,MemoryPercent,Temperature_C,"
          "Utilization_Percent,PowerDraw_W,Status")
QUERY_FIELDS = "index,memory.used,memory.total,temperature.gpu,utilization.gpu,power.draw"
NVIDIA_SMI_ARGS = ["--query-gpu=" + QUERY_FIELDS, "--format=csv,noheader,nounits"]
WSL_NVIDIA_SMI = "/usr/lib/wsl/lib/nvidia-smi"
NVIDIA_SMI_TIMEOUT_S = 30
MEMINFO = "/proc/meminfo"
FILE_RE = re.compile(r"gpu-(\d{4})-(\d{2})-(\d{2})\.csv", re.ASCII)  # with fullmatch: no trailing newline


class SampleError(Exception):
    """No usable sample: nvidia-smi missing, failing, or printing something that is not GPU rows."""


# --- pure logic --------------------------------------------------------------------------------


def parse_value(cell):
    """A cell as a float, or None for `[N/A]`, `[Not Supported]`, `N/A` or empty; SampleError otherwise."""
    text = cell.strip()
    if not text or text == "N/A" or (text.startswith("[") and text.endswith("]")):
        return None
    try:
        return float(text)
    except ValueError:
        raise SampleError("not a number: %r" % text)


def parse_meminfo(text):
    """The `Key: value kB` lines of /proc/meminfo as a dict of ints (kB)."""
    values = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        parts = rest.split()
        if sep and parts:
            try:
                values[key.strip()] = int(parts[0])
            except ValueError:
                pass
    return values


def read_meminfo(path=MEMINFO):
    """/proc/meminfo as a dict of kB, or None where it cannot be read (not Linux)."""
    try:
        with open(path) as handle:
            return parse_meminfo(handle.read())
    except OSError:
        return None


def parse_sample(lines, meminfo=read_meminfo):
    """nvidia-smi CSV lines -> one dict per GPU.

    Keys: gpu (int), memory_used_mb, memory_total_mb, memory_pct, temperature_c, utilization_pct,
    power_w (floats or None) and unified_memory (True when memory came from /proc/meminfo).
    `meminfo` is a callable returning /proc/meminfo as a dict of kB (or None); it is called only when a
    GPU reports no memory figures. Raises SampleError when any line is not a numeric GPU row, or when
    there are none.
    """
    try:
        rows = list(csv.reader(line for line in lines if line.strip()))
    except csv.Error as exc:
        raise SampleError("unreadable nvidia-smi output: %s" % exc)
    gpus = []
    host_memory = None
    for row in rows:
        cells = [cell.strip() for cell in row]
        if len(cells) != 6:
            raise SampleError("unexpected nvidia-smi output: %s" % ", ".join(cells))
        try:
            index = parse_value(cells[0])
            values = [parse_value(cell) for cell in cells[1:]]
        except SampleError:
            raise SampleError("unexpected nvidia-smi output: %s" % ", ".join(cells))
        if index is None or index != int(index) or index < 0:
            raise SampleError("unexpected nvidia-smi output: %s" % ", ".join(cells))
        used, total, temperature, utilization, power = values
        unified = False
        if used is None or total is None:
            if host_memory is None:
                host_memory = meminfo() or {}
            mem_total = host_memory.get("MemTotal")
            mem_available = host_memory.get("MemAvailable", host_memory.get("MemFree"))
            if mem_total and mem_available is not None:
                total = mem_total / 1024.0
                used = max(mem_total - mem_available, 0) / 1024.0
                unified = True
            else:
                used = total = None
        percent = used * 100.0 / total if used is not None and total else None
        gpus.append({
            "gpu": int(index),
            "memory_used_mb": used,
            "memory_total_mb": total,
            "memory_pct": percent,
            "temperature_c": temperature,
            "utilization_pct": utilization,
            "power_w": power,
            "unified_memory": unified,
        })
    if not gpus:
        raise SampleError("nvidia-smi reported no GPUs")
    return gpus


def status(memory_pct, temperature_c, warn_vram_pct=90.0, warn_temp_c=80.0, critical_temp_c=85.0):
    """OK, WARN or CRITICAL for one GPU; an unknown (None) figure never triggers anything."""
    vram_warn = memory_pct is not None and memory_pct > warn_vram_pct
    temp_warn = temperature_c is not None and temperature_c > warn_temp_c
    if (temperature_c is not None and temperature_c > critical_temp_c) or (vram_warn and temp_warn):
        return "CRITICAL"
    if vram_warn or temp_warn:
        return "WARN"
    return "OK"


def format_timestamp(now):
    """An aware or naive-UTC datetime as `2026-11-22T17:05:00Z`."""
    if now.tzinfo is not None:
        now = now.astimezone(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def _whole(value):
    return "" if value is None else str(int(round(value)))


def _number(value):
    """An integer without `.0`, anything else as reported."""
    if value is None:
        return ""
    if value == int(value):
        return str(int(value))
    return repr(value)


def _one_decimal(value):
    return "" if value is None else "%.1f" % value


def format_row(timestamp, gpu, row_status):
    """One complete CSV line (with its newline). `gpu` None gives the ERROR shape: every cell but the
    timestamp and the status empty."""
    if gpu is None:
        cells = [timestamp, "", "", "", "", "", "", "", row_status]
    else:
        cells = [
            timestamp,
            str(gpu["gpu"]),
            _whole(gpu["memory_used_mb"]),
            _whole(gpu["memory_total_mb"]),
            _one_decimal(gpu["memory_pct"]),
            _number(gpu["temperature_c"]),
            _number(gpu["utilization_pct"]),
            _one_decimal(gpu["power_w"]),
            row_status,
        ]
    return ",".join(cells) + "\n"


def sample_rows(timestamp, gpus, thresholds):
    """The CSV lines of one sample: a row per GPU, or the single ERROR row when `gpus` is None."""
    if gpus is None:
        return [format_row(timestamp, None, "ERROR")]
    return [format_row(timestamp, gpu, status(gpu["memory_pct"], gpu["temperature_c"], **thresholds))
            for gpu in gpus]


def file_date(name):
    """The date in a `gpu-YYYY-MM-DD.csv` name, or None for any other name."""
    match = FILE_RE.fullmatch(name)
    if not match:
        return None
    try:
        return datetime.date(*[int(part) for part in match.groups()])
    except ValueError:
        return None


def daily_path(directory, day):
    return os.path.join(directory, "gpu-%s.csv" % day.isoformat())


def prune(directory, today, days):
    """Delete `gpu-YYYY-MM-DD.csv` regular files dated before `today - days`; return the names removed."""
    cutoff = today - datetime.timedelta(days=days)
    removed = []
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return removed
    for name in names:
        day = file_date(name)
        if day is None or day >= cutoff:
            continue
        path = os.path.join(directory, name)
        try:
            if not os.path.isfile(path) or os.path.islink(path):
                continue
            os.remove(path)
            removed.append(name)
        except OSError as exc:
            warn("could not remove %s: %s" % (path, exc))
    return removed


# --- effects -----------------------------------------------------------------------------------


def warn(message):
    sys.stderr.write("gpu_monitor: %s\n" % message)
    sys.stderr.flush()


def append_rows(path, rows):
    """Append complete lines in one write(), with the header first when the file is new or empty."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        prefix = ""
        if size == 0:
            prefix = HEADER + "\n"
        else:
            with open(path, "rb") as reader:  # a previous short write (disk full) left no newline
                reader.seek(size - 1)
                if reader.read(1) != b"\n":
                    prefix = "\n"
        data = (prefix + "".join(rows)).encode("utf-8")
        written = os.write(fd, data)
        while written < len(data):  # never for a regular file short of a full disk
            written += os.write(fd, data[written:])
    finally:
        os.close(fd)


def find_nvidia_smi(explicit=None):
    """--nvidia-smi if given, else nvidia-smi on PATH, else the WSL location; None when none exists."""
    if explicit:
        return explicit
    found = shutil.which("nvidia-smi")
    if found:
        return found
    if os.path.isfile(WSL_NVIDIA_SMI) and os.access(WSL_NVIDIA_SMI, os.X_OK):
        return WSL_NVIDIA_SMI
    return None


def query_nvidia_smi(binary, runner=subprocess.run, timeout=NVIDIA_SMI_TIMEOUT_S):
    """nvidia-smi's stdout lines; SampleError when it is missing, hangs or exits non-zero."""
    if binary is None:
        raise SampleError("nvidia-smi not found (not on PATH, not at %s)" % WSL_NVIDIA_SMI)
    try:
        done = runner([binary] + NVIDIA_SMI_ARGS, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                      universal_newlines=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SampleError("%s did not answer within %ss" % (binary, timeout))
    except OSError as exc:
        raise SampleError("cannot run %s: %s" % (binary, exc))
    if done.returncode != 0:
        said = " ".join((done.stdout + " " + done.stderr).split()) or "no output"
        raise SampleError("%s exited %s: %s" % (binary, done.returncode, said[:500]))
    return done.stdout.splitlines()


def collect(nvidia_smi=None, runner=subprocess.run, meminfo=read_meminfo):
    """One sample as GPU dicts; SampleError when there is none."""
    return parse_sample(query_nvidia_smi(find_nvidia_smi(nvidia_smi), runner=runner), meminfo=meminfo)


class Monitor:
    """Takes samples into a directory; remembers what it has already said to stderr."""

    def __init__(self, directory, retention_days=14, nvidia_smi=None, warn_vram_pct=90.0, warn_temp_c=80.0,
                 critical_temp_c=85.0, collector=None, clock=None):
        self.directory = directory
        self.retention_days = retention_days
        self.nvidia_smi = nvidia_smi
        self.thresholds = {"warn_vram_pct": warn_vram_pct, "warn_temp_c": warn_temp_c,
                           "critical_temp_c": critical_temp_c}
        self.collector = collector or (lambda: collect(self.nvidia_smi))
        self.clock = clock or (lambda: datetime.datetime.now(datetime.timezone.utc))
        self.pruned_for = None
        self.unified_noted = set()

    def sample(self):
        """Take one sample, append its rows (pruning once per UTC day); return (path, rows)."""
        now = self.clock()
        if now.tzinfo is not None:
            now = now.astimezone(datetime.timezone.utc)
        timestamp = format_timestamp(now)
        try:
            gpus = self.collector()
        except SampleError as exc:
            warn("ERROR: %s" % exc)
            gpus = None
        for gpu in gpus or []:
            if gpu["unified_memory"] and gpu["gpu"] not in self.unified_noted:
                self.unified_noted.add(gpu["gpu"])
                warn("GPU %s reports no memory figures; using /proc/meminfo (unified memory, shared with "
                     "the CPU)" % gpu["gpu"])
        rows = sample_rows(timestamp, gpus, self.thresholds)
        os.makedirs(self.directory, exist_ok=True)
        path = daily_path(self.directory, now.date())
        append_rows(path, rows)
        if self.pruned_for != now.date():
            prune(self.directory, now.date(), self.retention_days)
            self.pruned_for = now.date()
        return path, rows

    def run(self, interval, stop):
        """Sample every `interval` seconds (on a fixed grid; missed slots are skipped) until `stop` is set."""
        deadline = time.monotonic()
        while not stop.is_set():
            try:
                self.sample()
            except Exception as exc:  # a full disk or a bug must not end the loop
                warn("sample failed: %s: %s" % (type(exc).__name__, exc))
            deadline += interval
            now = time.monotonic()
            if deadline <= now:
                deadline += ((now - deadline) // interval + 1) * interval
            stop.wait(deadline - now)


# --- CLI ---------------------------------------------------------------------------------------


def _positive(text):
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _days(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def build_parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", required=True, help="folder for the gpu-YYYY-MM-DD.csv files")
    common.add_argument("--interval", type=_positive, default=30.0, help="seconds between samples (run)")
    common.add_argument("--retention-days", type=_days, default=14, help="keep this many days of files")
    common.add_argument("--nvidia-smi", default=None, help="nvidia-smi binary (default: PATH, then WSL)")
    common.add_argument("--warn-vram-pct", type=float, default=90.0)
    common.add_argument("--warn-temp-c", type=float, default=80.0)
    common.add_argument("--critical-temp-c", type=float, default=85.0)
    parser = argparse.ArgumentParser(prog="gpu_monitor.py", description="Append nvidia-smi samples to daily CSVs.")
    commands = parser.add_subparsers(dest="command")
    commands.required = True
    commands.add_parser("run", parents=[common], help="sample every --interval seconds until SIGTERM")
    commands.add_parser("once", parents=[common], help="take one sample, prune, exit")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    monitor = Monitor(args.dir, retention_days=args.retention_days, nvidia_smi=args.nvidia_smi,
                      warn_vram_pct=args.warn_vram_pct, warn_temp_c=args.warn_temp_c,
                      critical_temp_c=args.critical_temp_c)
    if args.command == "once":
        try:
            monitor.sample()
        except OSError as exc:  # the folder cannot be written: that is the unit failing
            warn("cannot write to %s: %s" % (args.dir, exc))
            return 1
        return 0
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    warn("sampling every %ss into %s" % (args.interval, args.dir))
    monitor.run(args.interval, stop)
    warn("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
