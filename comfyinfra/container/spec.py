"""The `container` section of a Linux host's spec: ComfyUI runs in a container built on the host from the plan.

A host with a `container` section (the DGX Spark in inventory/prod.py) keeps everything else a host has: its
models are synced into the host's model store as on any host and mounted read-only; its ComfyUI and custom nodes
are checked out at their pins on the host as the build context and baked into an image; the container engine and
compose run it (a service backend beside systemd and supervisord: comfyinfra.container.plan).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from comfyinfra.spec import SpecModel

# An image reference as docker and podman read it: [registry[:port]/]path[:tag][@digest], lowercase path.
IMAGE_REFERENCE = re.compile(r"([a-z0-9.-]+(:[0-9]{1,5})?/)?[a-z0-9]+([._/-][a-z0-9]+)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
                             r"(@sha256:[0-9a-f]{64})?", re.ASCII)
IMAGE_REPOSITORY = re.compile(r"[a-z0-9]+([._/-][a-z0-9]+)*", re.ASCII)


class ContainerSpec(SpecModel):
    """ComfyUI in a container: which base, which engine, how compose runs it."""

    base: Literal["ngc", "cuda", "python"] = Field(
        description="ngc: NVIDIA's PyTorch container (nvcr.io/nvidia/pytorch:<tag>-py3, arm64 and amd64), whose own "
        "torch is kept and can't be replaced; cuda: nvidia/cuda:<version>-runtime-ubuntu<version> with the plan's "
        "pinned torch wheels; python: an image with python3 and venv (CPU hosts, and the tests' local base)")
    base_image: str = Field(description="the base image reference, e.g. nvcr.io/nvidia/pytorch:25.09-py3 (a build "
                            "argument, BASE_IMAGE, so the same Dockerfile builds on another base)")
    engine: Literal["docker", "podman"] = Field("docker", description="the container engine on the host: docker (with "
                                                "the compose plugin and the NVIDIA Container Toolkit) or podman (with "
                                                "podman-compose)")
    image: str = Field("comfyinfra/comfyui", description="repository name of the built image; its tag is the hash of "
                       "everything built into it, so an unchanged build is never rebuilt")
    restart: Literal["unless-stopped", "always", "on-failure"] = Field("unless-stopped", description="compose "
                                                                       "restart policy")
    log_max_size_mb: int = Field(50, ge=1, le=10000, description="container log rotation: size of one file")
    log_max_files: int = Field(5, ge=1, le=100, description="container log rotation: files kept")

    @field_validator("base_image")
    @classmethod
    def _base_image(cls, value: str) -> str:
        if not IMAGE_REFERENCE.fullmatch(value):
            raise ValueError(f"{value!r}: allowed: an image reference such as nvcr.io/nvidia/pytorch:25.09-py3 or "
                             "nvidia/cuda:12.8.1-runtime-ubuntu24.04 (lowercase path, optional tag and digest)")
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if not IMAGE_REPOSITORY.fullmatch(value):
            raise ValueError(f"{value!r}: allowed: a repository name without tag, e.g. comfyinfra/comfyui")
        return value
