"""What a host is made of, as plain data: the result types of the facts (comfyinfra.facts asks the host for
them) and of the declarations (a plan made without the host, comfyinfra.render). No pyinfra here: render,
review and the verify side import this without pulling in the deploy's runtime.
"""

from __future__ import annotations

from dataclasses import dataclass

from comfyinfra.torch_matrix import Gpu


@dataclass(frozen=True)
class HostPlatform:
    arch: str  # uname -m: x86_64, aarch64
    wsl: bool
    systemd: bool  # systemd is PID 1 (/run/systemd/system exists)
    mem_total_mib: int


@dataclass(frozen=True)
class GpuProbe:
    """What nvidia-smi said: the GPUs, or why they could not be read (`error`)."""

    gpus: tuple[Gpu, ...] = ()
    nvidia_smi: str | None = None  # path used; None when there is no nvidia-smi (a CPU host)
    error: str | None = None
