"""Host kinds and the spec that validates each: Linux-like hosts (wsl, runpod, dgx, linux) run ComfyUI and are
described by comfyinfra.spec.HostSpec; a Windows host fronts a WSL host and is described by
comfyinfra.windows.spec.WindowsHostSpec. `host_kind` (set by group_data/<kind>.py) decides which."""

from __future__ import annotations

from typing import Any, Union

from comfyinfra.spec import SPEC_FIELDS, HostSpec
from comfyinfra.windows.spec import WINDOWS_SPEC_FIELDS, WindowsHostSpec

AnySpec = Union[HostSpec, WindowsHostSpec]
KIND_GROUPS = "wsl, runpod, dgx, linux or windows"


def spec_class(data: dict[str, Any]) -> type[AnySpec]:
    return WindowsHostSpec if data.get("host_kind") == "windows" else HostSpec


def spec_fields(data: dict[str, Any]) -> frozenset[str]:
    return WINDOWS_SPEC_FIELDS if spec_class(data) is WindowsHostSpec else SPEC_FIELDS


def parse_spec(data: dict[str, Any]) -> AnySpec:
    """A spec from already validated data (e.g. exported as JSON)."""
    return spec_class(data).model_validate(data)
