"""Custom pyinfra facts: what a ComfyUI host is made of (CPU arch, WSL, init, NVIDIA GPUs).

Each fact asks the host one shell command (visible in `command()`), and parses its output in a
pure `process()` that the unit tests feed with canned output.
"""

from __future__ import annotations

import csv
import re

from pyinfra.api import FactBase

from comfyinfra.hostinfo import GpuProbe, HostPlatform
from comfyinfra.torch_matrix import Gpu

# nvidia-smi is on PATH on bare Linux and in containers with the NVIDIA toolkit; WSL2 projects the
# Windows driver's binary into /usr/lib/wsl/lib, which is often not on PATH.
NVIDIA_SMI_CANDIDATES = ("nvidia-smi", "/usr/lib/wsl/lib/nvidia-smi", "/usr/bin/nvidia-smi")
GPU_QUERY = "index,pci.bus_id,uuid,name,memory.total,driver_version,compute_cap"
GPU_QUERY_OLD_DRIVER = "index,pci.bus_id,uuid,name,memory.total,driver_version"  # < R510 lacks compute_cap
ARCH = re.compile(r"[A-Za-z0-9_]+")  # uname -m: x86_64, aarch64
# What a readable cell holds, per column; anything else (nvidia-smi's "[Unknown Error]", "[GPU is lost]")
# means the GPU could not be read, and a plan made from it would be a guess.
MEMORY_MIB = re.compile(r"\d+(\.\d+)?")
COMPUTE_CAPABILITY = re.compile(r"\d{1,2}\.\d")

# Fallback when the driver cannot report compute_cap (shared/reference/torch-models-nodes.md §2).
COMPUTE_CAPABILITY_BY_NAME = {
    "RTX 5090": "12.0", "RTX 5080": "12.0", "RTX 5070": "12.0", "RTX 5060": "12.0", "GB10": "12.1",
    "RTX 4090": "8.9", "RTX 4080": "8.9", "RTX 4070": "8.9", "RTX 4060": "8.9", "L40": "8.9", "L4": "8.9",
    "RTX 3090": "8.6", "RTX 3080": "8.6", "RTX 3070": "8.6", "RTX 3060": "8.6", "A5000": "8.6", "A6000": "8.6",
    "A40": "8.6", "A10": "8.6", "A100": "8.0", "H100": "9.0", "H200": "9.0", "T4": "7.5", "RTX 2080": "7.5",
    "V100": "7.0",
}


class UnreadableFact(ValueError):
    """A host answered a fact's command with output comfyinfra cannot read. The deploy stops for that
    host only (deploy.py refuses it with this message); trusting a guess could install the wrong thing."""


class Platform(FactBase):
    """CPU architecture, WSL2, whether systemd runs as init, and total memory."""

    def command(self) -> str:
        return (
            "uname -m; "
            "grep -qi microsoft /proc/sys/kernel/osrelease 2>/dev/null && echo wsl=1 || echo wsl=0; "
            "test -d /run/systemd/system && echo systemd=1 || echo systemd=0; "
            "awk '/^MemTotal:/ {print \"mem_kib=\" $2}' /proc/meminfo"
        )

    def process(self, output) -> HostPlatform:
        lines = [line.strip() for line in output if line.strip()]
        values = dict(line.split("=", 1) for line in lines[1:] if "=" in line)
        if not lines or not ARCH.fullmatch(lines[0]) or not values.get("mem_kib", "0").isdigit():
            raise UnreadableFact(f"the platform probe (uname -m, /proc/meminfo) printed {lines[:4]!r}, not an "
                                 "architecture and the memory size; check that the SSH user gets a POSIX shell")
        return HostPlatform(
            arch=lines[0],
            wsl=values.get("wsl") == "1",
            systemd=values.get("systemd") == "1",
            mem_total_mib=int(values.get("mem_kib", "0")) // 1024,
        )


def _cell(value: str) -> str | None:
    value = value.strip()
    return None if value in ("", "[N/A]", "[Not Supported]", "N/A") else value


def capability_from_name(name: str) -> str | None:
    for key, capability in COMPUTE_CAPABILITY_BY_NAME.items():
        if key.lower() in name.lower():
            return capability
    return None


