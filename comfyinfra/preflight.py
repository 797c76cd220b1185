"""Validate every host's merged inventory data before pyinfra connects to anything, and resolve its tags.

pyinfra executes `config.py` before it loads the inventory; ours hooks the moment the inventory
is complete (see `install`) and validates all hosts at once (comfyinfra.validate), before the first
connection. A bad inventory stops the run with one message per problem.
"""

from __future__ import annotations

import sys

from pyinfra import logger
from pyinfra_cli.exceptions import CliError

from comfyinfra import tag_pins
from comfyinfra.kinds import AnySpec
from comfyinfra.plan import plan_without_host, tagged_refs
from comfyinfra.spec import HostSpec
from comfyinfra.windows.plan import WindowsPlan, make_windows_plan
from comfyinfra.windows.spec import WindowsHostSpec
from comfyinfra.validate import InventoryError, check_host, check_inventory


def inventory_file_from_argv(argv: list[str]) -> str:
    """The INVENTORY argument of a pyinfra command line (first positional argument)."""
    takes_value = {"--limit", "--exclude", "--data", "--group-data", "--config", "--chdir", "--parallel",
                   "--fail-percent", "--retry", "--retry-delay", "--sudo-user", "--su-user", "--ssh-user", "--user",
                   "--ssh-port", "--port", "--ssh-key", "--key", "--ssh-key-password", "--ssh-password",
                   "--shell-executable", "--dzdo-user"}
    args = iter(argv[1:])
    for arg in args:
        if arg in takes_value:
            next(args, None)
        elif not arg.startswith("-"):
            return arg
    return "inventory"


_SPECS: dict[str, AnySpec] = {}
_TAGS: tag_pins.Resolved = {}


def install(state) -> None:
    """Called from config.py: validate the inventory as soon as pyinfra has loaded it.

    pyinfra runs config.py before loading the inventory, and calls `state.init(inventory, ...)`
    right after loading it and before connecting; wrapping `init` is the one point where the full
    inventory (group_data merged) exists and no host has been contacted.
    """
    if getattr(state, "_comfyinfra_preflight", False):
        return
    original_init = state.init

    def init(inventory, config, **kwargs):
        original_init(inventory, config, **kwargs)
        try:
            limit = kwargs.get("initial_limit")  # --limit: the other hosts' secrets are not needed
            targets = None if limit is None else {host.name for host in limit}
            _SPECS.update(check_inventory(inventory, inventory_file_from_argv(sys.argv), targets=targets))
        except InventoryError as error:
            raise CliError(f"comfyinfra: {error}") from None
        pairs = {pair for spec in _SPECS.values() if isinstance(spec, HostSpec) for pair in tagged_refs(spec)}
        resolved, warnings = tag_pins.resolve(pairs)
        _TAGS.update(resolved)
        for (repo, tag), commit in sorted(resolved.items()):
            logger.info(f"comfyinfra: tag {tag} of {repo} is {commit}: every host is pinned to that commit")
        for warning in warnings:
            logger.warning(f"comfyinfra: {warning}")

    state.init = init
    state._comfyinfra_preflight = True


def resolved_tags() -> tag_pins.Resolved:
    """The inventory's tags resolved to commits for this run (empty when the preflight did not run)."""
    return dict(_TAGS)


def spec_for(host) -> AnySpec:
    """The validated spec of a host (validates it on demand when the preflight did not run, e.g. API use)."""
    if host.name in _SPECS:
        return _SPECS[host.name]
    data = host.data.dict()
    spec, problems = check_host(host.name, data, {})
    if problems:
        raise InventoryError("\n".join(str(p) for p in problems))
    return spec


def windows_plan_for(host) -> WindowsPlan:
    """A Windows host's plan: its spec and the plan of the WSL host it fronts, made from that host's declarations
    (the preflight checked both before connecting; a contradiction with that host's facts fails that host)."""
    spec = spec_for(host)
    assert isinstance(spec, WindowsHostSpec)
    fronted = _SPECS.get(spec.fronts) or spec_for(host.inventory.get_host(spec.fronts))
    return make_windows_plan(host.name, spec, plan_without_host(fronted, resolved_tags()))
