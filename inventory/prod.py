"""The production fleet. Addresses of the Linux hosts come from your SSH config (~/.ssh/config or
COMFYINFRA_SSH_CONFIG): each host name below is a `Host` alias there. Secrets never live here.

Declared GPUs and platforms (platform_arch, platform_init: here or in group_data/<kind>.py) are used
offline (./infra render, the review renders in rendered/); on the hosts, their facts win and a mismatch with
the declaration stops that host.
"""

import os

_ssh = {"ssh_config_file": os.environ.get("COMFYINFRA_SSH_CONFIG", os.path.expanduser("~/.ssh/config"))}

wsl = [
    ("wsl-3090", {**_ssh, "gpu": {"name": "NVIDIA GeForce RTX 3090", "vram_mib": 24576, "compute_capability": "8.6"},
                  "platform_init": "systemd"}),  # systemd=true in /etc/wsl.conf (Ubuntu's default on WSL)
]
runpod = [
    ("runpod-a5000", {**_ssh, "gpu": {"name": "NVIDIA RTX A5000", "vram_mib": 24564, "compute_capability": "8.6"}}),
]
dgx = [
    ("dgx-spark", {**_ssh, "gpu": {"name": "NVIDIA GB10", "vram_mib": 122502, "compute_capability": "12.1"}}),
]
linux = [
    ("gpu-4090", {**_ssh, "gpu": {"name": "NVIDIA GeForce RTX 4090", "vram_mib": 24564, "compute_capability": "8.9"},
                  "platform_arch": "x86_64", "platform_init": "systemd"}),
    # Containerised: nvidia/cuda runtime base with the plan's torch wheels (cu128 for Blackwell), models mounted
    # read-only from the host's store, docker compose with the NVIDIA Container Toolkit.
    ("gpu-5060ti", {**_ssh, "gpu": {"name": "NVIDIA GeForce RTX 5060 Ti", "vram_mib": 16311, "compute_capability": "12.0"},
                    "platform_arch": "x86_64", "platform_init": "systemd",
                    "container": {"base": "cuda", "base_image": "nvidia/cuda:12.8.1-runtime-ubuntu24.04"}}),
]
# The Windows 11 box that runs wsl-3090: it starts that ComfyUI at boot (scheduled task + watchdog) and fronts it
# with IIS over HTTPS. Reached over WinRM (HTTPS 5986, certificate validated); passwords come from the environment
# of the machine running pyinfra, by the variable names given here.
windows = [
    ("@winrm/win-3090", {
        "fronts": "wsl-3090",
        "winrm": {"host": "win-3090.lan", "user": "WIN-3090\\deploy", "password_env": "WIN3090_WINRM_PASSWORD"},
        "site": {"host_name": "comfy.example.com", "certificate": {"subject": "CN=*.example.com"}},
        "wsl_user": "WIN-3090\\comfy", "wsl_user_password_env": "WIN3090_COMFY_PASSWORD",
    }),
]
