"""RunPod pods: containers without systemd (supervisord), persistent storage under /workspace."""

host_kind = "runpod"
service_manager = "supervisor"
install_root = "/workspace/comfyui"
