"""A Windows host that fronts a WSL host: its directories, its files (comfyinfra.windows.artifacts), the watchdog's
scheduled task, and IIS, in the order they happen on the box. One WindowsState fact is asked first; every
operation decides from it (comfyinfra.windows.operations), so a dry run predicts the real one exactly.
"""

from __future__ import annotations

import json
import os

from pyinfra import host
from pyinfra.api import deploy

from comfyinfra.windows.artifacts import windows_artifacts
from comfyinfra.windows.facts import WindowsState
from comfyinfra.windows.operations import (
    acl_layout,
    iis_applied,
    sha256,
    stamp_matches,
    task_registered,
    task_running,
    windows_file,
)
from comfyinfra.windows.plan import WindowsPlan

# How long the end-to-end HTTPS check after an IIS change waits for ComfyUI (it may be starting in WSL).
SITE_CHECK_TIMEOUT_S = 300


def state_params(plan: WindowsPlan, artifacts: tuple) -> dict:
    paths = plan.paths
    installer = next(a for a in artifacts if a.dest == paths.iis_setup)
    return {"files": [a.dest for a in artifacts], "dirs": list(layout_dirs(plan)), "logs": paths.logs,
            "user": plan.spec.wsl_user, "installer": paths.iis_setup, "installer_sha256": sha256(installer.render()),
            "task_path": plan.task_path, "task_name": plan.task_name, "stamp": task_stamp_path(plan)}


def layout_dirs(plan: WindowsPlan) -> tuple[str, ...]:
    paths = plan.paths
    return (paths.install_dir, paths.scripts, paths.logs, paths.state, f"{paths.install_dir}\\task",
            f"{paths.install_dir}\\iis")


def task_stamp_path(plan: WindowsPlan) -> str:
    return f"{plan.paths.state}\\task-registration.json"


@deploy("Windows host")
def windows(plan: WindowsPlan):
    paths, spec = plan.paths, plan.spec
    artifacts = windows_artifacts(plan)
    state = host.get_fact(WindowsState, params=json.dumps(state_params(plan, artifacts), sort_keys=True))
    if state is None:  # the fact failed: pyinfra printed its error and failed this host (only)
        return
    changed = {a.dest: state.files.get(a.dest) != sha256(a.render()) for a in artifacts}

    acl_layout(name="Directories (administrators-only ACLs)", dirs=layout_dirs(plan), logs=paths.logs,
               user=spec.wsl_user, acls=state.acls)
    for artifact in host.loop(artifacts):
        windows_file(name=artifact.name, dest=artifact.dest, content=artifact.render(),
                     current=state.files.get(artifact.dest))

    xml = next(a for a in artifacts if a.dest == paths.task_xml).render()
    password = os.environ[spec.wsl_user_password_env]  # checked by the preflight; never printed (HiddenValue)
    reasons = [*(["definition changed"] if changed[paths.task_xml] else []),
               *(["not registered"] if state.task is None else []),
               *([f"registered as {state.task.user} ({state.task.logon})"] if state.task and (
                   state.task.user.lower() != spec.wsl_user.lower() or state.task.logon != "Password") else []),
               *(["definition or password changed since the last registration"]
                 if not stamp_matches(state.stamp, xml, password) else [])]
    task_registered(name=f"Scheduled task {plan.task_uri} (at boot, as {spec.wsl_user})", task_path=plan.task_path,
                    task_name=plan.task_name, xml_path=paths.task_xml, xml=xml, user=spec.wsl_user, password=password,
                    stamp_path=task_stamp_path(plan), reasons=tuple(reasons))
    task_running(name="Watchdog running", task_path=plan.task_path, task_name=plan.task_name,
                 state=state.task.state if state.task else None,
                 restart=bool(reasons) or changed[paths.watchdog])

    iis_inputs = [a.name for a in artifacts if a.step == "iis" and changed[a.dest]]
    iis_applied(name=f"IIS: https://{spec.site.host_name}/ -> {plan.proxy_target}", installer=paths.iis_setup,
                host_name=spec.site.host_name, timeout_s=SITE_CHECK_TIMEOUT_S,
                reasons=(*(f"{name} changed" for name in iis_inputs), *(state.drift or ())))
