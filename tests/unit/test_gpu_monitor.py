"""The host-side GPU monitor: pure functions in-process, and the CLI end to end against a fake nvidia-smi."""

import csv
import datetime
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HELPER = Path(__file__).resolve().parents[2] / "comfyinfra" / "host_helpers" / "gpu_monitor.py"
spec = importlib.util.spec_from_file_location("gpu_monitor", HELPER)
gpu_monitor = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_monitor)

HEADER = ("Timestamp,GPU,MemoryUsed_MB,MemoryTotal_MB,MemoryPercent,Temperature_C,"
          "Utilization_Percent,PowerDraw_W,Status")
QUERY = "--query-gpu=index,memory.used,memory.total,temperature.gpu,utilization.gpu,power.draw"
NVML_MISMATCH = "Failed to initialize NVML: Driver/library version mismatch"
NOON = datetime.datetime(2026, 11, 22, 17, 5, 0, tzinfo=datetime.timezone.utc)
GB10_MEMINFO = {"MemTotal": 128 * 1024 * 1024, "MemAvailable": 96 * 1024 * 1024}  # kB: 128 GiB, 32 GiB used


def no_meminfo():
    raise AssertionError("meminfo must not be read when nvidia-smi reports memory")


def gpu(pct=None, temp=None, **extra):
    row = {"gpu": 0, "memory_used_mb": None, "memory_total_mb": None, "memory_pct": pct, "temperature_c": temp,
           "utilization_pct": None, "power_w": None, "unified_memory": False}
    row.update(extra)
    return row


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


class FakeRun:
    """Stands in for subprocess.run: records the command, answers with canned output."""

    def __init__(self, stdout="", returncode=0, stderr="", exc=None):
        self.stdout, self.returncode, self.stderr, self.exc = stdout, returncode, stderr, exc
        self.calls = []

    def __call__(self, cmd, **kwargs):
        self.calls.append(cmd)
        if self.exc is not None:
            raise self.exc
        return subprocess.CompletedProcess(cmd, self.returncode, self.stdout, self.stderr)


def monitor_with(tmp_path, runner=None, meminfo=no_meminfo, clock=NOON, nvidia_smi="/opt/fake/nvidia-smi", **kw):
    collector = lambda: gpu_monitor.collect(nvidia_smi, runner=runner, meminfo=meminfo)  # noqa: E731
    return gpu_monitor.Monitor(str(tmp_path / "gpu"), collector=collector, clock=lambda: clock, **kw)


# --- status thresholds -----------------------------------------------------------------------


@pytest.mark.parametrize("pct, expected", [(89.9, "OK"), (90.0, "OK"), (90.1, "WARN")])
def test_vram_threshold_is_strictly_greater(pct, expected):
    assert gpu_monitor.status(pct, 50) == expected


@pytest.mark.parametrize("temp, expected", [(79, "OK"), (80, "OK"), (81, "WARN"), (85, "WARN"), (86, "CRITICAL")])
def test_temperature_thresholds_are_strictly_greater(temp, expected):
    assert gpu_monitor.status(10.0, temp) == expected


@pytest.mark.parametrize("pct, temp, expected", [
    (90.1, 81, "CRITICAL"),   # both warnings at once
    (90.0, 81, "WARN"),       # vram exactly at the limit: only the temperature warns
    (90.1, 80, "WARN"),       # temperature exactly at the limit: only vram warns
    (99.0, 86, "CRITICAL"),
    (10.0, 86, "CRITICAL"),
])
def test_combined_warnings_escalate(pct, temp, expected):
    assert gpu_monitor.status(pct, temp) == expected


def test_custom_thresholds_and_unknown_figures():
    assert gpu_monitor.status(70.5, 60, warn_vram_pct=70, warn_temp_c=65, critical_temp_c=75) == "WARN"
    assert gpu_monitor.status(50, 76, warn_vram_pct=70, warn_temp_c=65, critical_temp_c=75) == "CRITICAL"
    assert gpu_monitor.status(None, None) == "OK"
    assert gpu_monitor.status(None, 86) == "CRITICAL"
    assert gpu_monitor.status(95.0, None) == "WARN"


