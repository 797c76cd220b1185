"""Validate ComfyUI API-format workflows against a server's /object_info, offline.

A workflow (API format, what POST /prompt takes under "prompt") is ``{node_id: {"class_type": str,
"inputs": {name: literal | [source_node_id, output_index]}}}``. ``validate()`` checks it against the
``GET /object_info`` body of the server that will run it, catching what ComfyUI 0.3.64 would reject
with a 400 (unknown node class, missing required input, value out of range, model file not in the
list, dangling link, no output node) before anything is queued.

The core (``validate``, ``with_seed``) is pure: no I/O. ``load`` reads a file, and the CLI

    python -m comfyinfra.workflows validate WORKFLOW.json --server http://127.0.0.1:8188
    python -m comfyinfra.workflows validate WORKFLOW.json --object-info object_info.json

prints one line per problem and exits 0 (valid), 1 (problems found) or 2 (usage, file or connection error).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Problem", "validate", "load", "load_object_info", "fetch_object_info", "with_seed", "main"]

SEED_INPUTS = ("seed", "noise_seed")
SEED_MAX = 0xFFFFFFFFFFFFFFFF  # KSampler's seed range in ComfyUI: 0 .. 2**64-1

# Enum inputs whose values are file names in a models folder: a value missing from the list means
# the file is not on the server.
MODEL_FOLDERS = {
    "ckpt_name": "models/checkpoints",
    "vae_name": "models/vae",
    "lora_name": "models/loras",
    "unet_name": "models/diffusion_models",
    "clip_name": "models/text_encoders",
    "clip_name1": "models/text_encoders",
    "clip_name2": "models/text_encoders",
    "control_net_name": "models/controlnet",
    "model_name": "models/upscale_models",
    "style_model_name": "models/style_models",
}


@dataclass(frozen=True)
class Problem:
    node_id: str | None
    class_type: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = []
        if self.node_id is not None:
            where.append(f"node {self.node_id}" + (f" ({self.class_type})" if self.class_type else ""))
        if self.field is not None:
            where.append(f"input '{self.field}'")
        prefix = ", ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message


# -- input specs ---------------------------------------------------------------------------------

def _spec_type_and_options(spec: Any) -> tuple[Any, dict]:
    """(type, options) of an input spec: ``["INT", {...}]``, ``[[values...], {...}]``,
    ``["COMBO", {"options": [...]}]`` or a bare ``"PROMPT"`` (hidden inputs)."""
    if isinstance(spec, (list, tuple)):
        if not spec:
            return "*", {}
        options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
        return spec[0], options
    return spec, {}


def _enum_values(spec_type: Any, options: dict) -> list | None:
    """Allowed values of an enum input, or None when the input is not an enum."""
    if isinstance(spec_type, (list, tuple)):
        return list(spec_type)
    if spec_type == "COMBO":
        values = options.get("options", [])
        return list(values) if isinstance(values, (list, tuple)) else []
    return None


def _type_label(spec_type: Any) -> str:
    if isinstance(spec_type, (list, tuple)):
        return "COMBO"
    return str(spec_type)


def _types_match(received: Any, expected: Any) -> bool:
    """ComfyUI's non-strict rule: equal, "*" on either side, or comma-separated unions that intersect.
    Enums (a list of values or "COMBO") accept a COMBO output (a list of values or "COMBO")."""
    if received == "*" or expected == "*":
        return True
    received_is_enum = isinstance(received, (list, tuple)) or received == "COMBO"
    expected_is_enum = isinstance(expected, (list, tuple)) or expected == "COMBO"
    if received_is_enum or expected_is_enum:
        return received_is_enum and expected_is_enum
    if not isinstance(received, str) or not isinstance(expected, str):
        return False
    if received == expected:
        return True
    received_set = {t.strip() for t in received.split(",")}
    expected_set = {t.strip() for t in expected.split(",")}
    return "*" in received_set or "*" in expected_set or bool(received_set & expected_set)


def _is_link(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def _preview(values: list, limit: int = 8) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    more = f", ... ({len(values) - limit} more)" if len(values) > limit else ""
    return f"[{shown}{more}]"


def _class_info(object_info: dict, class_type: Any) -> dict | None:
    if not isinstance(class_type, str):
        return None
    info = object_info.get(class_type)
    return info if isinstance(info, dict) else None


def _input_sections(info: dict) -> tuple[dict, dict, dict]:
    inputs = info.get("input") or {}
    return tuple((inputs.get(k) or {}) for k in ("required", "optional", "hidden"))  # type: ignore[return-value]


# -- checks --------------------------------------------------------------------------------------

def _check_literal(node_id: str, cls: str, name: str, value: Any, spec_type: Any, options: dict) -> list[Problem]:
    def problem(message: str) -> list[Problem]:
        return [Problem(node_id, cls, name, message)]

    values = _enum_values(spec_type, options)
    if values is not None:
        if value in values:
            return []
        folder = MODEL_FOLDERS.get(name)
        if folder:
            hint = (f"the file is not on the server: put it in ComfyUI's {folder} (or a path mapped there) "
                    f"or use one of {_preview(values)}") if values else \
                f"the server has no files in {folder}: put {value!r} there"
        elif name == "image":
            hint = (f"upload it to the server's input folder (POST /upload/image) or use one of {_preview(values)}"
                    if values else "the server's input folder has no images: upload it first (POST /upload/image)")
        else:
            hint = f"use one of {_preview(values)}"
        return problem(f"{value!r} is not an allowed value; {hint}")

    if spec_type in ("INT", "FLOAT"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return problem(f"expects a number ({spec_type}), got {type(value).__name__} {value!r}")
        if spec_type == "INT" and isinstance(value, float) and not value.is_integer():
            return problem(f"expects an integer, got {value!r}")
        low, high = options.get("min"), options.get("max")
        if isinstance(low, (int, float)) and value < low:
            return problem(f"value {value!r} is smaller than the minimum {low}")
        if isinstance(high, (int, float)) and value > high:
            return problem(f"value {value!r} is bigger than the maximum {high}")
        return []
    if spec_type == "STRING":
        if not isinstance(value, str):
            return problem(f"expects a string, got {type(value).__name__} {value!r}")
        return []
    if spec_type == "BOOLEAN":
        if not isinstance(value, bool):
            return problem(f"expects true or false, got {value!r}")
        return []
    if isinstance(spec_type, str) and spec_type != "*" and spec_type.isupper() and "," not in spec_type:
        # MODEL, IMAGE, LATENT, ...: only another node's output can provide these.
        return problem(f"expects a link [node_id, output_index] to a {spec_type} output, got the literal {value!r}")
    return []


def _check_link(workflow: dict, object_info: dict, node_id: str, cls: str, name: str, link: Any,
                spec_type: Any) -> list[Problem]:
    def problem(message: str) -> list[Problem]:
        return [Problem(node_id, cls, name, message)]

    if (len(link) != 2 or not isinstance(link[0], (str, int)) or isinstance(link[0], bool)
            or not isinstance(link[1], int) or isinstance(link[1], bool)):
        return problem(f"a link must be [node_id, output_index], got {list(link)!r}")
    source_id, index = str(link[0]), link[1]
    source = workflow.get(source_id)
    if not isinstance(source, dict):
        return problem(f"links to node {source_id}, which is not in the workflow")
    source_cls = source.get("class_type")
    source_info = _class_info(object_info, source_cls)
    if source_info is None:
        return []  # reported on the source node as an unknown class
    outputs = source_info.get("output") or []
    if not 0 <= index < len(outputs):
        return problem(f"links to output {index} of node {source_id} ({source_cls}), "
                       f"which has {len(outputs)} output(s) (indexes 0..{len(outputs) - 1})" if outputs else
                       f"links to output {index} of node {source_id} ({source_cls}), which has no outputs")
    received = outputs[index]
    if spec_type is not None and not _types_match(received, spec_type):
        return problem(f"expects {_type_label(spec_type)} but output {index} of node {source_id} ({source_cls}) "
                       f"is {_type_label(received)}")
    return []


def validate(workflow: dict, object_info: dict) -> list[Problem]:
    """Every problem found in an API-format workflow, checked against a /object_info body."""
    if not isinstance(workflow, dict):
        return [Problem(None, None, None, "the workflow must be a JSON object {node_id: {class_type, inputs}}")]
    if not workflow:
        return [Problem(None, None, None, "the workflow has no nodes")]
    problems: list[Problem] = []
    has_output = False
    for node_id, node in workflow.items():
        node_id = str(node_id)
        if not isinstance(node, dict) or "class_type" not in node:
            problems.append(Problem(node_id, None, None, "is not a node: it needs a 'class_type' and 'inputs'"))
            continue
        cls = node["class_type"]
        inputs = node.get("inputs", {})
        if not isinstance(inputs, dict):
            problems.append(Problem(node_id, cls, None, "'inputs' must be an object {name: value or link}"))
            continue
        info = _class_info(object_info, cls)
        if info is None:
            problems.append(Problem(node_id, cls, None,
                                    f"node class {cls!r} does not exist on the server: install the custom node "
                                    f"that provides it or fix the class name"))
            continue
        if info.get("output_node") is True:
            has_output = True
        required, optional, hidden = _input_sections(info)
        for name in required:
            if name not in inputs:
                problems.append(Problem(node_id, cls, name, "required input is missing"))
        for name, value in inputs.items():
            if name in required:
                spec = required[name]
            elif name in optional:
                spec = optional[name]
            elif name in hidden:
                continue  # filled in by the server
            else:
                known = sorted([*required, *optional])
                problems.append(Problem(node_id, cls, name,
                                        f"{cls} has no such input (known inputs: {', '.join(known) or 'none'})"))
                continue
            spec_type, options = _spec_type_and_options(spec)
            if _is_link(value):
                problems.extend(_check_link(workflow, object_info, node_id, cls, name, value, spec_type))
            else:
                problems.extend(_check_literal(node_id, cls, name, value, spec_type, options))
    if not has_output:
        problems.append(Problem(None, None, None,
                                "the workflow has no output node (such as SaveImage or PreviewImage): "
                                "ComfyUI rejects it with 'Prompt has no outputs'"))
    return problems


# -- helpers -------------------------------------------------------------------------------------

def with_seed(workflow: dict, seed: int) -> dict:
    """A copy of the workflow with every literal "seed"/"noise_seed" input set to ``seed``.
    Seeds given by a link are left alone."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise ValueError(f"seed must be an integer in 0..{SEED_MAX}, got {seed!r}")
    result = copy.deepcopy(workflow)
    for node in result.values():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if not isinstance(inputs, dict):
            continue
        for name in SEED_INPUTS:
            if name in inputs and not _is_link(inputs[name]):
                inputs[name] = seed
    return result


