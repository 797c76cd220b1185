"""comfyinfra: `pyinfra inventory/<fleet>.py deploy.py` provisions every host in the inventory.

Data flows one way: inventory + group_data -> validated HostSpec (comfyinfra.spec, checked for all
hosts before any connection by config.py) -> HostPlan from the host's facts (comfyinfra.plan) ->
roles -> operations. A host whose plan can't be made, or whose facts can't be read, fails alone, with the
reason, before it has any operation (pyinfra loads this file once per host, and any other exception
raised here stops the run for every host).

Round trips: one for the facts the plan needs, one for everything the roles compare against (each
role's `probes`, comfyinfra.operations.snapshot); more only for what changes.
"""

from pyinfra import host

from comfyinfra.facts import NvidiaGpus, Platform, UnreadableFact
from comfyinfra.operations.common import refuse
from comfyinfra.operations.snapshot import ask, expect, probe
from comfyinfra.plan import PlanError, make_plan
from comfyinfra.preflight import resolved_tags, spec_for
from roles import base, comfyui, custom_nodes, host_ops, models, service

try:
    plan = make_plan(spec_for(host), *ask(probe(Platform), probe(NvidiaGpus)), tags=resolved_tags())
    expect([p for role in (base, comfyui, custom_nodes, models, service, host_ops) for p in role.probes(plan)])
except (PlanError, UnreadableFact) as error:  # this host only: any other exception here would stop every host
    refuse(name="Plan this host", message=f"{host.name}: {error}")
else:
    base.preflight(plan)
    base.base(plan)
    venv, changed = comfyui.comfyui(plan)
    changed += custom_nodes.custom_nodes(plan, venv)
    comfyui.torch_intact(plan, installs=tuple(changed))  # every requirements install is among these
    changed += models.models(plan)
    service.service(plan, changed)
    host_ops.host_ops(plan)
