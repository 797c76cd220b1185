"""A container host's plan: the image (what is built into it, under which tag) and how compose runs it.

Pure, made from the host's HostPlan (comfyinfra.plan), so the launch policy, the torch choice, the pins and the
GPU selection are the hosts' own: only the paths differ. Inside the image root owns /opt/comfyui (the checkout with
its nodes, the venv, comfyinfra's state) and the non-root user CONTAINER_UID runs ComfyUI and owns only its data
directories, which are volumes from the host; the models are the host's model store, mounted read-only.
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass

from comfyinfra.plan import HostPlan, Paths, launch_args, make_paths, select_gpu, service_env

CONTAINER_ROOT = "/opt/comfyui"
CONTAINER_MODELS = "/models"
CONTAINER_UID = 10001  # the image's user; the host's data directories are owned by this number
CONTAINER_NAME = "comfyui"
PROJECT = "comfyinfra"
# What a build reads from the host besides its context: the wheelhouse, when pip_sources.find_links names one
# (BuildKit's and podman's named build context, mounted for the pip runs only).
WHEELS_CONTEXT = "wheels"


def container_paths() -> Paths:
    """The tree inside the image (same layout as a host's, rooted at CONTAINER_ROOT)."""
    return make_paths(CONTAINER_ROOT, CONTAINER_MODELS)


@dataclass(frozen=True)
class ContainerPlan:
    host: HostPlan
    inside: Paths  # paths in the image
    argv: tuple[str, ...]  # ComfyUI's command in the container
    env: tuple[tuple[str, str], ...]  # and its environment (the image's ENV)
    gpu_devices: tuple[str, ...] | None  # compose device_ids; None: count all; () no GPU reservation

    @property
    def spec(self):
        return self.host.spec.container

    @property
    def context(self) -> str:
        return f"{self.host.paths.root}/build"

    @property
    def dockerfile(self) -> str:
        return f"{self.context}/Dockerfile"

    @property
    def compose_file(self) -> str:
        return f"{self.host.paths.root}/compose.yaml"

    @property
    def find_links(self) -> tuple[str, ...]:
        return tuple(self.host.spec.pip_sources.find_links)

    def tag(self, dockerfile: bytes) -> str:
        """The image's tag: a hash of everything built into it (the Dockerfile, which names the pins, constraints
        and packages; the pinned commits), so a change of any builds a new image and nothing else does."""
        inputs = [dockerfile, self.host.comfyui.ref.encode(), *(n.pin.ref.encode() for n in self.host.nodes),
                  *(f"{k}={v}".encode() for k, v in self.host.pip_config)]
        return hashlib.sha256(b"\0".join(inputs)).hexdigest()[:16]

    def image(self, dockerfile: bytes) -> str:
        return f"localhost/{self.spec.image}:{self.tag(dockerfile)}" if self.spec.engine == "podman" else \
            f"{self.spec.image}:{self.tag(dockerfile)}"

    def build_command(self, image: str) -> str:
        """The build, as root on the host: the base is a build argument, the wheelhouse a named build context."""
        engine = self.spec.engine
        words = [engine, "build", *(["--format", "docker"] if engine == "podman" else []),  # OCI drops HEALTHCHECK
                 "--build-arg", f"BASE_IMAGE={self.spec.base_image}", "-f", self.dockerfile, "-t", image]
        for link in self.find_links[:1]:
            words += ["--build-context", f"{WHEELS_CONTEXT}={link}"]
        return shlex.join([*words, self.context])

    def compose_command(self, *args: str) -> str:
        compose = ["docker", "compose"] if self.spec.engine == "docker" else ["podman-compose"]
        return shlex.join([*compose, "-f", self.compose_file, "-p", PROJECT, *args])

    @property
    def logs_command(self) -> str:
        return shlex.join([self.spec.engine, "logs", "--tail", "30", CONTAINER_NAME])


def make_container_plan(plan: HostPlan) -> ContainerPlan:
    inside = container_paths()
    # Inside, ComfyUI listens on every interface of the container's own network namespace: the host side of the
    # port mapping binds the configured address (compose ports), which is what the launch policy checks.
    spec = plan.spec.model_copy(update={"listen": "0.0.0.0"})
    argv = (inside.python, "main.py", *launch_args(spec, inside, plan.gpus))
    if not plan.gpus:
        devices: tuple[str, ...] | None = ()
    elif plan.spec.gpu_select is not None:
        devices = (select_gpu(plan.spec.gpu_select, plan.gpus),)
    else:
        devices = None
    return ContainerPlan(host=plan, inside=inside, argv=argv, env=service_env(plan.spec, inside, plan.gpus),
                         gpu_devices=devices)
