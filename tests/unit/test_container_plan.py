"""The container host's plan: pure, from the host's plan (same launch policy, torch and pins; the image's paths)."""

from __future__ import annotations

import dataclasses

import pytest

from comfyinfra.artifacts import PROGRAM_CONF, UNIT, host_artifacts
from comfyinfra.container.artifacts import container_artifacts, image_of
from comfyinfra.container.plan import make_container_plan
from comfyinfra.hostinfo import GpuProbe
from comfyinfra.plan import PlanError, make_plan
from comfyinfra.torch_matrix import Gpu
from tests.unit.test_plan import DETECTED, X86_SYSTEMD, spec

CUDA = {"base": "cuda", "base_image": "nvidia/cuda:12.8.1-runtime-ubuntu24.04"}
TWO_GPUS = GpuProbe(gpus=(Gpu("NVIDIA GeForce RTX 3090", 24576, "8.6", "580.95.05", uuid="GPU-1"),
                          dataclasses.replace(DETECTED.gpus[0], index=1, uuid="GPU-2")), nvidia_smi="/usr/bin/nvidia-smi")


def container_plan(probe=DETECTED, **overrides):
    return make_container_plan(make_plan(spec(**{"container": CUDA, **overrides}), X86_SYSTEMD, probe))


def test_compose_runs_a_container_host_and_its_tree_is_the_build_context():
    plan = make_plan(spec(container=CUDA), X86_SYSTEMD, DETECTED)
    assert plan.service_manager == "compose"
    assert plan.paths.app == "/opt/comfyui/build/ComfyUI"
    assert not {UNIT, PROGRAM_CONF} & {a.dest for a in host_artifacts(plan)}  # compose runs it, not systemd
    with pytest.raises(PlanError, match="runs ComfyUI in a container"):
        make_plan(spec(container=CUDA, service_manager="systemd"), X86_SYSTEMD, DETECTED)


def test_the_container_launches_with_the_hosts_policy_on_the_images_paths():
    container = container_plan(extra_args=["--fast"])
    argv = container.argv
    assert argv[:2] == ("/opt/comfyui/venv/bin/python", "main.py")
    assert argv[argv.index("--listen") + 1] == "0.0.0.0"  # inside; compose binds the host side to `listen`
    assert argv[argv.index("--extra-model-paths-config") + 1] == "/opt/comfyui/.comfyinfra/extra_model_paths.yaml"
    assert "--fast" in argv and "--cpu" not in argv


def test_the_image_tag_changes_with_what_is_built_into_it_and_nothing_else():
    def tag(**overrides):
        container = container_plan(**overrides)
        return image_of(container_artifacts(container), container)

    assert tag() == tag(models=[], log_retention_days=3)  # host-side settings don't rebuild
    assert tag() != tag(comfyui_ref="b" * 40)
    assert tag() != tag(extra_pip_packages=["requests==2.32.3"])


def test_gpu_selection_reaches_the_compose_reservation():
    assert container_plan(TWO_GPUS).gpu_devices is None  # count: all
    assert container_plan(TWO_GPUS, gpu_select=1).gpu_devices == ("GPU-2",)
    assert container_plan(GpuProbe(), cpu_only=True).gpu_devices == ()


def test_engine_commands():
    docker = container_plan()
    assert docker.compose_command("up", "-d") == "docker compose -f /opt/comfyui/compose.yaml -p comfyinfra up -d"
    assert docker.build_command("comfyinfra/comfyui:x").startswith("docker build --build-arg BASE_IMAGE=nvidia/cuda")
    podman = container_plan(container={**CUDA, "engine": "podman"},
                            pip_sources={"find_links": ["/srv/wheels"]})
    command = podman.build_command("localhost/comfyinfra/comfyui:x")
    assert "podman build --format docker" in command and "--build-context wheels=/srv/wheels" in command
    assert podman.compose_command("up", "-d").startswith("podman-compose -f /opt/comfyui/compose.yaml")
