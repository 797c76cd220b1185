"""Which PyTorch build a host gets: pure functions over the wheel/driver/GPU matrix.

Facts and sources: shared/reference/torch-models-nodes.md §1 (pytorch RELEASE.md support matrix,
PR #164471 arch lists, NVIDIA's driver table). Only the build variant changes per host; the
release (torch 2.9.1, ...) is pinned fleet-wide.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from comfyinfra.spec import TorchPins

PYTORCH_INDEX = "https://download.pytorch.org/whl/{variant}"

# CUDA variants published for each torch minor release (RELEASE.md, "Release Compatibility Matrix").
VARIANTS_BY_RELEASE: dict[tuple[int, int], tuple[str, ...]] = {
    (2, 6): ("cu118", "cu124", "cu126"),
    (2, 7): ("cu118", "cu126", "cu128"),
    (2, 8): ("cu126", "cu128", "cu129"),
    (2, 9): ("cu126", "cu128", "cu130"),
    (2, 10): ("cu126", "cu128", "cu130"),
    (2, 11): ("cu126", "cu128", "cu130"),
    (2, 12): ("cu126", "cu130", "cu132"),
    (2, 13): ("cu126", "cu130", "cu132"),
    (2, 14): ("cu126", "cu130", "cu132"),
}

# Minimum driver per CUDA variant: (Linux, Windows/WSL), from NVIDIA's "CUDA Toolkit and
# Corresponding Driver Versions". CUDA 13.x has no Windows column there; 13.x needs R580+ (minor
# version compatibility), so 580.65.06 is used for both. cu132's GA minimum is unverified.
MIN_DRIVER: dict[str, tuple[str, str]] = {
    "cu118": ("520.61.05", "520.06"),
    "cu124": ("550.54.14", "551.61"),
    "cu126": ("560.28.03", "560.76"),
    "cu128": ("570.26", "570.65"),
    "cu129": ("575.51.03", "576.02"),
    "cu130": ("580.65.06", "580.65.06"),
    "cu132": ("580.65.06", "580.65.06"),
}

# Compute-capability majors whose SASS each variant's wheels carry (PR #164471, RELEASE.md). A GPU
# runs code built for its own major and a lower-or-equal minor (sm_89 runs sm_86, GB10's sm_121 runs
# sm_120), so the major decides: Blackwell (12.x) needs a variant that carries sm_120.
ARCH_MAJORS_X86 = {"cu118": {3, 5, 6, 7, 8, 9}, "cu124": {5, 6, 7, 8, 9}, "cu126": {5, 6, 7, 8, 9},
                   "cu128": {7, 8, 9, 10, 12}, "cu129": {7, 8, 9, 10, 12}, "cu130": {7, 8, 9, 10, 12},
                   "cu132": {7, 8, 9, 10, 12}}
# aarch64 (SBSA) wheels: cu126 has only sm_80/sm_90; cu128+ add 10.0 and 12.0 (GB10).
ARCH_MAJORS_AARCH64 = {"cu126": {8, 9}, "cu128": {8, 9, 10, 12}, "cu129": {8, 9, 10, 12},
                       "cu130": {8, 9, 10, 11, 12}, "cu132": {8, 9, 10, 11, 12}}

# Preference when several variants fit: the reference table's choice (cu128 for Ampere/Ada/Blackwell
# on x86, cu130 on GB10), then the next newest that the driver supports.
PREFERENCE_X86 = ("cu128", "cu130", "cu126", "cu129", "cu132", "cu124", "cu118")
PREFERENCE_AARCH64 = ("cu130", "cu128", "cu129", "cu132", "cu126")


DRIVER_VERSION = re.compile(r"\d+(\.\d+){1,3}")  # as nvidia-smi prints a release driver: 570.124.06, 581.15


class TorchChoiceError(ValueError):
    """No published torch build fits this host; the message says what to change."""


@dataclass(frozen=True)
class Gpu:
    """One NVIDIA GPU as nvidia-smi reports it (or as the inventory declares it)."""

    name: str
    vram_mib: int
    compute_capability: str | None  # "8.6"; None when the driver is too old to report it
    driver_version: str | None
    index: int = 0
    uuid: str = ""
    bus_id: str = ""
    unified_memory: bool = False


@dataclass(frozen=True)
class TorchChoice:
    variant: str  # cpu, cu128, ...
    index_url: str | None  # None: the default index (PyPI)
    requirements: tuple[str, ...]  # e.g. ("torch==2.9.1+cu128", "torchvision==0.24.1+cu128")
    reason: str


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def _driver_tuple(driver: str) -> tuple[int, ...]:
    """A driver version to compare with MIN_DRIVER; one that is not plain numbers (a "-beta" build) is refused:
    which CUDA builds it supports is unknown, and the user can name the build instead."""
    if not DRIVER_VERSION.fullmatch(driver):
        raise TorchChoiceError(f"NVIDIA driver version {driver!r} is not a plain version number such as 570.124.06 "
                               "(a beta or custom build?), so which CUDA builds it supports is unknown; set "
                               "torch.variant (e.g. cu128) to choose the build yourself, or install a release driver")
    return _version_tuple(driver)


def _release(pins: TorchPins) -> tuple[int, int]:
    major, minor, _ = _version_tuple(pins.torch)
    return major, minor


def _requirements(pins: TorchPins, label: str | None) -> tuple[str, ...]:
    suffix = f"+{label}" if label else ""
    out = [f"torch=={pins.torch}{suffix}"]
    if pins.torchvision:
        out.append(f"torchvision=={pins.torchvision}{suffix}")
    if pins.torchaudio:
        out.append(f"torchaudio=={pins.torchaudio}{suffix}")
    return tuple(out)


def _supports(variant: str, arch: str, cc: tuple[int, int]) -> bool:
    majors = (ARCH_MAJORS_AARCH64 if arch == "aarch64" else ARCH_MAJORS_X86).get(variant, set())
    return cc[0] in majors


def _driver_ok(variant: str, driver: str | None, windows_driver: bool) -> bool:
    if driver is None:
        return True  # declared GPU without a driver version: trust the declaration, refuse nothing
    minimum = MIN_DRIVER[variant][1 if windows_driver else 0]
    return _driver_tuple(driver) >= _version_tuple(minimum)


def cpu_choice(pins: TorchPins, arch: str, reason: str) -> TorchChoice:
    if arch == "aarch64":
        # PyPI's aarch64 torch is the CPU build; the PyTorch CPU index adds nothing there.
        return TorchChoice("cpu", None, _requirements(pins, None), reason)
    return TorchChoice("cpu", PYTORCH_INDEX.format(variant="cpu"), _requirements(pins, "cpu"), reason)


def choose_torch(pins: TorchPins, arch: str, gpus: list[Gpu], windows_driver: bool = False) -> TorchChoice:
    """Pick the torch build for a host. `windows_driver`: the driver number is a Windows one (WSL2)."""
    if arch not in ("x86_64", "aarch64"):
        raise TorchChoiceError(f"no PyTorch wheels for CPU architecture {arch!r}; supported: x86_64, aarch64")
    if pins.variant == "pypi":
        return TorchChoice("pypi", None, _requirements(pins, None), "variant forced to the default index's build")
    if pins.variant == "cpu":
        return cpu_choice(pins, arch, "variant forced to cpu")
    if pins.variant is not None:
        return TorchChoice(pins.variant, PYTORCH_INDEX.format(variant=pins.variant),
                           _requirements(pins, pins.variant), f"variant forced to {pins.variant}")
    if not gpus:
        return cpu_choice(pins, arch, "no NVIDIA GPU")

    release = _release(pins)
    published = VARIANTS_BY_RELEASE.get(release)
    if published is None:
        known = ", ".join(f"{a}.{b}" for a, b in VARIANTS_BY_RELEASE)
        raise TorchChoiceError(
            f"torch {pins.torch}: its CUDA variants are not in comfyinfra's table (known: {known}); "
            "set torch.variant explicitly (e.g. cu128)"
        )
    driver = min((g.driver_version for g in gpus if g.driver_version), key=_driver_tuple, default=None)
    ccs = [_cc(g) for g in gpus]
    preference = PREFERENCE_AARCH64 if arch == "aarch64" else PREFERENCE_X86
    for variant in preference:
        if variant in published and all(_supports(variant, arch, cc) for cc in ccs) and _driver_ok(variant, driver, windows_driver):
            names = ", ".join(sorted({f"{g.name} (sm_{_cc(g)[0]}{_cc(g)[1]})" for g in gpus}))
            return TorchChoice(variant, PYTORCH_INDEX.format(variant=variant), _requirements(pins, variant),
                               f"{names}, driver {driver or 'not reported'}, {arch}")
    raise TorchChoiceError(_refusal(pins, arch, gpus, driver, windows_driver, published))


def _cc(gpu: Gpu) -> tuple[int, int]:
    if not gpu.compute_capability:
        raise TorchChoiceError(f"{gpu.name}: compute capability unknown; declare gpu.compute_capability in the inventory")
    major, minor = gpu.compute_capability.split(".")
    return int(major), int(minor)


def _refusal(pins, arch, gpus, driver, windows_driver, published) -> str:
    ccs = {_cc(g) for g in gpus}
    names = ", ".join(sorted({g.name for g in gpus}))
    arch_ok = [v for v in published if all(_supports(v, arch, cc) for cc in ccs)]
    if not arch_ok:
        return (f"{names} (compute capability {', '.join(f'{a}.{b}' for a, b in sorted(ccs))}) is not supported by any "
                f"torch {pins.torch} build for {arch} (published: {', '.join(published)}); pin another torch release")
    column = "Windows/WSL" if windows_driver else "Linux"
    needs = ", ".join(f"{v} needs >= {MIN_DRIVER[v][1 if windows_driver else 0]}" for v in arch_ok)
    blackwell = " Blackwell GPUs need a CUDA 12.8+ build, i.e. an R570+ driver." if any(cc[0] >= 12 for cc in ccs) else ""
    return (f"{names}: driver {driver} is too old for every torch {pins.torch} build that supports this GPU "
            f"({needs}, {column} driver numbering).{blackwell} Upgrade the NVIDIA driver.")
