"""The torch choice table: variant and index per GPU, driver and CPU architecture; refusals."""

import pytest

from comfyinfra.spec import TorchPins
from comfyinfra.torch_matrix import Gpu, TorchChoiceError, choose_torch

PINS = TorchPins(torch="2.9.1", torchvision="0.24.1", torchaudio="2.9.1")


def gpu(name, cc, driver, vram=24576):
    return Gpu(name=name, vram_mib=vram, compute_capability=cc, driver_version=driver)


@pytest.mark.parametrize("name,cc,driver,arch,wsl,variant", [
    ("NVIDIA GeForce RTX 3090", "8.6", "580.95.05", "x86_64", False, "cu128"),   # sm_86, driver >= 570
    ("NVIDIA GeForce RTX 3090", "8.6", "572.16", "x86_64", True, "cu128"),       # WSL: Windows numbering
    ("NVIDIA RTX A5000", "8.6", "570.124.06", "x86_64", False, "cu128"),
    ("NVIDIA GeForce RTX 4090", "8.9", "570.26", "x86_64", False, "cu128"),      # exactly the cu128 minimum
    ("NVIDIA GeForce RTX 4090", "8.9", "565.57.01", "x86_64", False, "cu126"),   # older driver: cu126
    ("NVIDIA GeForce RTX 3090", "8.6", "570.64", "x86_64", True, "cu126"),       # WSL below 570.65
    ("NVIDIA GeForce RTX 5060 Ti", "12.0", "575.64", "x86_64", False, "cu128"),  # Blackwell needs cu128+
    ("NVIDIA GB10", "12.1", "580.95.05", "aarch64", False, "cu130"),             # DGX Spark
])
def test_variant(name, cc, driver, arch, wsl, variant):
    choice = choose_torch(PINS, arch, [gpu(name, cc, driver)], windows_driver=wsl)
    assert choice.variant == variant
    assert choice.index_url == f"https://download.pytorch.org/whl/{variant}"
    assert choice.requirements == (f"torch==2.9.1+{variant}", f"torchvision==0.24.1+{variant}",
                                   f"torchaudio==2.9.1+{variant}")


def test_blackwell_below_570_is_refused_with_the_fix():
    with pytest.raises(TorchChoiceError) as error:
        choose_torch(PINS, "x86_64", [gpu("NVIDIA GeForce RTX 5060 Ti", "12.0", "566.03")])
    message = str(error.value)
    assert "RTX 5060 Ti" in message and "566.03" in message and "570.26" in message
    assert "Blackwell" in message and "Upgrade the NVIDIA driver" in message


def test_driver_too_old_for_anything():
    with pytest.raises(TorchChoiceError, match="too old"):
        choose_torch(PINS, "x86_64", [gpu("NVIDIA GeForce RTX 3090", "8.6", "535.54.03")])


def test_cpu_hosts():
    x86 = choose_torch(PINS, "x86_64", [])
    assert (x86.variant, x86.index_url) == ("cpu", "https://download.pytorch.org/whl/cpu")
    assert x86.requirements[0] == "torch==2.9.1+cpu"
    arm = choose_torch(PINS, "aarch64", [])  # PyPI's aarch64 wheel is the CPU build
    assert (arm.variant, arm.index_url, arm.requirements[0]) == ("cpu", None, "torch==2.9.1")


def test_forced_variant_and_optional_domain_libraries():
    choice = choose_torch(TorchPins(torch="2.9.1", variant="cu126"), "x86_64", [])
    assert choice.requirements == ("torch==2.9.1+cu126",)


def test_pypi_variant_takes_the_unlabelled_build_from_configured_sources():
    choice = choose_torch(TorchPins(torch="2.14.1", torchvision="0.29.1", variant="pypi"), "x86_64", [])
    assert (choice.index_url, choice.requirements) == (None, ("torch==2.14.1", "torchvision==0.29.1"))


def test_release_without_table_entry_asks_for_a_variant():
    with pytest.raises(TorchChoiceError, match="set torch.variant"):
        choose_torch(TorchPins(torch="2.5.1"), "x86_64", [gpu("RTX 4090", "8.9", "570.26")])


def test_newer_release_without_cu128_takes_cu130_or_cu126():
    pins = TorchPins(torch="2.13.0")
    assert choose_torch(pins, "x86_64", [gpu("RTX 4090", "8.9", "580.95.05")]).variant == "cu130"
    assert choose_torch(pins, "x86_64", [gpu("RTX 4090", "8.9", "575.64")]).variant == "cu126"
    with pytest.raises(TorchChoiceError):  # Blackwell on 575: cu126 lacks sm_120, cu130 needs 580
        choose_torch(pins, "x86_64", [gpu("RTX 5060 Ti", "12.0", "575.64")])


def test_unknown_architecture():
    with pytest.raises(TorchChoiceError, match="ppc64le"):
        choose_torch(PINS, "ppc64le", [])
