"""Preflight checks, then the base system: OS packages, the service user, and the directory tree: root's
(the tree's root, comfyinfra's state, the logs) and the service's (what ComfyUI writes), 750 like the unit's
UMask=0027 except where the service must read through."""

from pyinfra import host
from pyinfra.api import deploy

from comfyinfra.container.plan import CONTAINER_UID
from comfyinfra.operations.git import GitSourceReachable, sources_reachable
from comfyinfra.operations.pip import TorchSource, torch_source_reachable
from comfyinfra.operations.snapshot import probe
from comfyinfra.operations.system import DebStatus, Passwd, PathState, directory, os_packages, service_user
from comfyinfra.plan import HostPlan
from roles import COMFYUI_REPO_HINT, TORCH_SOURCE_HINT, node_repo_hint

# What every host kind needs to build a venv and the usual custom-node wheels.
APT_PACKAGES = ("git", "ca-certificates", "curl", "python3", "python3-venv", "python3-dev", "build-essential",
                "cron", "logrotate")


def packages(plan: HostPlan) -> tuple[str, ...]:
    return APT_PACKAGES + (("supervisor",) if plan.service_manager == "supervisor" else ())


def sources(plan: HostPlan) -> tuple[tuple[str, str, str], ...]:
    """(repo, checkout, hint naming the override) for ComfyUI and each custom node."""
    return ((plan.comfyui.repo, plan.paths.app, COMFYUI_REPO_HINT),
            *((n.pin.repo, n.path, node_repo_hint(i, n.name)) for i, n in enumerate(plan.nodes)))


def torch_source(plan: HostPlan) -> dict:
    return {"python": plan.paths.python, "requirement": plan.torch.requirements[0], "index_url": plan.torch_source,
            "find_links": tuple(plan.spec.pip_sources.find_links), "user": "root"}  # root runs pip


def tree(plan: HostPlan) -> tuple[tuple[str, str, str, str], ...]:
    """(path, user, group, mode) of each directory, parents first."""
    paths, user = plan.paths, plan.spec.service_user
    return ((paths.root, "root", "root", "755"),  # not the service's: it could swap anything below for a link
            (paths.state, "root", "root", "755"),
            (paths.logs, "root", user, "750"),  # supervisord (root) writes here; the GPU monitor's dir is below
            *((path, user, user, "750") for path in paths.service_writable()))


def changing_hands(plan: HostPlan, path: str) -> dict:
    """How a directory that changes owner takes its content along: the root's entries are each managed on
    their own; the logs keep the GPU monitor's directory, which stays the service's."""
    if path == plan.paths.root:
        return {"recursive": False}
    return {"keep": (plan.paths.gpu_monitor_dir,)} if path == plan.paths.logs else {}


def probes(plan: HostPlan) -> list:
    user = plan.spec.service_user
    torch = [] if plan.service_manager == "compose" else [probe(TorchSource, **torch_source(plan))]  # built in the image
    return [*(probe(GitSourceReachable, repo=repo, dest=dest) for repo, dest, _ in sources(plan)), *torch,
            probe(DebStatus, packages=packages(plan)), probe(Passwd, user=user),
            *(probe(PathState, path=path) for path, *_ in tree(plan))]


@deploy("Preflight")
def preflight(plan: HostPlan):
    """Checks that touch nothing: a source the host can't reach stops it before any package is installed,
    user created or directory made."""
    sources_reachable(name="Sources reachable", sources=sources(plan))
    if plan.service_manager == "compose":
        return  # torch is installed by the image's build, which reaches its own sources
    torch_source_reachable(name=f"PyTorch source reachable ({plan.torch.requirements[0]})", hint=TORCH_SOURCE_HINT,
                           **torch_source(plan))


@deploy("Base system")
def base(plan: HostPlan):
    os_packages(name="OS packages", packages=packages(plan))
    user = plan.spec.service_user
    # A container host's service user is the image's (same uid): what ComfyUI writes on the volumes is its own.
    uid = CONTAINER_UID if plan.service_manager == "compose" else None
    service_user(name=f"Service user {user}", user=user, home=plan.paths.home, uid=uid)
    # ComfyUI empties temp/ at every start; it can't re-create it under the root-owned tree, so its mode holds.
    for path, owner, group, mode in host.loop(tree(plan)):
        directory(name=f"Directory {path}", path=path, user=owner, group=group, mode=mode,
                  **changing_hands(plan, path))
