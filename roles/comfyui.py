"""ComfyUI itself: the pinned checkout, the venv, the pinned torch set, then ComfyUI's requirements."""

from pyinfra.api import deploy

from comfyinfra.artifacts import host_artifacts, of
from comfyinfra.operations.git import GitCheckout, pin_args, pinned_checkout
from comfyinfra.operations.pip import InstalledDistributions, Stamp, pip_install_stamped, pip_pinned, torch_files_intact
from comfyinfra.operations.snapshot import probe
from comfyinfra.operations.system import PathState, venv
from comfyinfra.plan import HostPlan
from roles import custom_nodes, pip_inputs, restarting, upload


def stamp(plan: HostPlan) -> str:
    return f"{plan.paths.state}/requirements-comfyui.sha256"


def probes(plan: HostPlan) -> list:
    paths = plan.paths
    return [probe(GitCheckout, path=paths.app, **pin_args(plan.comfyui)),
            probe(PathState, path=paths.venv), probe(PathState, path=f"{paths.venv}/bin/python"),
            probe(PathState, path=paths.constraints), probe(PathState, path=paths.pip_conf),
            probe(InstalledDistributions, python=paths.python), probe(Stamp, path=stamp(plan))]


@deploy("ComfyUI")
def comfyui(plan: HostPlan):
    """Returns the venv operation (node requirements reinstall when it changes) and every operation
    whose change means restarting ComfyUI. All of it root's: the service reads and runs it, never writes it."""
    paths, spec = plan.paths, plan.spec

    checkout = pinned_checkout(name=f"ComfyUI checkout @ {plan.comfyui.label}", dest=paths.app,
                               **pin_args(plan.comfyui))
    made = venv(name=f"venv {paths.venv}", path=paths.venv, python=spec.python)

    venv_files = of(host_artifacts(plan), "comfyui", "venv")  # torch constraints and pip.conf
    uploaded = upload(venv_files)

    torch = pip_pinned(
        name=f"PyTorch {plan.torch.variant}: {' '.join(plan.torch.requirements)}",
        python=paths.python,
        requirements=plan.torch.requirements,
        index_url=plan.torch.index_url,
    )
    requirements = pip_install_stamped(
        name="ComfyUI requirements (under the torch constraints)",
        python=paths.python,
        stamp=stamp(plan),
        inputs=pip_inputs(plan, plan.comfyui),
        requirement_files=(f"{paths.app}/requirements.txt",),
        packages=tuple(spec.extra_pip_packages),
        owner_label="ComfyUI",
        protected=plan.torch.requirements,
        after=(made, checkout),
    )
    return made, [checkout, made, *restarting(venv_files, uploaded), torch, requirements]


@deploy("Torch integrity")
def torch_intact(plan: HostPlan, installs: tuple):
    """After ComfyUI's and the nodes' requirements: torch's files still those of its wheel (a requirement can
    ship files into torch/ that pip overwrites silently). Runs only when one of `installs` changed something."""
    return torch_files_intact(
        name="Torch set's files match their RECORD",
        python=plan.paths.python,
        requirements=plan.torch.requirements,
        after=installs,
        invalidate=(stamp(plan), *(custom_nodes.stamp(plan, node) for node in plan.nodes)),
    )
