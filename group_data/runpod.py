"""RunPod pods: containers without systemd (supervisord), persistent storage under /workspace."""

host_kind = "runpod"
service_manager = "supervisor"
install_root = "/workspace/comfyui"
run_cron_daemon = True  # no init in the container: supervisord runs cron for the cleanup entries
