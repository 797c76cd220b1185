"""pyinfra roles: each a @deploy that turns a HostPlan into operations, in the order they happen on the host.

Helpers shared by the roles live here: running as the service user, and rendering templates from
this repository's templates/ directory whatever the working directory.
"""

from pathlib import Path

from pyinfra import host
from pyinfra.facts.server import User
from pyinfra.operations import files

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


TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def as_service_user(plan: HostPlan) -> dict:
    """Global arguments that run an operation as the service user (su, under sudo when configured)."""
    if host.get_fact(User) == plan.spec.service_user:
        return {}
    return {"_su_user": plan.spec.service_user, "_su_shell": "sh"}


def template(src: str, **kwargs):
    """files.template with src from templates/; kwargs become template variables (pass name=, always)."""
    return files.template(src=str(TEMPLATES / src), **kwargs)
