"""The per-host plan: GPUs (detected vs declared), torch, service manager, launch flags, pip config."""

import pytest

from comfyinfra.facts import GpuProbe, HostPlatform
from comfyinfra.plan import PlanError, make_plan
from comfyinfra.spec import HostSpec
from comfyinfra.torch_matrix import Gpu

BASE = {
    "host_kind": "linux", "comfyui_repo": "https://github.com/comfyanonymous/ComfyUI.git",
    "comfyui_ref": "a125cd84b054a57729b5eecab930ca9408719832",
    "torch": {"torch": "2.9.1", "torchvision": "0.24.1"}, "install_root": "/opt/comfyui", "service_user": "comfy",
}
X86_SYSTEMD = HostPlatform(arch="x86_64", wsl=False, systemd=True, mem_total_mib=64000)
X86_CONTAINER = HostPlatform(arch="x86_64", wsl=False, systemd=False, mem_total_mib=64000)
RTX3090 = Gpu("NVIDIA GeForce RTX 3090", 24576, "8.6", "580.95.05", uuid="GPU-1")
DETECTED = GpuProbe(gpus=(RTX3090,), nvidia_smi="/usr/bin/nvidia-smi")


def spec(**overrides):
    return HostSpec.model_validate({**BASE, **overrides})


def test_gpu_host_plan():
    plan = make_plan(spec(), X86_SYSTEMD, DETECTED)
    assert plan.torch.variant == "cu128" and plan.constraints == ("torch==2.9.1+cu128", "torchvision==0.24.1+cu128")
    assert plan.service_manager == "systemd"
    assert "--cpu" not in plan.launch_args
    assert plan.launch_args[:4] == ("--listen", "127.0.0.1", "--port", "8188")
    assert plan.paths.app == "/opt/comfyui/ComfyUI" and plan.paths.pip_conf == "/opt/comfyui/venv/pip.conf"
    assert plan.command_line.startswith("/opt/comfyui/venv/bin/python main.py --listen 127.0.0.1")


def test_cpu_host_gets_cpu_flag_and_cpu_torch():
    plan = make_plan(spec(), X86_CONTAINER, GpuProbe())
    assert "--cpu" in plan.launch_args and plan.torch.variant == "cpu"
    assert plan.service_manager == "supervisor"  # no systemd as init


def test_runpod_uses_supervisor_even_with_systemd_facts():
    assert make_plan(spec(host_kind="runpod"), X86_SYSTEMD, DETECTED).service_manager == "supervisor"


def test_systemd_requested_without_systemd_is_refused():
    with pytest.raises(PlanError, match="systemd is not running"):
        make_plan(spec(service_manager="systemd"), X86_CONTAINER, DETECTED)


def test_declared_gpu_is_used_offline():
    declared = {"name": "NVIDIA GeForce RTX 4090", "vram_mib": 24564, "compute_capability": "8.9", "driver_version": "570.26"}
    plan = make_plan(spec(gpu=declared), X86_SYSTEMD, GpuProbe())
    assert plan.gpus[0].name == "NVIDIA GeForce RTX 4090" and plan.torch.variant == "cu128"


def test_detected_gpu_wins_and_mismatch_is_an_error():
    declared = {"name": "NVIDIA GeForce RTX 3090", "vram_mib": 24576, "compute_capability": "8.6"}
    assert make_plan(spec(gpu=declared), X86_SYSTEMD, DETECTED).gpus == (RTX3090,)
    wrong = {"name": "NVIDIA GeForce RTX 4090", "vram_mib": 24564, "compute_capability": "8.9"}
    with pytest.raises(PlanError) as error:
        make_plan(spec(gpu=wrong), X86_SYSTEMD, DETECTED)
    assert "RTX 4090" in str(error.value) and "RTX 3090" in str(error.value) and "compute capability 8.9" in str(error.value)


def test_nvidia_smi_failure_is_reported():
    with pytest.raises(PlanError, match="reboot"):
        make_plan(spec(), X86_SYSTEMD, GpuProbe(nvidia_smi="/usr/bin/nvidia-smi", error="Failed to initialize NVML"))