def test_status_through_parsed_sample_uses_computed_percent():
    # 73728 / 81920 = 90.0 % exactly -> OK; 73810 / 81920 = 90.1 % -> WARN
    gpus = gpu_monitor.parse_sample(["0, 73728, 81920, 40, 0, 50.0", "1, 73810, 81920, 40, 0, 50.0"],
                                    meminfo=no_meminfo)
    rows = gpu_monitor.sample_rows("T", gpus, {"warn_vram_pct": 90, "warn_temp_c": 80, "critical_temp_c": 85})
    assert [r.rstrip("\n").split(",")[-1] for r in rows] == ["OK", "WARN"]


# --- parsing and formatting ------------------------------------------------------------------


def test_parse_single_gpu():
    [g] = gpu_monitor.parse_sample(["0, 1024, 81559, 34, 7, 69.56"], meminfo=no_meminfo)
    assert g["gpu"] == 0
    assert g["memory_used_mb"] == 1024 and g["memory_total_mb"] == 81559
    assert g["memory_pct"] == pytest.approx(1024 * 100 / 81559)
    assert g["temperature_c"] == 34 and g["utilization_pct"] == 7 and g["power_w"] == pytest.approx(69.56)
    assert g["unified_memory"] is False


def test_format_row():
    [g] = gpu_monitor.parse_sample(["0, 1024, 81559, 34, 7, 69.56"], meminfo=no_meminfo)
    line = gpu_monitor.format_row("2026-11-22T17:05:00Z", g, "OK")
    assert line == "2026-11-22T17:05:00Z,0,1024,81559,1.3,34,7,69.6,OK\n"


def test_format_error_row():
    assert gpu_monitor.format_row("2026-11-22T17:05:00Z", None, "ERROR") == "2026-11-22T17:05:00Z,,,,,,,,ERROR\n"


def test_timestamp_is_iso_utc():
    assert gpu_monitor.format_timestamp(NOON) == "2026-11-22T17:05:00Z"
    plus_two = datetime.timezone(datetime.timedelta(hours=2))
    assert gpu_monitor.format_timestamp(datetime.datetime(2026, 11, 22, 19, 5, tzinfo=plus_two)) == \
        "2026-11-22T17:05:00Z"


def test_power_not_available_leaves_cell_empty():
    [g] = gpu_monitor.parse_sample(["0, 2000, 24576, 45, 12, [N/A]"], meminfo=no_meminfo)
    assert g["power_w"] is None
    cells = gpu_monitor.format_row("T", g, "OK").rstrip("\n").split(",")
    assert cells[7] == "" and cells[2] == "2000" and cells[4] == "8.1"


def test_not_supported_cells_are_empty():
    [g] = gpu_monitor.parse_sample(["0, 2000, 24576, [Not Supported], [Not Supported], [Not Supported]"],
                                   meminfo=no_meminfo)
    cells = gpu_monitor.format_row("T", g, "OK").rstrip("\n").split(",")
    assert cells[5:8] == ["", "", ""]


def test_gb10_unavailable_memory_falls_back_to_meminfo():
    calls = []

    def meminfo():
        calls.append(1)
        return GB10_MEMINFO

    [g] = gpu_monitor.parse_sample(["0, [N/A], [N/A], 41, 3, [N/A]"], meminfo=meminfo)
    assert calls == [1]
    assert g["unified_memory"] is True
    assert g["memory_total_mb"] == 128 * 1024 and g["memory_used_mb"] == 32 * 1024
    assert g["memory_pct"] == pytest.approx(25.0)
    cells = gpu_monitor.format_row("T", g, gpu_monitor.status(g["memory_pct"], g["temperature_c"]))
    assert cells == "T,0,32768,131072,25.0,41,3,,OK\n"


def test_gb10_memory_pressure_warns_from_meminfo():
    tight = {"MemTotal": 100 * 1024, "MemAvailable": 5 * 1024}  # 95 % used
    [g] = gpu_monitor.parse_sample(["0, [N/A], [N/A], 41, 3, [N/A]"], meminfo=lambda: tight)
    assert g["memory_pct"] == pytest.approx(95.0)
    assert gpu_monitor.status(g["memory_pct"], g["temperature_c"]) == "WARN"


def test_unavailable_memory_without_meminfo_leaves_cells_empty():
    [g] = gpu_monitor.parse_sample(["0, [N/A], [N/A], 41, 3, 20.0"], meminfo=lambda: None)
    assert g["memory_used_mb"] is None and g["memory_pct"] is None and g["unified_memory"] is False
    assert gpu_monitor.format_row("T", g, "OK") == "T,0,,,,41,3,20.0,OK\n"


