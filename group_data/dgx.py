"""DGX Spark GB10: aarch64, unified memory, CUDA 13. ComfyUI runs in NVIDIA's NGC PyTorch container, whose torch
(built for the GB10) is kept; the image is built on the box from the plan and run by docker compose."""

host_kind = "dgx"
# Declared for planning without the host (./infra render); the host's facts win, a contradiction fails the host.
platform_arch = "aarch64"  # Grace CPU: the aarch64 cu130 torch wheels
platform_init = "systemd"  # DGX OS (Ubuntu)
# NGC's PyTorch release for the box (arm64 and amd64 images; pin the release validated on it).
container = {"base": "ngc", "base_image": "nvcr.io/nvidia/pytorch:25.09-py3"}
