"""Custom nodes: each checked out at its pinned commit into custom_nodes/<name>, its requirements
installed under the same torch constraints (a node that would replace torch fails, by name)."""

from pyinfra import host
from pyinfra.api import deploy

from comfyinfra.operations import pin_args, pinned_checkout, pip_install_stamped
from comfyinfra.plan import HostPlan
from roles import as_service_user, node_repo_hint


@deploy("Custom nodes")
def custom_nodes(plan: HostPlan):
    paths = plan.paths
    run_as = as_service_user(plan)
    ops = []
    for index, node in host.loop(enumerate(plan.nodes)):
        ops.append(pinned_checkout(
            name=f"Node {node.name} @ {node.pin.label}",
            dest=node.path,
            unreachable_hint=node_repo_hint(index, node.name),
            **pin_args(node.pin), **run_as,
        ))
        if node.install_requirements:
            requirements = f"{node.path}/requirements.txt"
            ops.append(pip_install_stamped(
                name=f"Node {node.name} requirements",
                python=paths.python,
                stamp=f"{paths.state}/requirements-node-{node.name}.sha256",
                inputs=(requirements, paths.constraints, paths.pip_conf),
                requirement_files=(requirements,),
                owner_label=f"custom node '{node.name}'",
                protected=plan.torch.requirements,
                **run_as,
            ))
    return ops
