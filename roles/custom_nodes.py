"""Custom nodes: each checked out at its pinned commit into custom_nodes/<name>, its requirements
installed under the same torch constraints (a node that would replace torch fails, by name)."""

from pyinfra import host
from pyinfra.api import deploy

from comfyinfra.operations.git import GitCheckout, pin_args, pinned_checkout
from comfyinfra.operations.pip import Stamp, pip_install_stamped
from comfyinfra.operations.snapshot import probe
from comfyinfra.plan import HostPlan
from roles import pip_inputs


def stamp(plan: HostPlan, node) -> str:
    return f"{plan.paths.state}/requirements-node-{node.name}.sha256"


def probes(plan: HostPlan) -> list:
    return [p for node in plan.nodes
            for p in (probe(GitCheckout, path=node.path, **pin_args(node.pin)),
                      probe(Stamp, path=stamp(plan, node)))]


@deploy("Custom nodes")
def custom_nodes(plan: HostPlan, venv):
    paths = plan.paths
    ops = []
    for index, node in enumerate(host.loop(plan.nodes)):
        checkout = pinned_checkout(name=f"Node {node.name} @ {node.pin.label}", dest=node.path, **pin_args(node.pin))
        ops.append(checkout)
        if node.install_requirements:
            requirements = f"{node.path}/requirements.txt"
            # Option lines (--index-url, --find-links, -e, includes) and URL requirements are refused on the host
            # before pip runs, unless the node opts in; opting out again reinstalls, so the lines get checked.
            opt_in = f"custom_nodes[{index}].allow_requirement_options"
            options_allowed = plan.spec.custom_nodes[index].allow_requirement_options
            ops.append(pip_install_stamped(
                name=f"Node {node.name} requirements",
                python=paths.python,
                stamp=stamp(plan, node),
                inputs=pip_inputs(plan, node.pin) + (("requirement options allowed",) if options_allowed else ()),
                requirement_files=(requirements,),
                owner_label=f"custom node '{node.name}'",
                protected=plan.torch.requirements,
                refuse_options_unless="" if options_allowed else opt_in,
                after=(venv, checkout),
            ))
    return ops
