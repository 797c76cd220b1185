"""Validate every host's merged inventory data: one message per problem naming the inventory file,
the host, the field, where the value was set and what is allowed.

Pure validation over a loaded pyinfra inventory: imports pyinfra's API but never `pyinfra_cli`
(whose import monkey-patches threading and sockets with gevent), so the verify side (smoke suite,
load test) can use it too. `comfyinfra.preflight` wires it into the CLI.
"""

from __future__ import annotations

import ast
import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pyinfra.api.arguments import all_global_arguments
from pyinfra.api.connectors import get_all_connectors

from comfyinfra.kinds import KIND_GROUPS, AnySpec, spec_class, spec_fields
from comfyinfra.plan import PlanError, check_private_tmp, make_paths, plan_without_host
from comfyinfra.spec import SPEC_FIELDS, HostKind, HostSpec
from comfyinfra.torch_matrix import Gpu, TorchChoiceError, choose_torch
from comfyinfra.windows.plan import FrontedHostError, make_windows_plan
from comfyinfra.windows.spec import WindowsHostSpec

# A bearer token as it can go into an Authorization header: visible ASCII, no space (RFC 6750's b64token is a
# subset). The host helper (comfyinfra/host_helpers/model_sync.py, stdlib only) checks the same again.
BEARER_TOKEN = re.compile(r"[\x21-\x7e]+")

# pyinfra's own data keys (connector settings, global-argument defaults) pass through untouched.
PYINFRA_KEYS = frozenset(
    [name for name, _ in all_global_arguments()]
    + [key for connector in get_all_connectors().values() for key in getattr(connector, "data_meta", {})]
)


FLEET_FILE = "group_data/all.py"


class InventoryError(Exception):
    """The inventory is invalid; the message lists every problem."""


@dataclass(frozen=True)
class Problem:
    host: str
    field: str
    source: str
    message: str

    def __str__(self) -> str:
        where = f" (set in {self.source})" if self.source else ""
        return f"host {self.host}, field {self.field}{where}: {self.message}"


def data_layers(inventory, host, inventory_file: str) -> list[tuple[str, dict[str, Any]]]:
    """pyinfra's data waterfall for one host, highest precedence first, each with a readable source."""
    layers = [("--data", dict(inventory.get_override_data() or {}))]
    layers.append((inventory_file, dict(inventory.get_host_data(host.name))))
    for group in reversed(host.groups):  # the last group a host is in wins (pyinfra get_groups_data)
        group_file = Path("group_data", f"{group}.py")
        in_file = _assigned_names(group_file)
        data = dict(inventory.get_group_data(group))
        layers.append((str(group_file), {k: v for k, v in data.items() if k in in_file}))
        layers.append((f"{inventory_file} group {group}", {k: v for k, v in data.items() if k not in in_file}))
    layers.append((FLEET_FILE, dict(inventory.get_data())))
    return layers


def _assigned_names(path: Path) -> set[str]:
    """Top-level names a group_data file assigns (read with ast: the file is not executed again)."""
    if not path.exists():
        return set()
    names = set()
    for node in ast.parse(path.read_text()).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def merged_data(layers: list[tuple[str, dict[str, Any]]]) -> tuple[dict[str, Any], dict[str, str]]:
    data: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for source, layer in reversed(layers):
        for key, value in layer.items():
            data[key] = value
            sources[key] = source
    return data, sources


def split_data(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Our spec's keys (of the spec of the host's kind), and the names of keys that are neither ours nor pyinfra's."""
    ours, unknown = {}, []
    fields = spec_fields(data)
    for key, value in data.items():
        if key in fields:
            ours[key] = value
        elif key in PYINFRA_KEYS or (key.startswith("_") and callable(value)):
            continue  # pyinfra settings, and private helper functions defined in group_data files
        else:
            unknown.append(key)
    return ours, unknown


