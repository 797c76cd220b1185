"""comfyinfra: `pyinfra inventory/<fleet>.py deploy.py` provisions every host in the inventory.

Data flows one way: inventory + group_data -> validated spec (comfyinfra.spec, or comfyinfra.windows.spec for a
Windows host; checked for all hosts before any connection by config.py) -> plan (comfyinfra.plan from the host's
facts; comfyinfra.windows.plan from the fronted WSL host's declarations) -> roles -> operations. A host whose plan
can't be made, or whose facts can't be read, fails alone, with the reason, before it has any operation (pyinfra
loads this file once per host, and any other exception raised here stops the run for every host).

Round trips: one for the facts the plan needs, one for everything the roles compare against (each role's `probes`,
comfyinfra.operations.snapshot; a Windows host's WindowsState); more only for what changes.
"""

from pyinfra import host

from comfyinfra.facts import NvidiaGpus, Platform, UnreadableFact
from comfyinfra.operations.common import refuse
from comfyinfra.operations.snapshot import ask, expect, probe
from comfyinfra.plan import PlanError, make_plan
from comfyinfra.preflight import resolved_tags, spec_for, windows_plan_for
from comfyinfra.windows.spec import WindowsHostSpec
from roles import base, comfyui, container, custom_nodes, host_ops, models, service, windows


def comfyui_host():
    try:
        plan = make_plan(spec_for(host), *ask(probe(Platform), probe(NvidiaGpus)), tags=resolved_tags())
        roles = (base, container, models, host_ops) if plan.service_manager == "compose" else \
            (base, comfyui, custom_nodes, models, service, host_ops)
        expect([p for role in roles for p in role.probes(plan)])
    except (PlanError, UnreadableFact) as error:  # this host only: any other exception would stop every host
        refuse(name="Plan this host", message=f"{host.name}: {error}")
        return
    base.preflight(plan)
    base.base(plan)
    if plan.service_manager == "compose":  # ComfyUI in a container: built from the plan, run by compose
        models.models(plan)
        container.container(plan)
        host_ops.host_ops(plan)
        return
    venv, changed = comfyui.comfyui(plan)
    changed += custom_nodes.custom_nodes(plan, venv)
    comfyui.torch_intact(plan, installs=tuple(changed))  # every requirements install is among these
    changed += models.models(plan)
    service.service(plan, changed)
    host_ops.host_ops(plan)


# pyinfra runs operations in the order of their lines here, across hosts: the Windows hosts' come after every
# ComfyUI host's, so the end-to-end check through IIS finds the fronted ComfyUI deployed and (re)started.
if not isinstance(spec_for(host), WindowsHostSpec):
    comfyui_host()
else:
    windows.windows(windows_plan_for(host))  # planned by the preflight already: its errors stopped the run there
