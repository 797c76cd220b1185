"""Smoke tests after a deploy, against the same pyinfra inventory:

    pytest tests/smoke --inventory inventory/prod.py [--limit gpu-4090] [--limit 'runpod*']

Hosts, SSH settings and every expectation come from the inventory (validated with the deploy's own
spec), so nobody maintains a second host list. Checks run ON each host through testinfra's ssh
backend (an ssh_config generated from the inventory; an inventory's own ssh_config_file is included),
so a ComfyUI bound to 127.0.0.1 is reachable. The generated ssh_config is removed when pytest ends.

Verifying needs none of the deploy's secrets (model tokens, service secrets), and this process never
imports pyinfra_cli (whose import monkey-patches threading and sockets with gevent): comfyinfra.fleet
loads the inventory in a child process.
"""

from __future__ import annotations

import pytest

from comfyinfra.fleet import comfy_url, load_fleet, remove_ssh_config, write_ssh_config
from comfyinfra.validate import InventoryError

TARGETS: dict[str, dict] = {}  # testinfra host name -> {"host": FleetHost, "spec": HostSpec}
SSH_CONFIG = pytest.StashKey[str]()  # the ssh_config this run wrote, removed in pytest_unconfigure


def pytest_addoption(parser):
    group = parser.getgroup("comfyinfra smoke")
    group.addoption("--inventory", help="pyinfra inventory file whose hosts are checked")
    group.addoption("--limit", action="append", default=[], help="host name, group or glob (repeatable), as pyinfra's")


def pytest_configure(config):
    inventory_file = config.getoption("--inventory")
    if not inventory_file or config.option.hosts:
        return
    try:
        hosts = load_fleet(inventory_file, config.getoption("--limit"))
    except (ValueError, InventoryError) as error:
        raise pytest.UsageError(str(error)) from None
    names = []
    for host in hosts:
        key = "local" if host.local else host.name
        TARGETS[key] = {"host": host, "spec": host.spec}
        names.append("local://" if host.local else f"ssh://{host.name}")
    config.stash[SSH_CONFIG] = config.option.ssh_config = write_ssh_config(hosts)
    config.option.hosts = ",".join(names)


def pytest_unconfigure(config):
    """Runs however the session ends (failures, errors, Ctrl-C): no ssh_config is left in $TMPDIR."""
    remove_ssh_config(config.stash.get(SSH_CONFIG, None))


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--inventory"):
        skip = pytest.mark.skip(reason="smoke tests need --inventory inventory/<fleet>.py")
        for item in items:
            if "tests/smoke" in str(item.fspath):
                item.add_marker(skip)


@pytest.fixture
def target(host):
    """The inventory's view of the testinfra host: its validated spec and the plan from its live facts."""
    from comfyinfra.facts import NvidiaGpus, Platform
    from comfyinfra.plan import make_plan

    name = host.backend.get_hostname() if host.backend.NAME != "local" else "local"
    entry = TARGETS[name]

    def fact(cls):
        return cls().process(host.check_output(cls().command()).splitlines())

    entry.setdefault("plan", make_plan(entry["spec"], fact(Platform), fact(NvidiaGpus)))
    return entry["plan"]


@pytest.fixture
def comfy(host, target, request):
    """A ComfyClient for the host's ComfyUI, through an SSH tunnel (it listens on loopback)."""
    from comfyinfra.client import ComfyClient

    name = host.backend.get_hostname() if host.backend.NAME != "local" else "local"
    with comfy_url(TARGETS[name]["host"], request.config.option.ssh_config) as url:
        with ComfyClient(url, timeout=30) as client:
            yield client


def pytest_generate_tests(metafunc):
    """One test per declared custom node / model, so a failure names exactly the broken one."""
    if "node_name" in metafunc.fixturenames:
        names = sorted({n.name for t in TARGETS.values() for n in t["spec"].custom_nodes}) or ["(none declared)"]
        metafunc.parametrize("node_name", names)
    if "workflow_name" in metafunc.fixturenames:
        names = sorted({w for t in TARGETS.values() for w in t["spec"].smoke_workflows}) or ["(none declared)"]
        metafunc.parametrize("workflow_name", names)
    if "model_name" in metafunc.fixturenames:
        names = sorted({m for t in TARGETS.values() for m in t["spec"].models}) or ["(none declared)"]
        metafunc.parametrize("model_name", names)