def _unreadable(row: list[str], memory: str | None, capability: str | None) -> str | None:
    """Why a row of nvidia-smi's output can't be trusted (a cell it could not fill), or None."""
    for column, value in zip(GPU_QUERY.split(","), row):
        if value.strip().startswith("[") and _cell(value) is not None:
            return f"{column} is {value.strip()}"
    if memory is not None and not MEMORY_MIB.fullmatch(memory):
        return f"memory.total is {memory!r}, not a size in MiB"
    if capability is not None and not COMPUTE_CAPABILITY.fullmatch(capability):
        return f"compute_cap is {capability!r}, not major.minor"
    return None


def parse_nvidia_smi(lines: list[str], mem_total_mib: int, nvidia_smi: str) -> GpuProbe:
    """Parse `--query-gpu=<GPU_QUERY> --format=csv,noheader,nounits` output (6 or 7 columns). A row it can't
    read makes the probe an error (the plan refuses the host) rather than a guess about the GPU."""
    gpus = []
    for row in csv.reader(line for line in lines if line.strip()):
        if len(row) not in (6, 7) or not row[0].strip().isdigit():
            # e.g. "Failed to initialize NVML: Driver/library version mismatch" (driver updated, no reboot)
            return GpuProbe(nvidia_smi=nvidia_smi, error=" ".join(lines).strip() or "nvidia-smi printed nothing")
        index, bus_id, uuid, name, memory, driver = (_cell(v) for v in row[:6])
        capability = _cell(row[6]) if len(row) == 7 else None
        problem = _unreadable(row, memory, capability)
        if problem:  # e.g. "[Unknown Error]", "[GPU is lost]": a GPU in trouble
            return GpuProbe(nvidia_smi=nvidia_smi, error=f"GPU {index}: {problem}")
        unified = memory is None  # GB10: memory.total is [N/A]; the GPU shares system memory
        gpus.append(
            Gpu(
                name=name or "unknown NVIDIA GPU",
                vram_mib=mem_total_mib if unified else int(float(memory)),
                compute_capability=capability or capability_from_name(name or ""),
                driver_version=driver,
                index=int(index),
                uuid=uuid or "",
                bus_id=bus_id or "",
                unified_memory=unified,
            )
        )
    return GpuProbe(gpus=tuple(gpus), nvidia_smi=nvidia_smi)


class NvidiaGpus(FactBase):
    """NVIDIA GPUs via nvidia-smi (PATH, then WSL's /usr/lib/wsl/lib); no nvidia-smi means a CPU host."""

    def command(self) -> str:
        candidates = " ".join(NVIDIA_SMI_CANDIDATES)
        return (
            f"smi=; for c in {candidates}; do command -v \"$c\" >/dev/null 2>&1 && {{ smi=$(command -v \"$c\"); break; }}; done; "
            "awk '/^MemTotal:/ {print \"mem_kib=\" $2}' /proc/meminfo; "
            "[ -n \"$smi\" ] || { echo nvidia_smi=; exit 0; }; echo \"nvidia_smi=$smi\"; "
            f"\"$smi\" --query-gpu={GPU_QUERY} --format=csv,noheader,nounits 2>&1 "
            f"|| \"$smi\" --query-gpu={GPU_QUERY_OLD_DRIVER} --format=csv,noheader,nounits 2>&1 || true"
        )

    def process(self, output) -> GpuProbe:
        lines = list(output)
        mem_kib = next((int(line.split("=", 1)[1]) for line in lines if line.startswith("mem_kib=")), 0)
        smi = next((line.split("=", 1)[1] for line in lines if line.startswith("nvidia_smi=")), "")
        rest = [line for line in lines if not line.startswith(("mem_kib=", "nvidia_smi="))]
        if not smi:
            return GpuProbe()
        # An old driver rejects compute_cap ('... is not a valid field to query.'), then the fallback runs.
        rest = [line for line in rest if "not a valid field" not in line and "--help-query-gpu" not in line]
        return parse_nvidia_smi(rest, mem_kib // 1024, smi)
