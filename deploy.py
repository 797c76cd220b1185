"""comfyinfra: `pyinfra inventory/<fleet>.py deploy.py` provisions every host in the inventory.

Data flows one way: inventory + group_data -> validated HostSpec (comfyinfra.spec, checked for all
hosts before any connection by config.py) -> HostPlan from the host's facts (comfyinfra.plan) ->
roles -> operations. A host whose plan can't be made fails alone, with the reason.
"""

from pyinfra import host

from comfyinfra.facts import NvidiaGpus, Platform
from comfyinfra.operations.common import refuse
from comfyinfra.plan import PlanError, make_plan
from comfyinfra.preflight import spec_for
from roles.base import base, preflight
from roles.comfyui import comfyui
from roles.custom_nodes import custom_nodes
from roles.host_ops import host_ops
from roles.models import models
from roles.service import service

try:
    plan = make_plan(spec_for(host), host.get_fact(Platform), host.get_fact(NvidiaGpus))
except PlanError as error:
    refuse(name="Plan this host", message=f"{host.name}: {error}")
else:
    preflight(plan)
    base(plan)
    venv, changed = comfyui(plan)
    changed += custom_nodes(plan, venv)
    changed += models(plan)
    service(plan, changed)
    host_ops(plan)
