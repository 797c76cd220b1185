"""Print a validated inventory as JSON, for the verify side (smoke suite, load test):

    python -m comfyinfra.inventory_export inventory/prod.py

This is the one place where the verify side uses pyinfra's inventory loader, which lives in
`pyinfra_cli`, whose import calls gevent's `monkey.patch_all()` (threads become greenlets on one OS
thread, sockets cooperative). `comfyinfra.fleet.load_fleet` runs it in a child process so the
process that measures never gets patched.

Reads the inventory from the repository root (group_data/ merged in, as the deploy reads it) and
validates it with the deploy's spec, without the deploy's secrets (no smoke test or load test
downloads a model). Prints one JSON object on stdout:
    {"hosts": [{"name", "groups", "data": {SSH settings}, "spec": HostSpec as JSON}, ...]}
or  {"error": "<the validation message>"} with exit status 1.
"""

from __future__ import annotations

# pyinfra_cli first: it patches the stdlib with gevent, which must happen before ssl & co. are imported.
from pyinfra_cli.inventory import make_inventory  # isort:skip

import contextlib
import json
import os
import sys

from pyinfra.api import State
from pyinfra.context import ctx_state

from comfyinfra.fleet import REPO, SSH_DATA_KEYS
from comfyinfra.validate import InventoryError, check_inventory


def export(inventory_file: str) -> list[dict]:
    cwd = os.getcwd()
    os.chdir(REPO)  # group_data/ is read from here, as the deploy reads it
    try:
        with ctx_state.use(State()):
            inventory = make_inventory(inventory_file, cwd=str(REPO))
        specs = check_inventory(inventory, inventory_file, require_secrets=False)
    finally:
        os.chdir(cwd)
    hosts = []
    for host in inventory:
        data = host.data.dict()
        hosts.append({"name": host.name, "groups": list(host.groups),
                      "data": {key: data[key] for key in SSH_DATA_KEYS if data.get(key) not in (None, "")},
                      "spec": specs[host.name].model_dump(mode="json")})
    return hosts


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m comfyinfra.inventory_export <inventory.py>", file=sys.stderr)
        return 2
    # Whatever the inventory files print (or their subprocesses write) goes to stderr: stdout is the JSON.
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            result, status = {"hosts": export(args[0])}, 0
    except InventoryError as error:
        result, status = {"error": str(error)}, 1
    except Exception as error:  # an inventory that does not load at all (syntax error, bad import, ...)
        result, status = {"error": f"cannot load inventory {args[0]}: {type(error).__name__}: {error}"}, 1
    with out:
        out.write(json.dumps(result, default=str) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
