"""Container operations: the image built when its tag is missing, and the container up when its compose file or
anything it runs changed, or it is not running. The tag is the hash of everything built into the image
(comfyinfra.container.plan), so "the tag exists" is the whole question for a build; `docker compose up -d` /
`podman-compose up -d` run only when needed, so a no-op deploy leaves the container (and its ID) alone.
"""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import FactBase, operation

from comfyinfra.operations.common import changed
from comfyinfra.operations.snapshot import observe

q = shlex.quote


class ImagePresent(FactBase):
    """Whether the engine has this image (name:tag) locally."""

    def command(self, engine: str, image: str) -> str:
        return f"{q(engine)} image inspect {q(image)} >/dev/null 2>&1 && echo present || echo absent"

    def process(self, output) -> bool:
        return "".join(output).strip() == "present"


class ContainerStatus(FactBase):
    """A container's state (running, exited, ...) and its image name; None when there is no such container."""

    IMAGE_FIELD = {"podman": ".ImageName", "docker": ".Config.Image"}  # the image as compose named it

    def command(self, engine: str, container: str) -> str:
        template = f"{{{{.State.Status}}}} {{{{{self.IMAGE_FIELD[engine]}}}}}"
        return f"{q(engine)} inspect --format {q(template)} {q(container)} 2>/dev/null || true"

    def process(self, output) -> dict | None:
        words = "".join(output).split()
        return {"status": words[0], "image": words[1] if len(words) > 1 else ""} if words else None


@operation()
def image_built(engine: str, image: str, build: str):
    """
    The image `image` present: built with `build` (a shell command, as root) when the engine lacks it.

    + engine: docker | podman
    + image: name:tag, the tag naming what is built into it
    + build: the build command
    """
    if observe(ImagePresent, engine=engine, image=image):
        host.noop(f"image {image} present (nothing built into it changed)")
        return
    yield build


@operation()
def container_up(engine: str, container: str, image: str, up: str, watched: tuple = ()):
    """
    The container `container` running `image`: `up` (compose up -d) when one of `watched` changes (compose file,
    secrets), when it is not running, or runs another image.
    """
    state = observe(ContainerStatus, engine=engine, container=container)
    reasons = []
    if changed(*watched):
        reasons.append("its compose file or environment changed")
    if state is None or state["status"] != "running":
        reasons.append("not running" if state is None else f"{state['status']}")
    elif state["image"] != image:
        reasons.append(f"runs {state['image']}")
    if not reasons:
        host.noop(f"container {container} running {image}")
        return
    yield up