def load(path: str | Path) -> dict:
    """Read an API-format workflow. A POST /prompt body ({"prompt": {...}}) is unwrapped; the UI's
    save format (with "nodes" and "links" lists) is refused with a hint."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict) and "class_type" not in data["prompt"]:
        data = data["prompt"]
    if isinstance(data, dict) and isinstance(data.get("nodes"), list) and "links" in data:
        raise ValueError(f"{path} is a UI workflow (nodes/links); export it with 'Export (API)' instead")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a workflow must be a JSON object {{node_id: {{class_type, inputs}}}}")
    return data


def load_object_info(path: str | Path) -> dict:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: /object_info must be a JSON object keyed by node class")
    return data


def fetch_object_info(server: str, timeout: float = 30) -> dict:
    import requests

    url = server.rstrip("/") + "/object_info"
    response = requests.get(url, timeout=timeout)
    response.raise_for_status()
    data = response.json()
    if not isinstance(data, dict):
        raise ValueError(f"{url} did not return a JSON object")
    return data


# -- CLI -----------------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m comfyinfra.workflows",
                                     description="Check ComfyUI API-format workflows against /object_info.")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("validate", help="validate a workflow; exit 0 valid, 1 problems, 2 errors")
    check.add_argument("workflow", help="API-format workflow JSON file")
    source = check.add_mutually_exclusive_group(required=True)
    source.add_argument("--server", help="ComfyUI base URL, e.g. http://127.0.0.1:8188 (GET /object_info)")
    source.add_argument("--object-info", help="a saved GET /object_info body")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        workflow = load(args.workflow)
    except (OSError, ValueError) as exc:
        print(f"error: cannot read workflow {args.workflow}: {exc}", file=sys.stderr)
        return 2
    if args.object_info:
        try:
            object_info = load_object_info(args.object_info)
        except (OSError, ValueError) as exc:
            print(f"error: cannot read object info {args.object_info}: {exc}", file=sys.stderr)
            return 2
    else:
        import requests

        try:
            object_info = fetch_object_info(args.server)
        except (requests.RequestException, ValueError) as exc:
            print(f"error: cannot get {args.server.rstrip('/')}/object_info: {exc}", file=sys.stderr)
            return 2
    problems = validate(workflow, object_info)
    for problem in problems:
        print(f"{args.workflow}: {problem}")
    if not problems:
        print(f"{args.workflow}: OK ({len(workflow)} nodes)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