def test_parse_meminfo():
    text = "MemTotal:       131072000 kB\nMemFree:         1000 kB\nMemAvailable:   65536000 kB\nHugePages_Total:  0\n"
    assert gpu_monitor.parse_meminfo(text) == {"MemTotal": 131072000, "MemFree": 1000, "MemAvailable": 65536000,
                                               "HugePages_Total": 0}


def test_multi_gpu_gives_one_row_per_gpu():
    lines = ["0, 70000, 81920, 60, 99, 310.25", "1, 1000, 81920, 82, 5, 90.00", "2, 80000, 81920, 86, 100, 400.0",
             "3, 75000, 81920, 81, 50, 200.0", ""]
    gpus = gpu_monitor.parse_sample(lines, meminfo=no_meminfo)
    assert [g["gpu"] for g in gpus] == [0, 1, 2, 3]
    rows = gpu_monitor.sample_rows("T", gpus, {"warn_vram_pct": 90, "warn_temp_c": 80, "critical_temp_c": 85})
    assert [r.split(",")[1] for r in rows] == ["0", "1", "2", "3"]
    assert [r.rstrip("\n").split(",")[-1] for r in rows] == ["OK", "WARN", "CRITICAL", "CRITICAL"]


@pytest.mark.parametrize("lines", [
    [NVML_MISMATCH],
    ["NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."],
    ["0, 1024, 81559, 34, 7"],                    # a column short
    ["x, 1024, 81559, 34, 7, 60.0"],              # index not a number
    ["0, 1024, 81559, hot, 7, 60.0"],             # a cell neither a number nor [..]
    ["0, 1024, 81559, 34, 7, 60.0", NVML_MISMATCH],
    [],
    ["", "  "],
])
def test_output_that_is_not_numeric_rows_is_an_error(lines):
    with pytest.raises(gpu_monitor.SampleError):
        gpu_monitor.parse_sample(lines, meminfo=no_meminfo)


# --- sampling into files ---------------------------------------------------------------------


def test_sample_runs_the_query_and_writes_header_once(tmp_path):
    runner = FakeRun(stdout="0, 1024, 81559, 34, 7, 69.56\n")
    monitor = monitor_with(tmp_path, runner)
    path, _ = monitor.sample()
    monitor.sample()
    monitor.sample()
    assert runner.calls[0] == ["/opt/fake/nvidia-smi", QUERY, "--format=csv,noheader,nounits"]
    assert path == str(tmp_path / "gpu" / "gpu-2026-11-22.csv")
    lines = Path(path).read_text().splitlines()
    assert lines[0] == HEADER
    assert lines.count(HEADER) == 1
    assert lines[1:] == ["2026-11-22T17:05:00Z,0,1024,81559,1.3,34,7,69.6,OK"] * 3


def test_each_utc_day_gets_its_own_file_with_header(tmp_path):
    runner = FakeRun(stdout="0, 1024, 81559, 34, 7, 69.56\n")
    times = iter([datetime.datetime(2026, 11, 22, 23, 59, 50, tzinfo=datetime.timezone.utc),
                  datetime.datetime(2026, 11, 23, 0, 0, 20, tzinfo=datetime.timezone.utc),
                  datetime.datetime(2026, 11, 23, 0, 0, 50, tzinfo=datetime.timezone.utc)])
    monitor = monitor_with(tmp_path, runner)
    monitor.clock = lambda: next(times)
    for _ in range(3):
        monitor.sample()
    day1 = read_rows(tmp_path / "gpu" / "gpu-2026-11-22.csv")
    day2 = read_rows(tmp_path / "gpu" / "gpu-2026-11-23.csv")
    assert day1[0] == HEADER.split(",") and len(day1) == 2
    assert day2[0] == HEADER.split(",") and len(day2) == 3
    assert [r[0] for r in day2[1:]] == ["2026-11-23T00:00:20Z", "2026-11-23T00:00:50Z"]


