"""RunPod pods: containers without systemd (supervisord), persistent storage under /workspace."""

host_kind = "runpod"
service_manager = "supervisor"
install_root = "/workspace/comfyui"
run_cron_daemon = True  # no init in the container: supervisord runs cron for the cleanup entries
# Declared for planning without the host (./infra render); the host's facts win, a contradiction fails the host.
platform_arch = "x86_64"
platform_init = "other"  # a container: no systemd as PID 1
