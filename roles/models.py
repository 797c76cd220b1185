"""Models: every declared file fetched once, verified by sha256 before it lands, hard-linked into
<models_dir>/<folder>/, and found by ComfyUI through extra_model_paths.yaml."""

import json
import os
from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy

from comfyinfra.operations.models import ModelStates, models_synced
from comfyinfra.operations.snapshot import probe
from comfyinfra.operations.system import PathState, directory, managed_file
from comfyinfra.plan import HostPlan
from comfyinfra.spec import MODEL_FOLDERS
from roles import as_service_user, template

HELPER = Path(__file__).resolve().parent.parent / "comfyinfra" / "host_helpers" / "model_sync.py"


def manifest(plan: HostPlan, with_tokens: bool) -> dict:
    """What the host helper needs. Tokens (read here, from this machine's environment) only when asked."""
    paths = plan.paths
    models = []
    for model in plan.models:
        entry = {"name": model.name, "url": model.url, "sha256": model.sha256, "size": model.size, "dests": [model.dest]}
        if with_tokens and model.token_env:
            entry["token"] = os.environ[model.token_env]  # presence checked by the preflight
        models.append(entry)
    return {"host": host.name, "blobs": paths.model_blobs, "logs": paths.model_logs,
            "parallel": plan.spec.model_downloads_parallel, "models": models}


def directories(plan: HostPlan) -> list[str]:
    paths = plan.paths
    folders = sorted({Path(m.dest).parent.as_posix() for m in plan.models})
    return [paths.models, paths.model_blobs, paths.model_logs, f"{paths.state}/bin", *folders]


def states_args(plan: HostPlan) -> dict:
    return {"python": plan.spec.python, "helper": plan.paths.model_sync_helper,
            "manifest": json.dumps(manifest(plan, with_tokens=False), sort_keys=True)}


def probes(plan: HostPlan) -> list:
    found = [probe(PathState, path=path) for path in (*directories(plan), plan.paths.extra_model_paths)]
    if plan.models:
        found += [probe(PathState, path=plan.paths.model_sync_helper),
                  probe(ModelStates, run_as=plan.spec.service_user, **states_args(plan))]
    return found


@deploy("Models")
def models(plan: HostPlan):
    paths, user = plan.paths, plan.spec.service_user
    owner = {"user": user, "group": user}
    for path in host.loop(directories(plan)):
        directory(name=f"Directory {path}", path=path, mode="755", **owner)
    config = template("extra_model_paths.yaml.j2", paths.extra_model_paths, name="extra_model_paths.yaml", mode="644",
                      plan=plan, folders=MODEL_FOLDERS, **owner)
    if plan.models:
        managed_file(name="Model sync helper", dest=paths.model_sync_helper, content=HELPER.read_bytes(), mode="755",
                     **owner)
        models_synced(
            name=f"Models: {len(plan.models)} declared (progress: {paths.model_logs}/<name>.log)",
            python=plan.spec.python,
            helper=paths.model_sync_helper,
            manifest=manifest(plan, with_tokens=False),
            _stdin=json.dumps(manifest(plan, with_tokens=True)),
            **as_service_user(plan),
        )
    return [config]
