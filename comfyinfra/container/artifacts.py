"""Every file a container host gets besides a host's models: the build context and the compose file.

The same Artifact and the same templates as the hosts wherever the file is the same kind of thing (the torch
constraints, pip.conf, extra_model_paths.yaml are rendered by the hosts' templates, from the image's paths);
the Dockerfile and compose.yaml have their own (templates/container/), each reading one view. Pure: no pyinfra.
"""

from __future__ import annotations

from dataclasses import dataclass

from comfyinfra.artifacts import Artifact, ConstraintsView, ModelPathsView, PipConfView
from comfyinfra.container.plan import CONTAINER_NAME, CONTAINER_UID, WHEELS_CONTEXT, ContainerPlan
from comfyinfra.plan import pip_config
from comfyinfra.spec import MODEL_FOLDERS

HEALTH_START_PERIOD_S = 180


@dataclass(frozen=True)
class ImageView:
    """What the Dockerfile builds: base, torch, the pinned tree, the user, the launch."""

    kind: str  # the host's kind, for the header
    label: str
    base: str
    base_image: str
    uid: int
    env: tuple[tuple[str, str], ...]
    app: str
    venv: str
    python: str
    state: str
    constraints: str
    home: str
    models: str
    data: tuple[str, ...]
    torch_requirements: tuple[str, ...]
    torch_index_url: str | None
    torch_reason: str
    pip_mount: str  # RUN's --mount of the wheelhouse, or ""
    extra_packages: tuple[str, ...]
    node_requirements: tuple[str, ...]
    port: int
    start_period_s: int
    healthcheck: tuple[str, ...]
    argv: tuple[str, ...]


@dataclass(frozen=True)
class ComposeView:
    image: str
    container_name: str
    restart: str
    addresses: tuple[str, ...]
    port: int
    volumes: tuple[str, ...]  # source:target[:ro]
    env_file: str | None
    healthcheck: tuple[str, ...]
    start_period_s: int
    log_max_size_mb: int
    log_max_files: int
    gpu_count_all: bool
    gpu_device_ids: tuple[str, ...]


def health_probe(python: str, port: int) -> tuple[str, ...]:
    """The health check in the image: Python's urllib (no curl in the bases), /system_stats must answer 200."""
    code = (f"import sys, urllib.request; sys.exit(0 if urllib.request.urlopen("
            f"'http://127.0.0.1:{port}/system_stats', timeout=5).status == 200 else 1)")
    return (python, "-c", code)


def image_view(plan: ContainerPlan) -> ImageView:
    host, inside, spec = plan.host, plan.inside, plan.host.spec
    ngc = plan.spec.base == "ngc"
    nodes = tuple(f"{inside.custom_nodes}/{node.name}/requirements.txt" for node in host.nodes if node.install_requirements)
    return ImageView(
        kind=spec.host_kind.value, label=host.comfyui.label, base=plan.spec.base, base_image=plan.spec.base_image,
        uid=CONTAINER_UID, env=plan.env, app=inside.app, venv=inside.venv,
        python=inside.python, state=inside.state, constraints=inside.constraints, home=inside.home,
        models=inside.models, data=(inside.input, inside.output, inside.temp, inside.user, inside.home),
        torch_requirements=() if ngc else host.torch.requirements,
        torch_index_url=None if ngc else host.torch_source, torch_reason=host.torch.reason,
        pip_mount=f"--mount=type=bind,from={WHEELS_CONTEXT},target=/wheels " if plan.find_links else "",
        extra_packages=tuple(spec.extra_pip_packages), node_requirements=nodes, port=spec.port,
        start_period_s=HEALTH_START_PERIOD_S, healthcheck=health_probe(inside.python, spec.port), argv=plan.argv)


def pip_lines(plan: ContainerPlan) -> tuple[tuple[str, str], ...]:
    """The image's pip.conf: the host's sources, with the wheelhouse where the build mounts it."""
    return tuple((key, "/wheels") if key == "find-links" else (key, value)
                 for key, value in pip_config(plan.host.spec, plan.inside))


def container_artifacts(plan: ContainerPlan) -> tuple[Artifact, ...]:
    """The build context (Dockerfile, constraints, pip.conf, model paths), then compose.yaml, in upload order."""
    host, inside, context = plan.host, plan.inside, plan.context
    view = image_view(plan)
    constraints = ConstraintsView(host.torch.variant if plan.spec.base != "ngc" else "the base image's",
                                  host.torch.reason if plan.spec.base != "ngc" else
                                  "NGC's own torch, pinned at build time", inside.venv, view.torch_requirements)
    dockerfile = Artifact("container", "context", "Dockerfile", plan.dockerfile, "container/Dockerfile.j2",
                          {"image": view})
    image = plan.image(dockerfile.render())
    spec = host.spec
    gpu_all = plan.gpu_devices is None
    compose = ComposeView(
        image=image, container_name=CONTAINER_NAME, restart=plan.spec.restart,
        addresses=tuple(a.strip() for a in spec.listen.split(",")), port=spec.port,
        volumes=(f"{host.paths.models}:{inside.models}:ro", f"{host.paths.input}:{inside.input}",
                 f"{host.paths.output}:{inside.output}", f"{host.paths.temp}:{inside.temp}",
                 f"{host.paths.user}:{inside.user}", f"{host.paths.home}:{inside.home}"),
        env_file=host.paths.secrets_env if spec.service_secrets else None, healthcheck=view.healthcheck,
        start_period_s=HEALTH_START_PERIOD_S, log_max_size_mb=plan.spec.log_max_size_mb,
        log_max_files=plan.spec.log_max_files, gpu_count_all=gpu_all, gpu_device_ids=plan.gpu_devices or ())
    return (
        dockerfile,
        Artifact("container", "context", "Torch constraints (build context)", f"{context}/constraints.txt",
                 "constraints.txt.j2", {"constraints": constraints}),
        Artifact("container", "context", "pip.conf (build context)", f"{context}/pip.conf", "pip.conf.j2",
                 {"pip": PipConfView(pip_lines(plan))}),
        Artifact("container", "context", "extra_model_paths.yaml (build context)", f"{context}/extra_model_paths.yaml",
                 "extra_model_paths.yaml.j2", {"model_paths": ModelPathsView(inside.models, MODEL_FOLDERS)}),
        Artifact("container", "compose", "compose.yaml", plan.compose_file, "container/compose.yaml.j2",
                 {"compose": compose}, restarts=True),
    )


def image_of(artifacts: tuple[Artifact, ...], plan: ContainerPlan) -> str:
    return plan.image(next(a for a in artifacts if a.dest == plan.dockerfile).render())