def test_existing_file_gets_no_second_header_and_a_torn_line_is_closed(tmp_path):
    folder = tmp_path / "gpu"
    folder.mkdir()
    existing = folder / "gpu-2026-11-22.csv"
    existing.write_text(HEADER + "\n2026-11-22T17:04:30Z,0,1,2")  # a short write left no newline
    monitor_with(tmp_path, FakeRun(stdout="0, 1024, 81559, 34, 7, 69.56\n")).sample()
    lines = existing.read_text().splitlines()
    assert lines.count(HEADER) == 1
    assert lines[-1] == "2026-11-22T17:05:00Z,0,1024,81559,1.3,34,7,69.6,OK"


def test_nvml_mismatch_gives_error_row(tmp_path, capsys):
    runner = FakeRun(stdout=NVML_MISMATCH + "\n", returncode=18)
    path, rows = monitor_with(tmp_path, runner).sample()
    assert rows == ["2026-11-22T17:05:00Z,,,,,,,,ERROR\n"]
    assert read_rows(path) == [HEADER.split(","), ["2026-11-22T17:05:00Z", "", "", "", "", "", "", "", "ERROR"]]
    assert "Driver/library version mismatch" in capsys.readouterr().err


def test_nvml_mismatch_with_exit_zero_is_still_an_error(tmp_path, capsys):
    _, rows = monitor_with(tmp_path, FakeRun(stdout=NVML_MISMATCH + "\n")).sample()
    assert rows == ["2026-11-22T17:05:00Z,,,,,,,,ERROR\n"]
    assert "Driver/library version mismatch" in capsys.readouterr().err


def test_nvidia_smi_timeout_gives_error_row(tmp_path, capsys):
    runner = FakeRun(exc=subprocess.TimeoutExpired(["nvidia-smi"], 30))
    _, rows = monitor_with(tmp_path, runner).sample()
    assert rows[0].endswith(",ERROR\n")
    assert "did not answer" in capsys.readouterr().err


