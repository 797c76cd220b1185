"""Base system: OS packages, the service user, and the directory tree it owns."""

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.server import Users, Which
from pyinfra.operations import apt, files, server

from comfyinfra.operations.git import sources_reachable
from comfyinfra.operations.pip import torch_source_reachable
from comfyinfra.plan import HostPlan
from roles import COMFYUI_REPO_HINT, TORCH_SOURCE_HINT, node_repo_hint

# What every host kind needs to build a venv and the usual custom-node wheels.
APT_PACKAGES = ["git", "ca-certificates", "curl", "python3", "python3-venv", "python3-dev", "build-essential",
                "cron", "logrotate"]


@deploy("Preflight")
def preflight(plan: HostPlan):
    """Checks that touch nothing: a source that the service user can't reach stops the host before any
    package is installed, user created or directory made."""
    sources = [(plan.comfyui.repo, plan.paths.app, COMFYUI_REPO_HINT)]
    sources += [(n.pin.repo, n.path, node_repo_hint(i, n.name)) for i, n in enumerate(plan.nodes)]
    sources_reachable(name="Sources reachable", sources=tuple(sources), user=plan.spec.service_user)
    torch_source_reachable(name=f"PyTorch source reachable ({plan.torch.requirements[0]})", python=plan.paths.python,
                           requirement=plan.torch.requirements[0], index_url=plan.torch_source,
                           find_links=tuple(plan.spec.pip_sources.find_links), user=plan.spec.service_user,
                           hint=TORCH_SOURCE_HINT)


@deploy("Base system")
def base(plan: HostPlan):
    packages = APT_PACKAGES + (["supervisor"] if plan.service_manager == "supervisor" else [])
    if host.get_fact(Which, command="apt-get"):
        installed = host.get_fact(DebPackages) or {}
        missing = [p for p in packages if p not in installed]
        # `update` only when something is missing: a no-op deploy must not touch the apt cache.
        apt.packages(name="OS packages", packages=packages, update=bool(missing), cache_time=3600)

    # The home is set at creation only: moving an existing user's home (usermod -d) fails while
    # its processes run, and the install root is not the user's identity.
    exists = plan.spec.service_user in (host.get_fact(Users) or {})
    server.user(
        name=f"Service user {plan.spec.service_user}",
        user=plan.spec.service_user,
        home=None if exists else plan.paths.root,
        shell="/usr/sbin/nologin",
        system=True,
        create_home=False,
    )
    user = plan.spec.service_user
    for path in host.loop([plan.paths.root, plan.paths.state, *plan.paths.data_dirs()]):
        files.directory(name=f"Directory {path}", path=path, user=user, group=user, mode="755")
