"""Model files: verified sync by the host helper (comfyinfra/host_helpers/model_sync.py), stat-only
when nothing changed."""

from __future__ import annotations

import json

from pyinfra import host, logger
from pyinfra.api import FactBase, operation

from comfyinfra.operations.common import q
from comfyinfra.operations.snapshot import observe


class ModelStates(FactBase):
    """Each model's state from stat() and its verification marker only ({} before the helper exists)."""

    @staticmethod
    def default() -> dict[str, str]:
        return {}  # also when the service user does not exist yet

    def command(self, python: str, helper: str, manifest: str) -> str:
        return f"if [ -f {q(helper)} ]; then {q(python)} {q(helper)} check {q(manifest)}; else echo '{{}}'; fi"

    def process(self, output) -> dict[str, str]:
        return json.loads("".join(output) or "{}")


class ModelProgress(FactBase):
    """Last line of each per-model progress log on the host (what is downloading, how fast, ETA)."""

    @staticmethod
    def default() -> list[str]:
        return []

    def command(self, logs: str) -> str:
        return f"for f in {q(logs)}/*.log; do [ -f \"$f\" ] && tail -n 1 \"$f\"; done; true"

    def process(self, output) -> list[str]:
        return [line for line in output if line.strip()]


@operation()
def models_synced(python: str, helper: str, manifest: dict):
    """
    Make every declared model present and verified, without reading files that are already verified.

    + python: interpreter on the host that runs the helper (stdlib only)
    + helper: path of comfyinfra/host_helpers/model_sync.py on the host
    + manifest: host, blobs, logs, parallel and models (name, url, sha256, size, dests) -- no tokens

    The command reads the manifest *with tokens* on stdin: pass it as the operation's `_stdin`, so no
    secret reaches argv (`ps`), files or logs.
    """
    states = observe(ModelStates, python=python, helper=helper, manifest=json.dumps(manifest, sort_keys=True))
    pending = [model["name"] for model in manifest["models"] if states.get(model["name"]) != "ok"]
    if not pending:
        host.noop(f"{len(manifest['models'])} models verified by their markers (stat only, no file read)")
        return
    logger.info(f"{host.print_prefix}models to sync: {', '.join(pending)} (progress: {manifest['logs']}/<name>.log)")
    yield f"{q(python)} {q(helper)} sync"
