"""pyinfra roles: each a @deploy that turns a HostPlan into operations, in the order they happen on the
host, and a `probes(plan)` beside it naming every fact its operations observe (asked together, in one
round trip per host: comfyinfra.operations.snapshot).

Helpers shared by the roles live here: uploading the host's artifacts (comfyinfra.artifacts says which file
goes where, made from what; the roles only decide when, among their other operations).
"""

from pyinfra import host

from comfyinfra.artifacts import Artifact
from comfyinfra.operations.system import managed_file
from comfyinfra.plan import HostPlan

COMFYUI_REPO_HINT = ("Set comfyui_repo to a mirror or a local copy (--data comfyui_repo=/path/to/ComfyUI "
                     "or COMFYINFRA_COMFYUI_REPO=...).")
TORCH_SOURCE_HINT = ("Set pip_sources.torch_index_url to a mirror the host reaches, or put the wheels in a "
                     "directory listed in pip_sources.find_links (README: air-gapped hosts).")


def node_repo_hint(index: int, name: str) -> str:
    return f"Set custom_nodes[{index}].repo ({name}) to a mirror or a local copy."


def pip_inputs(plan: HostPlan, pin) -> tuple[str, ...]:
    """What decides a requirements install besides its packages, as known before the run: the pin of
    the checkout holding requirements.txt, the torch constraints and pip's sources."""
    return (f"{pin.repo}@{pin.ref}", *plan.constraints, *(f"{key}={value}" for key, value in plan.pip_config))


def upload(artifacts: tuple[Artifact, ...]) -> list:
    """Each artifact (comfyinfra.artifacts: the one list of what a host gets) onto the host, in order, under its
    operation name: root's unless it says otherwise, written beside its destination and renamed over it."""
    ops = []
    for artifact in host.loop(artifacts):
        if artifact.secrets:  # its values travel on stdin only: comfyinfra.operations.service.secret_file
            raise ValueError(f"{artifact.dest} holds secrets; upload it with secret_file")
        ops.append(managed_file(name=artifact.name, dest=artifact.dest, content=artifact.render(), user=artifact.user,
                                group=artifact.group, mode=artifact.mode))
    return ops


def restarting(artifacts: tuple[Artifact, ...], ops: list) -> list:
    """The uploads among `ops` (from upload(artifacts)) whose change means restarting ComfyUI."""
    return [op for artifact, op in zip(artifacts, ops, strict=True) if artifact.restarts]