def test_blackwell_driver_refusal_becomes_a_plan_error():
    old = GpuProbe(gpus=(Gpu("NVIDIA GeForce RTX 5060 Ti", 16311, "12.0", "566.03"),), nvidia_smi="nvidia-smi")
    with pytest.raises(PlanError, match="Upgrade the NVIDIA driver"):
        make_plan(spec(), X86_SYSTEMD, old)


def test_cpu_only_ignores_the_gpu_for_comfyui_but_still_monitors_it():
    plan = make_plan(spec(cpu_only=True), X86_SYSTEMD, DETECTED)
    assert plan.gpus == () and plan.torch.variant == "cpu" and "--cpu" in plan.launch_args
    assert plan.expected_device == "cpu"
    assert plan.hardware_gpus == (RTX3090,) and plan.gpu_monitor
    assert not make_plan(spec(cpu_only=True, gpu_monitor=False), X86_SYSTEMD, DETECTED).gpu_monitor


def test_a_forced_cpu_build_on_a_gpu_host_runs_comfyui_with_cpu():
    # a cpu torch can't reach the GPU: without --cpu ComfyUI dies with "Torch not compiled with CUDA enabled"
    plan = make_plan(spec(torch={"torch": "2.9.1", "variant": "cpu"}), X86_SYSTEMD, DETECTED)
    assert plan.gpus == () and "--cpu" in plan.launch_args and plan.expected_device == "cpu" and plan.gpu_monitor


def test_no_gpu_no_monitor():
    assert not make_plan(spec(), X86_CONTAINER, GpuProbe()).gpu_monitor


def test_pip_sources_and_overridden_torch_index():
    plan = make_plan(spec(pip_sources={"torch_index_url": "https://mirror.invalid/torch",
                                       "index_url": "https://mirror.invalid/pypi",
                                       "find_links": ["/srv/wheels"]}), X86_SYSTEMD, DETECTED)
    assert plan.torch.index_url == "https://mirror.invalid/torch"
    assert dict(plan.pip_config) == {"constraint": "/opt/comfyui/.comfyinfra/constraints.txt",
                                     "index-url": "https://mirror.invalid/pypi", "find-links": "/srv/wheels"}


def test_tags_and_commits_are_pinned_distinctly():
    plan = make_plan(spec(comfyui_ref="v0.3.64", custom_nodes=[
        {"name": "n", "repo": "https://x.invalid/n.git", "ref": "refs/tags/stable"}]), X86_SYSTEMD, DETECTED)
    assert (plan.comfyui.ref, plan.comfyui.kind.value) == ("v0.3.64", "tag")
    assert (plan.nodes[0].pin.ref, plan.nodes[0].path) == ("stable", "/opt/comfyui/ComfyUI/custom_nodes/n")


def test_health_url_for_wildcard_listen():
    assert make_plan(spec(listen="0.0.0.0", expose_unauthenticated=True, port=8190), X86_SYSTEMD, DETECTED).health_url == "http://127.0.0.1:8190/system_stats"


def test_models_are_placed_under_models_dir_and_found_through_extra_model_paths():
    catalog = {"sdxl": {"url": "https://x.invalid/sd.safetensors", "sha256": "a" * 64, "folder": "checkpoints",
                        "filename": "sd.safetensors", "token_env": "HF_TOKEN"}}
    plan = make_plan(spec(model_catalog=catalog, models=["sdxl"], models_dir="/workspace/models"), X86_SYSTEMD, DETECTED)
    (model,) = plan.models
    assert model.dest == "/workspace/models/checkpoints/sd.safetensors" and model.token_env == "HF_TOKEN"
    assert plan.paths.model_blobs == "/workspace/models/.blobs"
    index = plan.launch_args.index("--extra-model-paths-config")
    assert plan.launch_args[index + 1] == "/opt/comfyui/.comfyinfra/extra_model_paths.yaml"