def _field_path(loc: tuple) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def check_host(host_name: str, data: dict[str, Any], sources: dict[str, str],
               require_secrets: bool = True) -> tuple[AnySpec | None, list[Problem]]:
    ours, unknown = split_data(data)
    fields, spec_cls = spec_fields(data), spec_class(data)
    problems = []
    if spec_cls is WindowsHostSpec:  # the fleet's ComfyUI values (group_data/all.py) are for the hosts running it
        unknown = [key for key in unknown if not (key in SPEC_FIELDS and sources.get(key) == FLEET_FILE)]
    for key in unknown:
        if spec_cls is WindowsHostSpec and key in SPEC_FIELDS:
            problems.append(Problem(host_name, key, sources.get(key, ""), "a ComfyUI setting, and a Windows host runs "
                                    f"no ComfyUI of its own; set it on the WSL host it fronts ({data.get('fronts')})"))
            continue
        close = [f for f in sorted(fields) if key.endswith("_" + f) or key.startswith(f + "_")]
        close = close or difflib.get_close_matches(key, sorted(fields | PYINFRA_KEYS), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        problems.append(
            Problem(host_name, key, sources.get(key, ""), f"unknown field; {hint}allowed: {', '.join(sorted(fields))}")
        )
    try:
        spec = spec_cls.model_validate(ours)
    except ValidationError as error:
        spec = None
        for item in error.errors():
            field = _field_path(item["loc"]) or "(host)"
            top = str(item["loc"][0]) if item["loc"] else ""
            message = item["msg"].removeprefix("Value error, ")
            if item["type"] == "missing" and top == "host_kind":
                message = f"required but not set; put the host in one of the groups {KIND_GROUPS}"
            elif item["type"] == "missing":
                message = "required but not set; set it in group_data/all.py or in the host's inventory entry"
            elif item["type"] == "extra_forbidden":
                message = f"unknown field {item['loc'][-1]!r}"
            elif item["type"] in ("enum", "literal_error"):
                message = f"{item['input']!r} is not allowed; {message.lower()}"
            problems.append(Problem(host_name, field, sources.get(top, ""), message))
    if isinstance(spec, WindowsHostSpec):
        return spec, problems + (_windows_secrets(host_name, spec, sources) if require_secrets else [])
    if spec is not None:
        problems += _declared_gpu_torch(host_name, spec, sources) + _private_tmp(host_name, spec, sources)
    if spec is not None and require_secrets:
        problems += _controller_secrets(host_name, spec, sources)
    return spec, problems


def _declared_gpu_torch(host_name: str, spec: HostSpec, sources: dict[str, str]) -> list[Problem]:
    """A declared GPU with its driver version decides the torch build as on the host (plan.make_plan): refuse now
    when none fits. Without a declared driver version the host's own facts decide, after connecting."""
    declared = spec.gpu
    if declared is None or declared.driver_version is None or spec.cpu_only:
        return []  # cpu_only: the plan forces the cpu build, which always fits
    gpu = Gpu(declared.name, declared.vram_mib, declared.compute_capability, declared.driver_version)
    error = _torch_refusal(spec, gpu)
    if error is None:
        return []
    # The driver is the problem when the same GPU without a driver version would get a build.
    driverless = Gpu(declared.name, declared.vram_mib, declared.compute_capability, None)
    field = "gpu" if _torch_refusal(spec, driverless) else "gpu.driver_version"
    return [Problem(host_name, field, sources.get("gpu", ""), error)]


def _private_tmp(host_name: str, spec: HostSpec, sources: dict[str, str]) -> list[Problem]:
    """A tree under /tmp or /var/tmp can't run under the unit's PrivateTmp: refused now when systemd is declared
    (with service_manager auto the host's facts decide, and the plan refuses it there, before anything is done)."""
    if spec.service_manager != "systemd":
        return []
    try:
        check_private_tmp(spec, make_paths(spec.install_root, spec.models_dir), "systemd")
    except PlanError as error:
        field = str(error).split()[0]
        return [Problem(host_name, field, sources.get(field, ""), str(error))]
    return []


def _torch_refusal(spec: HostSpec, gpu: Gpu) -> str | None:
    arch = spec.platform_arch or ("aarch64" if spec.host_kind is HostKind.dgx else "x86_64")
    try:
        choose_torch(spec.torch, arch, [gpu], windows_driver=spec.host_kind is HostKind.wsl)
    except TorchChoiceError as error:
        return str(error)
    return None


def _controller_secrets(host_name: str, spec: HostSpec, sources: dict[str, str]) -> list[Problem]:
    """Model tokens and service secrets are read from this machine's environment at deploy time: check them now."""
    problems = []
    for name in spec.models:
        env = spec.model_catalog[name].token_env
        if env and not os.environ.get(env):
            problems.append(Problem(host_name, f"model_catalog.{name}.token_env", sources.get("model_catalog", ""),
                                    f"environment variable {env} is not set on the machine running pyinfra; export it "
                                    "(its value goes to the host on stdin, never into files, argv or logs)"))
        elif env and not BEARER_TOKEN.fullmatch(os.environ[env]):  # the value itself is never shown
            problems.append(Problem(host_name, f"model_catalog.{name}.token_env", sources.get("model_catalog", ""),
                                    f"the value of {env} contains a space, a control character (a trailing newline?) "
                                    "or a non-ASCII character, which an HTTP header can't carry; allowed: a bearer "
                                    f"token of printable ASCII without spaces. Export it without them, e.g. "
                                    f"export {env}=\"$(tr -d '[:space:]' < token-file)\""))
    for key, env in spec.service_secrets.items():
        value = os.environ.get(env)
        if not value:
            problems.append(Problem(host_name, f"service_secrets.{key}", sources.get("service_secrets", ""),
                                    f"environment variable {env} is not set on the machine running pyinfra; export it"))
        elif "'" in value or "\n" in value:
            problems.append(Problem(host_name, f"service_secrets.{key}", sources.get("service_secrets", ""),
                                    f"the value of {env} contains a quote or a newline, which an env file can't "
                                    "carry safely"))
    return problems


def _windows_secrets(host_name: str, spec: WindowsHostSpec, sources: dict[str, str]) -> list[Problem]:
    """The WinRM password and the task user's password are read from this machine's environment at deploy time."""
    problems = []
    for field, top, env in (("winrm.password_env", "winrm", spec.winrm.password_env),
                            ("wsl_user_password_env", "wsl_user_password_env", spec.wsl_user_password_env)):
        value = os.environ.get(env)
        if not value:
            problems.append(Problem(host_name, field, sources.get(top, ""), f"environment variable {env} is not set on "
                                    "the machine running pyinfra; export it (the password travels to the host inside "
                                    "the encrypted WinRM session, never in a file, a command line or a log)"))
        elif any(ord(char) < 32 or ord(char) == 127 for char in value):  # the value itself is never shown
            problems.append(Problem(host_name, field, sources.get(top, ""), f"the value of {env} contains a control "
                                    "character (a trailing newline?); export it without"))
        elif any("\ud800" <= char <= "\udfff" for char in value):  # bytes that aren't UTF-8 (PEP 383 surrogates)
            problems.append(Problem(host_name, field, sources.get(top, ""), f"the value of {env} is not UTF-8 text "
                                    "(it would fail halfway through the deploy); export it in a UTF-8 terminal"))
    return problems


def _fronting(host_name: str, spec: WindowsHostSpec, specs: dict[str, AnySpec], names: set[str],
              sources: dict[str, str]) -> list[Problem]:
    """A Windows host's checks that need the WSL host it fronts: that host's plan, made without connecting."""
    where = sources.get("fronts", "")
    if spec.fronts not in names:
        return [Problem(host_name, "fronts", where, f"no host {spec.fronts!r} in this inventory; allowed: the "
                        f"inventory name of a host in the wsl group ({', '.join(sorted(names)) or 'none'})")]
    fronted = specs.get(spec.fronts)
    if fronted is None:
        return []  # the fronted host's own problems are listed
    if not isinstance(fronted, HostSpec) or fronted.host_kind is not HostKind.wsl:
        kind = getattr(fronted.host_kind, "value", fronted.host_kind)
        return [Problem(host_name, "fronts", where, f"{spec.fronts} is a {kind} host; allowed: a host in the wsl "
                        "group (ComfyUI in WSL2 on this Windows box)")]
    try:
        make_windows_plan(host_name, spec, plan_without_host(fronted))
    except FrontedHostError as error:
        return [Problem(host_name, error.field, sources.get(error.field.split(".")[0], ""), str(error))]
    except PlanError as error:
        return [Problem(host_name, "fronts", where, f"{spec.fronts} can't be planned without connecting, which this "
                        f"host's scripts need (its port, its service manager): {error}")]
    return []


def check_inventory(inventory, inventory_file: str, require_secrets: bool = True,
                    targets: set[str] | None = None) -> dict[str, AnySpec]:
    """Validate every host; return host name -> spec, or raise InventoryError listing all problems.

    require_secrets: the deploy needs the model tokens, service secrets and passwords in this machine's environment;
    verifying a fleet (smoke suite, load test) does not. targets: the hosts this run deploys (--limit); the secrets
    of the others are not needed (default: every host).
    """
    specs: dict[str, AnySpec] = {}
    problems, host_sources = [], {}
    if not len(inventory):
        raise InventoryError(f"inventory {inventory_file} has no hosts (groups must be lists of names or (name, data) tuples)")
    for host in inventory:
        data, sources = merged_data(data_layers(inventory, host, inventory_file))
        needs_secrets = require_secrets and (targets is None or host.name in targets)
        spec, host_problems = check_host(host.name, data, sources, needs_secrets)
        problems.extend(host_problems)
        host_sources[host.name] = sources
        if spec is not None:
            specs[host.name] = spec
    names = {host.name for host in inventory}
    for name, spec in specs.items():
        if isinstance(spec, WindowsHostSpec):
            problems += _fronting(name, spec, specs, names, host_sources[name])
    if problems:
        lines = "\n".join(f"  - {problem}" for problem in problems)
        raise InventoryError(
            f"inventory {inventory_file} is invalid ({len(problems)} problem(s)); nothing was touched:\n{lines}"
        )
    return specs
