"""Models: every declared file fetched once, verified by sha256 before it lands, hard-linked into
<models_dir>/<folder>/, and found by ComfyUI through extra_model_paths.yaml."""

import json
import os
from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.hiddenvalue import HiddenValue

from comfyinfra.artifacts import host_artifacts, of
from comfyinfra.operations.models import ModelStates, models_synced
from comfyinfra.operations.snapshot import probe
from comfyinfra.operations.system import PathState, directory
from comfyinfra.plan import HostPlan
from roles import restarting, upload


def manifest(plan: HostPlan) -> dict:
    """What the host helper needs, tokens aside."""
    paths = plan.paths
    models = [{"name": model.name, "url": model.url, "sha256": model.sha256, "size": model.size, "dests": [model.dest]}
              for model in plan.models]
    return {"host": host.name, "blobs": paths.model_blobs, "logs": paths.model_logs,
            "parallel": plan.spec.model_downloads_parallel, "models": models}


def tokens(plan: HostPlan) -> dict[str, HiddenValue]:
    """Bearer tokens by model name, read here from this machine's environment (set and well-formed: the preflight
    checked), masked wherever pyinfra would print them."""
    return {model.name: HiddenValue(os.environ[model.token_env]) for model in plan.models if model.token_env}


def directories(plan: HostPlan) -> list[str]:
    paths = plan.paths
    folders = sorted({Path(m.dest).parent.as_posix() for m in plan.models})
    return [paths.models, paths.model_blobs, paths.model_logs, f"{paths.state}/bin", *folders]


def states_args(plan: HostPlan) -> dict:
    return {"python": plan.spec.python, "helper": plan.paths.model_sync_helper,
            "manifest": json.dumps(manifest(plan), sort_keys=True)}


def probes(plan: HostPlan) -> list:
    found = [probe(PathState, path=path) for path in (*directories(plan), plan.paths.extra_model_paths)]
    if plan.models:
        found += [probe(PathState, path=plan.paths.model_sync_helper),
                  probe(ModelStates, **states_args(plan))]
    return found


@deploy("Models")
def models(plan: HostPlan):
    # root's: the service reads the models; their verification state is out of its reach
    paths = plan.paths
    for path in host.loop(directories(plan)):
        directory(name=f"Directory {path}", path=path, user="root", group="root", mode="755")
    files = of(host_artifacts(plan), "models")  # extra_model_paths.yaml; the sync helper when there are models
    uploaded = upload(files)
    if plan.models:
        models_synced(
            name=f"Models: {len(plan.models)} declared (progress: {paths.model_logs}/<name>.log)",
            python=plan.spec.python,
            helper=paths.model_sync_helper,
            manifest=manifest(plan),
            tokens=tokens(plan),
        )
    return restarting(files, uploaded)
