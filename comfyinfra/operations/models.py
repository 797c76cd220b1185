"""Model files: verified sync by the host helper (comfyinfra/host_helpers/model_sync.py), stat-only
when nothing changed."""

from __future__ import annotations

import json
from collections.abc import Mapping

from pyinfra import host, logger
from pyinfra.api import FactBase, StringCommand, operation
from pyinfra.api.hiddenvalue import HiddenValue

from comfyinfra.facts import UnreadableFact
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
        text = "".join(output) or "{}"
        try:
            states = json.loads(text)
        except ValueError:
            states = None
        if not isinstance(states, dict) or not all(isinstance(v, str) for v in states.values()):
            raise UnreadableFact(f"the model helper's check printed {text[:200]!r}, not a JSON object of model "
                                 "states (its errors are not collected here); run its check by hand on the host to see why")
        return states


class ModelProgress(FactBase):
    """Last line of each per-model progress log on the host (what is downloading, how fast, ETA)."""

    @staticmethod
    def default() -> list[str]:
        return []

    def command(self, logs: str) -> str:
        return f"for f in {q(logs)}/*.log; do [ -f \"$f\" ] && tail -n 1 \"$f\"; done; true"

    def process(self, output) -> list[str]:
        return [line for line in output if line.strip()]


def with_tokens(manifest: dict, tokens: Mapping[str, HiddenValue]) -> dict:
    """The manifest as the sync command reads it: each model with its bearer token, if it has one."""
    models = [dict(model, token=tokens[model["name"]].unmask()) if model["name"] in tokens else model
              for model in manifest["models"]]
    return dict(manifest, models=models)


@operation()
def models_synced(python: str, helper: str, manifest: dict, tokens: Mapping[str, HiddenValue] | None = None):
    """
    Make every declared model present and verified, without reading files that are already verified.

    + python: interpreter on the host that runs the helper (stdlib only)
    + helper: path of comfyinfra/host_helpers/model_sync.py on the host
    + manifest: host, blobs, logs, parallel and models (name, url, sha256, size, dests) -- no tokens
    + tokens: bearer token by model name, each a pyinfra HiddenValue (pyinfra prints an unnamed operation's
      arguments; a HiddenValue prints masked)

    The tokens go to the host in the manifest on the sync command's stdin, never in argv (`ps`), files or logs, and
    to that command only: the stdin is the command's own connector argument, not the operation's `_stdin`.
    pyinfra starts every fact asked while an operation runs from the operation's global arguments
    (pyinfra/api/facts.py `_handle_fact_kwargs` copies `host.current_op_global_arguments`), so an operation-level
    `_stdin` would be piped to those facts too.

        models_synced(name="Models", python="python3", helper=helper, manifest=manifest,
                      tokens={"flux-dev": HiddenValue(os.environ["HF_TOKEN"])})
    """
    if (host.current_op_global_arguments or {}).get("_stdin") is not None:
        raise TypeError("models_synced: pass tokens=, not _stdin= (an operation's _stdin reaches every fact it asks)")
    states = observe(ModelStates, python=python, helper=helper, manifest=json.dumps(manifest, sort_keys=True))
    pending = [model["name"] for model in manifest["models"] if states.get(model["name"]) != "ok"]
    if not pending:
        host.noop(f"{len(manifest['models'])} models verified by their markers (stat only, no file read)")
        return
    logger.info(f"{host.print_prefix}models to sync: {', '.join(pending)} (progress: {manifest['logs']}/<name>.log)")
    yield StringCommand(f"{q(python)} {q(helper)} sync", _stdin=json.dumps(with_tokens(manifest, tokens or {})))
