"""ComfyUI itself: the pinned checkout, the venv, the pinned torch set, then ComfyUI's requirements."""

from pyinfra.api import deploy

from comfyinfra.operations.git import GitCheckout, pin_args, pinned_checkout
from comfyinfra.operations.pip import InstalledDistributions, Stamp, pip_install_stamped, pip_pinned
from comfyinfra.operations.snapshot import probe
from comfyinfra.operations.system import PathState, venv
from comfyinfra.plan import HostPlan
from roles import as_service_user, pip_inputs, template


def stamp(plan: HostPlan) -> str:
    return f"{plan.paths.state}/requirements-comfyui.sha256"


def probes(plan: HostPlan) -> list:
    paths = plan.paths
    return [probe(GitCheckout, run_as=plan.spec.service_user, path=paths.app, **pin_args(plan.comfyui)),
            probe(PathState, path=f"{paths.venv}/bin/python"),
            probe(PathState, path=paths.constraints), probe(PathState, path=paths.pip_conf),
            probe(InstalledDistributions, python=paths.python), probe(Stamp, path=stamp(plan))]


@deploy("ComfyUI")
def comfyui(plan: HostPlan):
    """Returns the venv operation (node requirements reinstall when it changes) and every operation
    whose change means restarting ComfyUI."""
    paths, spec = plan.paths, plan.spec
    run_as = as_service_user(plan)

    checkout = pinned_checkout(name=f"ComfyUI checkout @ {plan.comfyui.label}", dest=paths.app,
                               **pin_args(plan.comfyui), **run_as)
    made = venv(name=f"venv {paths.venv}", path=paths.venv, python=spec.python, **run_as)

    owner = {"user": spec.service_user, "group": spec.service_user, "mode": "644"}
    constraints = template("constraints.txt.j2", paths.constraints, name="Torch constraints", plan=plan, **owner)
    pip_conf = template("pip.conf.j2", paths.pip_conf, name="pip.conf (sources, constraints)", plan=plan, **owner)

    torch = pip_pinned(
        name=f"PyTorch {plan.torch.variant}: {' '.join(plan.torch.requirements)}",
        python=paths.python,
        requirements=plan.torch.requirements,
        index_url=plan.torch.index_url,
        **run_as,
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
        **run_as,
    )
    return made, [checkout, made, constraints, pip_conf, torch, requirements]
