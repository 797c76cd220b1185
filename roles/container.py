"""A container host (a `container` section, e.g. the DGX Spark): ComfyUI and its nodes checked out at their pins into
the build context, the context's files (comfyinfra.container.artifacts), the image built when its tag is missing,
compose up when its file or the image changed or the container is not running, then the hosts' health wait.

The models are synced into the host's model store by the models role as on any host (the compose file mounts it
read-only); the base role makes the tree and the service user, whose uid is the image's user.
"""

from pyinfra import host
from pyinfra.api import deploy

from comfyinfra.artifacts import host_artifacts, of
from comfyinfra.container.artifacts import container_artifacts, image_of
from comfyinfra.container.plan import CONTAINER_NAME, make_container_plan
from comfyinfra.operations.container import ContainerStatus, ImagePresent, container_up, image_built
from comfyinfra.operations.git import GitCheckout, pin_args, pinned_checkout
from comfyinfra.operations.service import secret_file, wait_healthy
from comfyinfra.operations.snapshot import probe
from comfyinfra.operations.system import PathState, directory
from comfyinfra.plan import HostPlan
from roles import upload
from roles.service import or_show_logs, secrets_content


def probes(plan: HostPlan) -> list:
    container = make_container_plan(plan)
    artifacts = container_artifacts(container)
    engine = container.spec.engine
    return [probe(PathState, path=container.context),
            probe(GitCheckout, path=plan.paths.app, **pin_args(plan.comfyui)),
            *(probe(GitCheckout, path=node.path, **pin_args(node.pin)) for node in plan.nodes),
            *(probe(PathState, path=a.dest) for a in artifacts),
            probe(ImagePresent, engine=engine, image=image_of(artifacts, container)),
            probe(ContainerStatus, engine=engine, container=CONTAINER_NAME)]


@deploy("Container")
def container(plan: HostPlan):
    built_from = make_container_plan(plan)
    artifacts = container_artifacts(built_from)
    engine, image = built_from.spec.engine, image_of(artifacts, built_from)

    directory(name=f"Directory {built_from.context} (build context)", path=built_from.context, user="root",
              group="root", mode="755")
    pinned_checkout(name=f"ComfyUI checkout @ {plan.comfyui.label} (build context)", dest=plan.paths.app,
                    **pin_args(plan.comfyui))
    for node in host.loop(plan.nodes):
        pinned_checkout(name=f"Custom node {node.name} @ {node.pin.label} (build context)", dest=node.path,
                        **pin_args(node.pin))
    upload(of(artifacts, "container", "context"))
    build = image_built(name=f"Image {image}", engine=engine, image=image, build=built_from.build_command(image))

    watched = list(upload(of(artifacts, "container", "compose")))
    secrets = of(host_artifacts(plan), "service", "secrets")
    if secrets:  # compose's env_file; the values travel on stdin, never in an upload
        watched.append(secret_file(name=secrets[0].name, path=secrets[0].dest, group=secrets[0].group,
                                   _stdin=secrets_content(secrets[0].secrets)))
    up = container_up(name=f"Container {CONTAINER_NAME} running {image}", engine=engine, container=CONTAINER_NAME,
                      image=image, watched=(build, *watched),
                      up=or_show_logs(built_from.compose_command("up", "-d"), built_from.logs_command))
    wait_healthy(name=f"ComfyUI answers {plan.health_url} on {plan.expected_device}", url=plan.health_url,
                 timeout_s=plan.spec.health_timeout_s, log_command=built_from.logs_command,
                 expect_device=plan.expected_device, after=(up,))
