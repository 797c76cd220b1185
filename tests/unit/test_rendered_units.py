"""Rendered service files, checked with the real tools: `systemd-analyze verify` and `security --offline`
(systemd is not PID 1 here, so units are verified, never started), configparser for supervisord."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from comfyinfra.artifacts import host_artifacts
from comfyinfra.facts import GpuProbe, HostPlatform
from comfyinfra.plan import make_plan
from comfyinfra.spec import HostSpec
from comfyinfra.torch_matrix import Gpu

SYSTEMD = HostPlatform(arch="x86_64", wsl=False, systemd=True, mem_total_mib=64000)
RTX4090 = GpuProbe(gpus=(Gpu("NVIDIA GeForce RTX 4090", 24564, "8.9", "570.26", index=0, uuid="GPU-4090-aaaa"),
                         Gpu("NVIDIA GeForce RTX 3060", 12288, "8.6", "570.26", index=1, uuid="GPU-3060-bbbb")),
                   nvidia_smi="/usr/bin/nvidia-smi")
BUILD = Path(__file__).resolve().parents[2] / "build"


@pytest.fixture
def opt():
    """An install root outside /tmp and /var/tmp (the plan refuses those on systemd hosts: PrivateTmp hides them)."""
    BUILD.mkdir(exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="units-", dir=BUILD))
    yield root / "opt"
    shutil.rmtree(root, ignore_errors=True)


needs_systemd_analyze = pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")


def plan_for(root: Path, probe=GpuProbe(), **overrides):
    spec = HostSpec.model_validate({
        "host_kind": "linux", "comfyui_repo": "https://github.com/comfyanonymous/ComfyUI.git",
        "comfyui_ref": "a125cd84b054a57729b5eecab930ca9408719832", "torch": {"torch": "2.9.1"},
        "install_root": str(root), "service_user": "comfyverify", **overrides})
    venv_python = root / "venv" / "bin" / "python"  # systemd-analyze verify wants ExecStart to exist
    venv_python.parent.mkdir(parents=True, exist_ok=True)
    if not venv_python.exists():
        venv_python.symlink_to("/usr/bin/python3")
    (root / "ComfyUI").mkdir(exist_ok=True)
    return make_plan(spec, SYSTEMD, probe)


def write_units(plan, directory: Path) -> dict[str, Path]:
    """Every systemd unit the host gets (comfyinfra.artifacts), written under its own name: unit name -> file."""
    units = {}
    for artifact in host_artifacts(plan):
        if artifact.dest.startswith("/etc/systemd/system/"):
            units[Path(artifact.dest).name] = directory / Path(artifact.dest).name
            units[Path(artifact.dest).name].write_bytes(artifact.render())
    return units


def exposure(unit: Path) -> float:
    out = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)], capture_output=True, text=True)
    return float(re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out.stdout).group(1))


@needs_systemd_analyze
@pytest.mark.parametrize("kind,probe,overrides", [
    ("cpu", GpuProbe(), {}),
    ("gpu", RTX4090, {"gpu_select": 1, "reserve_vram_gb": 1.5, "disable_cuda_malloc": True}),
    ("wsl", RTX4090, {"host_kind": "wsl"}),
])
def test_comfyui_unit_verifies_and_is_hardened(tmp_path, opt, kind, probe, overrides):
    plan = plan_for(opt, probe, **overrides)
    unit = write_units(plan, tmp_path)["comfyui.service"]
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert verify.returncode == 0 and "comfyui.service" not in verify.stderr, verify.stderr
    score = exposure(unit)
    assert score <= 4.0, f"exposure {score}"
    text = unit.read_text()
    assert 'Environment="CUDA_DEVICE_ORDER=PCI_BUS_ID"' in text and "Restart=always" in text
    assert f"ReadWritePaths={opt}" in text and "ProtectSystem=strict" in text and "NoNewPrivileges=yes" in text
    if kind == "gpu":
        assert 'Environment="CUDA_VISIBLE_DEVICES=GPU-3060-bbbb"' in text and "DeviceAllow=char-nvidia-uvm rw" in text
        assert "--reserve-vram 1.5 --disable-cuda-malloc" in text
    if kind == "wsl":
        assert re.search(r"--reserve-vram 1\s", text)  # the WSL GPU also drives the Windows desktop


def test_protect_home_is_read_only_when_the_tree_is_under_home(tmp_path, opt):
    spec_home = HostSpec.model_validate({
        "host_kind": "linux", "comfyui_repo": "/x", "comfyui_ref": "v1.0", "torch": {"torch": "2.9.1"},
        "install_root": "/home/comfy/comfyui", "service_user": "comfy"})
    assert make_plan(spec_home, SYSTEMD, GpuProbe()).protect_home == "read-only"  # yes would hide the tree
    assert plan_for(opt).protect_home == "yes"


@needs_systemd_analyze
def test_gpu_monitor_timer_and_service_verify(tmp_path, opt):
    plan = plan_for(opt, RTX4090)
    units = write_units(plan, tmp_path)
    assert set(units) == {"comfyui.service", "comfyui-gpu-monitor.service", "comfyui-gpu-monitor.timer"}
    service, timer = units["comfyui-gpu-monitor.service"], units["comfyui-gpu-monitor.timer"]
    verify = subprocess.run(["systemd-analyze", "verify", str(service), str(timer)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    assert "OnUnitActiveSec=30s" in timer.read_text()


def test_supervisor_programs_parse_with_the_environment(tmp_path, opt):
    plan = plan_for(opt, RTX4090, gpu_select="GPU-4090", run_cron_daemon=True)
    parser = configparser.ConfigParser(interpolation=None)
    for artifact in host_artifacts(replace(plan, service_manager="supervisor")):
        if artifact.dest.startswith("/etc/supervisor/conf.d/"):
            parser.read_string(artifact.render().decode())
    program = parser["program:comfyui"]
    assert program["command"] == plan.command_line and program["autorestart"] == "true"
    assert 'CUDA_VISIBLE_DEVICES="GPU-4090-aaaa"' in program["environment"]
    assert "gpu_monitor.py run --dir" in parser["program:comfyui-gpu-monitor"]["command"]
    assert parser["program:comfyui-cron"]["command"] == "cron -f"
