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
from comfyinfra.plan import tagged_refs
from comfyinfra.spec import HostSpec
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


_SPECS: dict[str, HostSpec] = {}
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
            _SPECS.update(check_inventory(inventory, inventory_file_from_argv(sys.argv)))
        except InventoryError as error:
            raise CliError(f"comfyinfra: {error}") from None
        pairs = {pair for spec in _SPECS.values() for pair in tagged_refs(spec)}
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


def spec_for(host) -> HostSpec:
    """The validated spec of a host (validates it on demand when the preflight did not run, e.g. API use)."""
    if host.name in _SPECS:
        return _SPECS[host.name]
    data = host.data.dict()
    spec, problems = check_host(host.name, data, {})
    if problems:
        raise InventoryError("\n".join(str(p) for p in problems))
    return spec
