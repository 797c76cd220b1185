"""ComfyUI itself: the pinned checkout, the venv, the pinned torch set, then ComfyUI's requirements."""

from pyinfra.api import deploy
from pyinfra.operations import pip

from comfyinfra.operations.git import pin_args, pinned_checkout
from comfyinfra.operations.pip import pip_install_stamped, pip_pinned
from comfyinfra.plan import HostPlan
from roles import as_service_user, pip_inputs, template


@deploy("ComfyUI")
def comfyui(plan: HostPlan):
    """Returns the venv operation (node requirements reinstall when it changes) and every operation
    whose change means restarting ComfyUI."""
    paths, spec = plan.paths, plan.spec
    run_as = as_service_user(plan)

    checkout = pinned_checkout(
        name=f"ComfyUI checkout @ {plan.comfyui.label}", dest=paths.app, **pin_args(plan.comfyui), **run_as,
    )
    venv = pip.venv(name=f"venv {paths.venv}", path=paths.venv, python=spec.python, **run_as)

    owner = {"user": spec.service_user, "group": spec.service_user, "mode": "644"}
    constraints = template(name="Torch constraints", src="constraints.txt.j2", dest=paths.constraints, plan=plan, **owner)
    pip_conf = template(name="pip.conf (sources, constraints)", src="pip.conf.j2", dest=paths.pip_conf, plan=plan, **owner)

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
        stamp=f"{paths.state}/requirements-comfyui.sha256",
        inputs=pip_inputs(plan, plan.comfyui),
        requirement_files=(f"{paths.app}/requirements.txt",),
        packages=tuple(spec.extra_pip_packages),
        owner_label="ComfyUI",
        protected=plan.torch.requirements,
        after=(venv, checkout),
        **run_as,
    )
    return venv, [checkout, venv, constraints, pip_conf, torch, requirements]