def test_missing_binary_gives_error_row(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setattr(gpu_monitor, "WSL_NVIDIA_SMI", str(tmp_path / "no-wsl" / "nvidia-smi"))
    assert gpu_monitor.find_nvidia_smi() is None
    monitor = gpu_monitor.Monitor(str(tmp_path / "gpu"), clock=lambda: NOON)
    path, rows = monitor.sample()
    assert rows == ["2026-11-22T17:05:00Z,,,,,,,,ERROR\n"]
    assert Path(path).read_text() == HEADER + "\n" + rows[0]
    assert "nvidia-smi not found" in capsys.readouterr().err


def test_explicit_binary_that_does_not_exist_gives_error_row(tmp_path, capsys):
    monitor = gpu_monitor.Monitor(str(tmp_path / "gpu"), nvidia_smi=str(tmp_path / "nope"), clock=lambda: NOON)
    _, rows = monitor.sample()
    assert rows == ["2026-11-22T17:05:00Z,,,,,,,,ERROR\n"]
    assert "cannot run" in capsys.readouterr().err


def test_binary_lookup_order(tmp_path, monkeypatch):
    wsl = tmp_path / "wsl" / "nvidia-smi"
    wsl.parent.mkdir()
    wsl.write_text("#!/bin/sh\n")
    wsl.chmod(0o755)
    on_path = tmp_path / "bin" / "nvidia-smi"
    on_path.parent.mkdir()
    on_path.write_text("#!/bin/sh\n")
    on_path.chmod(0o755)
    monkeypatch.setattr(gpu_monitor, "WSL_NVIDIA_SMI", str(wsl))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert gpu_monitor.find_nvidia_smi() == str(wsl)
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert gpu_monitor.find_nvidia_smi() == str(on_path)
    assert gpu_monitor.find_nvidia_smi("/custom/nvidia-smi") == "/custom/nvidia-smi"


def test_unified_memory_note_goes_to_stderr_once(tmp_path, capsys):
    runner = FakeRun(stdout="0, [N/A], [N/A], 41, 3, [N/A]\n")
    monitor = monitor_with(tmp_path, runner, meminfo=lambda: GB10_MEMINFO)
    _, rows = monitor.sample()
    monitor.sample()
    assert rows == ["2026-11-22T17:05:00Z,0,32768,131072,25.0,41,3,,OK\n"]
    assert capsys.readouterr().err.count("unified memory") == 1


# --- retention -------------------------------------------------------------------------------


def test_prune_deletes_only_old_daily_files(tmp_path):
    today = datetime.date(2026, 11, 22)
    keep = ["gpu-2026-11-22.csv", "gpu-2026-11-08.csv",  # today, and exactly 14 days back
            "gpu-notes.csv", "gpu-2026-01-01.csv.bak", "gpu-2026-13-40.csv", "other-2020-01-01.csv",
            "gpu-2020-01-01.txt", "README"]
    old = ["gpu-2026-11-07.csv", "gpu-2025-12-31.csv", "gpu-2020-02-29.csv"]
    for name in keep + old:
        (tmp_path / name).write_text("x\n")
    (tmp_path / "gpu-2019-01-01.csv").mkdir()  # a folder with a matching name is not ours to remove
    target = tmp_path / "elsewhere.csv"
    target.write_text("precious\n")
    (tmp_path / "gpu-2019-06-01.csv").symlink_to(target)

    removed = gpu_monitor.prune(str(tmp_path), today, 14)

    assert sorted(removed) == sorted(old)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(keep + ["gpu-2019-01-01.csv", "elsewhere.csv", "gpu-2019-06-01.csv"])
    assert target.read_text() == "precious\n"


def test_prune_with_missing_folder_is_quiet(tmp_path):
    assert gpu_monitor.prune(str(tmp_path / "absent"), datetime.date(2026, 11, 22), 14) == []


def test_sample_prunes_old_files(tmp_path):
    folder = tmp_path / "gpu"
    folder.mkdir()
    (folder / "gpu-2026-11-01.csv").write_text(HEADER + "\n")
    (folder / "gpu-2026-11-20.csv").write_text(HEADER + "\n")
    (folder / "notes.txt").write_text("keep\n")
    monitor_with(tmp_path, FakeRun(stdout="0, 1, 2, 3, 4, 5\n"), retention_days=7).sample()
    assert sorted(p.name for p in folder.iterdir()) == ["gpu-2026-11-20.csv", "gpu-2026-11-22.csv", "notes.txt"]


# --- the CLI end to end, against a fake nvidia-smi -------------------------------------------

FAKE_NVIDIA_SMI = r"""#!/bin/sh
# Canned nvidia-smi: the answer changes with each call (a counter file next to this script).
here="$(cd "$(dirname "$0")" && pwd)"
if [ "$1" != "QUERY" ] || [ "$2" != "--format=csv,noheader,nounits" ]; then
    echo "fake nvidia-smi: unexpected arguments: $*" >&2
    exit 2
fi
n=$(cat "$here/count" 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" > "$here/count"
case "$n" in
    1) echo "0, 1024, 81920, 45, 10, 70.56" ;;
    2) printf '0, 75000, 81920, 82, 99, 300.00\n1, 100, 81920, 40, 0, [N/A]\n' ;;
    3) echo "Failed to initialize NVML: Driver/library version mismatch"; exit 18 ;;
    4) echo "0, [N/A], [N/A], 50, 20, [N/A]" ;;
    *) echo "0, 80000, 81920, 86, 100, 350.00" ;;
esac
""".replace("QUERY", QUERY)


@pytest.fixture
def fake_smi(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "nvidia-smi"
    script.write_text(FAKE_NVIDIA_SMI)
    script.chmod(0o755)
    env = dict(os.environ, PATH=str(bin_dir) + os.pathsep + os.environ.get("PATH", ""), PYTHONUNBUFFERED="1")
    return bin_dir, env


def all_rows(folder):
    """Every file's rows after its header (a run across UTC midnight writes two files)."""
    rows = []
    for path in sorted(folder.glob("gpu-*.csv")):
        content = read_rows(path)
        assert content[0] == HEADER.split(",")
        assert HEADER.split(",") not in content[1:]
        rows.extend(content[1:])
    for row in rows:
        assert len(row) == 9, row
    return rows


def rows_so_far(folder):
    """Data lines written so far (a file may exist, still empty, while the monitor is writing it)."""
    return sum(max(len(p.read_text().splitlines()) - 1, 0) for p in folder.glob("gpu-*.csv"))


def cli(*args, env, **kwargs):
    return subprocess.run([sys.executable, str(HELPER)] + list(args), env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=120, **kwargs)


def test_cli_once_with_fake_nvidia_smi(tmp_path, fake_smi):
    _, env = fake_smi
    out = tmp_path / "out"
    out.mkdir()
    (out / "gpu-2000-01-01.csv").write_text(HEADER + "\n")
    (out / "notes.txt").write_text("keep\n")
    stderrs = []
    for _ in range(5):
        done = cli("once", "--dir", str(out), env=env)
        assert done.returncode == 0, done.stderr
        stderrs.append(done.stderr)

    rows = all_rows(out)
    # row 4 is GB10-style, filled from this machine's /proc/meminfo: its status depends on this machine
    assert [(r[1], r[-1]) for r in rows] == [("0", "OK"), ("0", "CRITICAL"), ("1", "OK"), ("", "ERROR"),
                                             ("0", rows[4][-1]), ("0", "CRITICAL")]
    assert rows[4][-1] in ("OK", "WARN")
    for row in rows:
        assert len(row[0]) == 20 and row[0].endswith("Z")
        datetime.datetime.strptime(row[0], "%Y-%m-%dT%H:%M:%SZ")
    assert rows[0][1:] == ["0", "1024", "81920", "1.2", "45", "10", "70.6", "OK"]
    assert rows[1][1:] == ["0", "75000", "81920", "91.6", "82", "99", "300.0", "CRITICAL"]
    assert rows[2][1:] == ["1", "100", "81920", "0.1", "40", "0", "", "OK"]
    assert rows[3][1:] == ["", "", "", "", "", "", "", "ERROR"]
    assert rows[4][2] and rows[4][3] and rows[4][7] == ""  # GB10-style row filled from this machine's meminfo
    assert rows[5][1:] == ["0", "80000", "81920", "97.7", "86", "100", "350.0", "CRITICAL"]
    assert "Driver/library version mismatch" in stderrs[2]
    assert "unified memory" in stderrs[3]
    assert not (out / "gpu-2000-01-01.csv").exists()
    assert (out / "notes.txt").read_text() == "keep\n"


def test_cli_once_missing_binary_and_thresholds(tmp_path, fake_smi):
    _, env = fake_smi
    out = tmp_path / "out"
    done = cli("once", "--dir", str(out), "--nvidia-smi", str(tmp_path / "absent" / "nvidia-smi"), env=env)
    assert done.returncode == 0
    assert "cannot run" in done.stderr
    assert all_rows(out)[-1][1:] == ["", "", "", "", "", "", "", "ERROR"]
    # the fake's first answer (1.2 % VRAM, 45 C) is OK by default, WARN with a 40 C limit
    done = cli("once", "--dir", str(out), "--warn-temp-c", "40", "--critical-temp-c", "60", env=env)
    assert done.returncode == 0, done.stderr
    assert all_rows(out)[-1][-1] == "WARN"


def test_cli_rejects_bad_arguments(tmp_path, fake_smi):
    _, env = fake_smi
    assert cli("once", env=env).returncode == 2  # --dir is required
    assert cli("run", "--dir", str(tmp_path), "--interval", "0", env=env).returncode == 2
    assert cli(env=env).returncode == 2


def test_cli_run_samples_until_sigterm(tmp_path, fake_smi):
    _, env = fake_smi
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, str(HELPER), "run", "--dir", str(out), "--interval", "0.2"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    try:
        # wait (generously: the machine is shared) until at least six samples are on disk, then stop it
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if rows_so_far(out) >= 7:
                break
            time.sleep(0.1)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    rows = all_rows(out)
    statuses = [(r[1], r[-1]) for r in rows]
    assert statuses[:6] == [("0", "OK"), ("0", "CRITICAL"), ("1", "OK"), ("", "ERROR"), ("0", rows[4][-1]),
                            ("0", "CRITICAL")]
    assert len(rows) >= 7
    assert all(s == ("0", "CRITICAL") for s in statuses[5:])
    assert stderr.count("unified memory") == 1
    assert stderr.count("Driver/library version mismatch") == 1
    count = int((tmp_path / "bin" / "count").read_text())
    assert count == len(rows) - 1  # one call per sample; the two-GPU answer is two rows


def test_cli_run_stops_on_sigint(tmp_path, fake_smi):
    _, env = fake_smi
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, str(HELPER), "run", "--dir", str(out), "--interval", "30"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list(out.glob("gpu-*.csv")):
            time.sleep(0.1)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)  # arrives during the 30 s wait: must end it, not wait it out
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert "KeyboardInterrupt" not in stderr
    assert [(r[1], r[-1]) for r in all_rows(out)] == [("0", "OK")]
