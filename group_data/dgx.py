"""DGX Spark GB10: aarch64, unified memory, CUDA 13 (torch cu130 wheels)."""

host_kind = "dgx"