def test_launch_policy_vram_mode_reserve_and_malloc():
    plan = make_plan(spec(vram_mode="highvram", reserve_vram_gb=2, disable_cuda_malloc=True, preview_method="taesd",
                          max_upload_size_mb=512, extra_args=["--fast"]), X86_SYSTEMD, DETECTED)
    args = " ".join(plan.launch_args)
    assert "--highvram" in args and "--reserve-vram 2" in args and "--disable-cuda-malloc" in args
    assert "--preview-method taesd" in args and "--max-upload-size 512" in args and args.endswith("--fast")


def test_default_policy_adds_no_vram_flag_and_wsl_reserves_for_the_desktop():
    plain = make_plan(spec(), X86_SYSTEMD, DETECTED).launch_args
    assert not {"--gpu-only", "--highvram", "--lowvram", "--normalvram", "--novram", "--reserve-vram"} & set(plain)
    assert "--max-upload-size" in plain and plain[plain.index("--max-upload-size") + 1] == "100"
    wsl = make_plan(spec(host_kind="wsl"), X86_SYSTEMD, DETECTED).launch_args
    assert wsl[wsl.index("--reserve-vram") + 1] == "1"


def test_vram_mode_on_a_cpu_host_is_refused():
    with pytest.raises(PlanError, match="runs on the CPU"):
        make_plan(spec(vram_mode="lowvram"), X86_CONTAINER, GpuProbe())


def test_gpu_selection_by_index_or_uuid_exports_the_uuid():
    two = GpuProbe(gpus=(RTX3090, Gpu("NVIDIA GeForce RTX 3080 Ti", 12288, "8.6", "580.95.05", index=1, uuid="GPU-2b")),
                   nvidia_smi="nvidia-smi")
    by_index = dict(make_plan(spec(gpu_select=1), X86_SYSTEMD, two).env)
    assert by_index["CUDA_VISIBLE_DEVICES"] == "GPU-2b" and by_index["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert dict(make_plan(spec(gpu_select="GPU-1"), X86_SYSTEMD, two).env)["CUDA_VISIBLE_DEVICES"] == "GPU-1"
    with pytest.raises(PlanError, match="matches 2 GPUs"):
        make_plan(spec(gpu_select="GPU-"), X86_SYSTEMD, two)
    assert "CUDA_VISIBLE_DEVICES" not in dict(make_plan(spec(), X86_SYSTEMD, two).env)


def test_cleanup_rules_become_one_cron_job_each():
    jobs = make_plan(spec(), X86_SYSTEMD, DETECTED).cron
    assert [(j.name, j.command) for j in jobs] == [
        ("comfyinfra cleanup output (8188)", "find /opt/comfyui/output -xdev -type f -mmin +1440 -delete"),
        ("comfyinfra cleanup temp (8188)", "find /opt/comfyui/temp -xdev -type f -mmin +60 -delete"),
        ("comfyinfra cleanup input (8188)", "find /opt/comfyui/input -xdev -type f -mmin +10080 -delete"),
    ]
    assert jobs[0].fields == {"minute": "*/15", "hour": "*", "day_of_month": "*", "month": "*", "day_of_week": "*"}


def test_air_gapped_sources_use_find_links_only():
    plan = make_plan(spec(pip_sources={"no_index": True, "find_links": ["/srv/wheels"]}), X86_CONTAINER, GpuProbe())
    assert plan.torch.index_url is None and plan.torch_source is None
    assert ("no-index", "true") in plan.pip_config and ("find-links", "/srv/wheels") in plan.pip_config


@pytest.mark.parametrize("root", ["/var/tmp/comfy", "/tmp/x/install"])
def test_install_root_under_private_tmp_is_refused_on_systemd(root):
    with pytest.raises(PlanError, match="PrivateTmp=yes hides"):
        make_plan(spec(install_root=root), X86_SYSTEMD, GpuProbe())
    assert make_plan(spec(install_root=root), X86_CONTAINER, GpuProbe()).service_manager == "supervisor"


def test_hints_name_the_journal_on_systemd():
    assert make_plan(spec(), X86_SYSTEMD, GpuProbe()).service_log == "journalctl -u comfyui"
    assert make_plan(spec(), X86_CONTAINER, GpuProbe()).service_log == "/opt/comfyui/logs/comfyui.log"
