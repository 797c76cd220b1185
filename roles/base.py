"""Preflight checks, then the base system: OS packages, the service user, and the directory tree it owns."""

from pyinfra import host
from pyinfra.api import deploy

from comfyinfra.operations.git import GitSourceReachable, sources_reachable
from comfyinfra.operations.pip import TorchSource, torch_source_reachable
from comfyinfra.operations.snapshot import probe
from comfyinfra.operations.system import CurrentUser, DebStatus, Passwd, PathState, directory, os_packages, service_user
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
            "find_links": tuple(plan.spec.pip_sources.find_links), "user": plan.spec.service_user}


def tree(plan: HostPlan) -> tuple[str, ...]:
    return (plan.paths.root, plan.paths.state, *plan.paths.data_dirs())


def probes(plan: HostPlan) -> list:
    user = plan.spec.service_user
    return [probe(CurrentUser),
            *(probe(GitSourceReachable, repo=repo, dest=dest, user=user) for repo, dest, _ in sources(plan)),
            probe(TorchSource, **torch_source(plan)),
            probe(DebStatus, packages=packages(plan)), probe(Passwd, user=user),
            *(probe(PathState, path=path) for path in tree(plan))]


@deploy("Preflight")
def preflight(plan: HostPlan):
    """Checks that touch nothing: a source that the service user can't reach stops the host before any
    package is installed, user created or directory made."""
    sources_reachable(name="Sources reachable", sources=sources(plan), user=plan.spec.service_user)
    torch_source_reachable(name=f"PyTorch source reachable ({plan.torch.requirements[0]})", hint=TORCH_SOURCE_HINT,
                           **torch_source(plan))


@deploy("Base system")
def base(plan: HostPlan):
    os_packages(name="OS packages", packages=packages(plan))
    user = plan.spec.service_user
    service_user(name=f"Service user {user}", user=user, home=plan.paths.root)
    for path in host.loop(tree(plan)):
        # ComfyUI deletes and re-creates temp/ at every start, with the service's umask (0027 under systemd)
        mode = None if path == plan.paths.temp else "755"
        directory(name=f"Directory {path}", path=path, user=user, group=user, mode=mode)
