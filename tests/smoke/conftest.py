"""Smoke tests after a deploy, against the same pyinfra inventory:

    pytest tests/smoke --inventory inventory/prod.py [--limit gpu-4090] [--limit 'runpod*']

Hosts, SSH settings and every expectation come from the inventory (validated with the deploy's own
spec), so nobody maintains a second host list. Checks run ON each host through testinfra's ssh
backend (an ssh_config generated from the inventory; an inventory's own ssh_config_file is included),
so a ComfyUI bound to 127.0.0.1 is reachable.
"""

from __future__ import annotations

import fnmatch
import os
import tempfile
from pathlib import Path

import pytest
from pyinfra.api import State
from pyinfra.context import ctx_state
from pyinfra_cli.inventory import make_inventory

from comfyinfra.preflight import check_inventory

REPO = Path(__file__).resolve().parents[2]
SSH_OPTIONS = (("ssh_hostname", "HostName"), ("ssh_port", "Port"), ("ssh_user", "User"), ("ssh_key", "IdentityFile"),
               ("ssh_known_hosts_file", "UserKnownHostsFile"))
TARGETS: dict[str, dict] = {}  # testinfra host name -> {"spec": HostSpec, "data": dict}


def pytest_addoption(parser):
    group = parser.getgroup("comfyinfra smoke")
    group.addoption("--inventory", help="pyinfra inventory file whose hosts are checked")
    group.addoption("--limit", action="append", default=[], help="host name, group or glob (repeatable), as pyinfra's")


def _selected(host, limits) -> bool:
    return not limits or any(fnmatch.fnmatch(host.name, p) or p in host.groups for p in limits)


def pytest_configure(config):
    inventory_file = config.getoption("--inventory")
    if not inventory_file or config.option.hosts:
        return
    cwd = os.getcwd()
    os.chdir(REPO)  # group_data/ is read from here, as the deploy reads it
    try:
        with ctx_state.use(State()):
            inventory = make_inventory(inventory_file, cwd=str(REPO))
        specs = check_inventory(inventory, inventory_file)
    finally:
        os.chdir(cwd)
    lines, names = [], []
    includes = set()
    for host in inventory:
        if not _selected(host, config.getoption("--limit")):
            continue
        data = host.data.dict()
        TARGETS[host.name] = {"spec": specs[host.name], "data": data}
        if host.name.startswith("@local"):
            names.append("local://")
            TARGETS["local"] = TARGETS.pop(host.name)
            continue
        lines.append(f"Host {host.name}")
        for key, option in SSH_OPTIONS:
            if data.get(key):
                lines.append(f"    {option} {data[key]}")
        strict = data.get("ssh_strict_host_key_checking", "accept-new")
        lines.append(f"    StrictHostKeyChecking {strict}")
        if data.get("ssh_config_file"):
            includes.add(os.path.expanduser(data["ssh_config_file"]))
        names.append(f"ssh://{host.name}")
    if not names:
        raise pytest.UsageError(f"--limit {config.getoption('--limit')} matches no host in {inventory_file}")
    lines += [f"Include {path}" for path in sorted(includes) if Path(path).exists()]
    fd, path = tempfile.mkstemp(prefix="comfyinfra-smoke-ssh-", suffix=".conf")
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    config.option.ssh_config = path
    config.option.hosts = ",".join(names)


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


def pytest_generate_tests(metafunc):
    """One test per declared custom node / model, so a failure names exactly the broken one."""
    if "node_name" in metafunc.fixturenames:
        names = sorted({n.name for t in TARGETS.values() for n in t["spec"].custom_nodes}) or ["(none declared)"]
        metafunc.parametrize("node_name", names)
    if "model_name" in metafunc.fixturenames:
        names = sorted({m for t in TARGETS.values() for m in t["spec"].models}) or ["(none declared)"]
        metafunc.parametrize("model_name", names)
