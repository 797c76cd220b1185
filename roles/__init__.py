"""pyinfra roles: each a @deploy that turns a HostPlan into operations, in the order they happen on the
host, and a `probes(plan)` beside it naming every fact its operations observe (asked together, in one
round trip per host: comfyinfra.operations.snapshot).

Helpers shared by the roles live here: rendering templates from this
repository's templates/ directory.
"""

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from comfyinfra.operations.system import managed_file
from comfyinfra.plan import HostPlan
from comfyinfra.quoting import JINJA_FILTERS

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
_JINJA = Environment(undefined=StrictUndefined, keep_trailing_newline=True, loader=FileSystemLoader(str(TEMPLATES)))
# Every value a template writes goes through the filter for its target format (systemd_exec, supervisor_env,
# yaml_value, ...): comfyinfra.quoting escapes what the format gives a meaning to and refuses what it can't carry.
_JINJA.filters.update(JINJA_FILTERS)


def render(src: str, **context) -> bytes:
    """A template from templates/ rendered here (StrictUndefined: a missing variable is an error)."""
    return _JINJA.get_template(src).render(**context).encode()


def template(src: str, dest: str, name: str, mode: str = "644", user: str = "root", group: str = "root", **context):
    """A managed file whose content is templates/<src> rendered with `context` (pass name=, always)."""
    return managed_file(name=name, dest=dest, content=render(src, **context), user=user, group=group, mode=mode)
