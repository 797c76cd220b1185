"""DGX Spark GB10: aarch64, unified memory, CUDA 13 (torch cu130 wheels)."""

host_kind = "dgx"
# Declared for planning without the host (./infra render); the host's facts win, a contradiction fails the host.
platform_arch = "aarch64"  # Grace CPU: the aarch64 cu130 torch wheels
platform_init = "systemd"  # DGX OS (Ubuntu)
