"""GPU and platform facts parse nvidia-smi / shell output as the hosts print it."""

from comfyinfra.facts import NvidiaGpus, Platform

MEM = "mem_kib=131072000"


def test_bare_linux_gpu():
    probe = NvidiaGpus().process([MEM, "nvidia_smi=/usr/bin/nvidia-smi",
                                  "0, 00000000:01:00.0, GPU-8932f937-aaaa, NVIDIA GeForce RTX 3090, 24576, 580.95.05, 8.6"])
    (gpu,) = probe.gpus
    assert (gpu.name, gpu.vram_mib, gpu.compute_capability, gpu.driver_version) == (
        "NVIDIA GeForce RTX 3090", 24576, "8.6", "580.95.05")
    assert gpu.uuid == "GPU-8932f937-aaaa" and gpu.bus_id == "00000000:01:00.0" and not gpu.unified_memory


def test_gb10_unified_memory_falls_back_to_memtotal():
    probe = NvidiaGpus().process([MEM, "nvidia_smi=/usr/bin/nvidia-smi",
                                  "0, 0000000F:01:00.0, GPU-1, NVIDIA GB10, [N/A], 580.95.05, 12.1"])
    (gpu,) = probe.gpus
    assert gpu.unified_memory and gpu.vram_mib == 128000  # MemTotal in MiB


def test_old_driver_without_compute_cap_uses_the_name_table():
    probe = NvidiaGpus().process([MEM, "nvidia_smi=/usr/bin/nvidia-smi",
                                  'Field "compute_cap" is not a valid field to query.', "",
                                  "0, 00000000:01:00.0, GPU-1, NVIDIA GeForce RTX 4090, 24564, 470.256.02"])
    assert probe.gpus[0].compute_capability == "8.9"


def test_wsl_path_and_two_gpus():
    probe = NvidiaGpus().process([MEM, "nvidia_smi=/usr/lib/wsl/lib/nvidia-smi",
                                  "0, 00000000:01:00.0, GPU-a, NVIDIA GeForce RTX 3090, 24576, 572.16, 8.6",
                                  "1, 00000000:02:00.0, GPU-b, NVIDIA GeForce RTX 3080 Ti, 12288, 572.16, 8.6"])
    assert probe.nvidia_smi == "/usr/lib/wsl/lib/nvidia-smi" and [g.index for g in probe.gpus] == [0, 1]


def test_no_nvidia_smi_is_a_cpu_host():
    probe = NvidiaGpus().process([MEM, "nvidia_smi="])
    assert probe.gpus == () and probe.nvidia_smi is None and probe.error is None


def test_nvml_mismatch_is_an_error_not_a_gpu():
    probe = NvidiaGpus().process([MEM, "nvidia_smi=/usr/bin/nvidia-smi",
                                  "Failed to initialize NVML: Driver/library version mismatch"])
    assert probe.gpus == () and "version mismatch" in probe.error


def test_platform():
    platform = Platform().process(["aarch64", "wsl=0", "systemd=1", "mem_kib=2048000"])
    assert (platform.arch, platform.wsl, platform.systemd, platform.mem_total_mib) == ("aarch64", False, True, 2000)
