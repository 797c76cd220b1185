"""Every string field of the spec, fed adversarial text (hypothesis): each value is either refused with the usual
message (host, field, what is allowed) or every artifact the host gets renders and reads back, by its program's
rules, with the value intact as one argument (issue 10 §2: values that become code).

Readers (tests/support/artifact_parsers.py): supervisord's own parser; pip's (configparser.RawConfigParser);
yaml.safe_load; systemd units by systemd's documented quoting/specifier rules (no offline tool prints a parsed
ExecStart=), then `systemd-analyze verify` over all accepted units at once; crontab lines by cron's '%' rule
(installing them would touch this machine's crontab); logrotate's block header by shell-like word splitting.
"""

from __future__ import annotations

import configparser
import json
import enum
import re
import shlex
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from comfyinfra.artifacts import WSL_CONF, host_artifacts
from comfyinfra.container.artifacts import container_artifacts
from comfyinfra.container.plan import make_container_plan
from comfyinfra.facts import GpuProbe, HostPlatform
from comfyinfra.plan import PlanError, make_plan
from comfyinfra.spec import HostSpec
from comfyinfra.torch_matrix import Gpu
from comfyinfra.validate import check_host
from roles.service import log_command
from tests.support.artifact_parsers import (
    cron_command,
    read_unit,
    rendered,
    supervisor_programs,
    unit_environment,
    unit_exec,
    unit_paths,
    unit_specifiers,
)

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
SYSTEMD = HostPlatform(arch="x86_64", wsl=False, systemd=True, mem_total_mib=64000)
CONTAINER = HostPlatform(arch="x86_64", wsl=False, systemd=False, mem_total_mib=64000)
RTX4090 = GpuProbe(gpus=(Gpu("NVIDIA GeForce RTX 4090", 24564, "8.9", "570.26", index=0, uuid="GPU-4090-aaaa"),),
                   nvidia_smi="/usr/bin/nvidia-smi")
KEY = "<key>"  # a path step naming a dict's key rather than a value

# A host using every knob that reaches an artifact: a node, models, pip sources, secrets, flags, cleanup, cron.
BASE: dict[str, Any] = {
    "host_kind": "linux", "comfyui_repo": "https://github.com/comfyanonymous/ComfyUI.git", "comfyui_allow_branch": True,
    "comfyui_ref": "v0.3.64",
    "torch": {"torch": "2.9.1", "torchvision": "0.24.1", "torchaudio": "2.9.1", "variant": "cu128"},
    "custom_nodes": [{"name": "demo", "repo": "https://github.com/example/demo.git", "ref": "v1.0.0",
                      "allow_branch": True, "node_classes": ["DemoNode"]}],
    "extra_pip_packages": ["requests==2.32.3"],
    "pip_sources": {"torch_index_url": "https://download.pytorch.org/whl/cu128", "index_url": "https://pypi.org/simple",
                    "extra_index_urls": ["https://mirror.example/simple"], "find_links": ["/srv/wheels"]},
    "install_root": "/srv/comfyui", "service_user": "comfy", "python": "/usr/bin/python3", "listen": "127.0.0.1",
    "model_catalog": {"sdxl": {"url": "https://huggingface.co/o/r/resolve/0123abcd/sd_xl.safetensors",
                               "sha256": "a" * 64, "folder": "checkpoints", "filename": "sd_xl.safetensors",
                               "token_env": "HF_TOKEN", "license": "openrail"}},
    "models": ["sdxl"], "models_dir": "/srv/models", "gpu_select": "GPU-4090",
    "cleanup": [{"directory": "output", "older_than_minutes": 60, "schedule": "*/15 * * * *"}],
    "smoke_workflows": ["sdxl_txt2img.json"], "smoke_generate": "sdxl_txt2img.json",
    "service_secrets": {"HF_TOKEN": "HF_TOKEN"}, "extra_args": ["--cache-lru", "10"], "run_cron_daemon": True,
    "service_manager": "auto", "vram_mode": "default", "preview_method": "none",
}
DECLARED_GPU = {"gpu": {"name": "NVIDIA GeForce RTX 4090", "vram_mib": 24564, "compute_capability": "8.9",
                        "driver_version": "570.26"}}

# (path of a string in the spec, a valid value there, what else the host needs for that value to matter)
FIELDS: list[tuple[tuple, str, dict]] = [
    (("host_kind",), "linux", {}),
    (("comfyui_repo",), "https://github.com/comfyanonymous/ComfyUI.git", {}),
    (("comfyui_ref",), "v0.3.64", {}),
    (("torch", "torch"), "2.9.1", {}),
    (("torch", "torchvision"), "0.24.1", {}),
    (("torch", "torchaudio"), "2.9.1", {}),
    (("torch", "variant"), "cu128", {}),
    (("custom_nodes", 0, "name"), "demo", {}),
    (("custom_nodes", 0, "repo"), "https://github.com/example/demo.git", {}),
    (("custom_nodes", 0, "ref"), "v1.0.0", {}),
    (("custom_nodes", 0, "node_classes", 0), "DemoNode", {}),
    (("extra_pip_packages", 0), "requests==2.32.3", {}),
    (("pip_sources", "torch_index_url"), "https://download.pytorch.org/whl/cu128", {}),
    (("pip_sources", "index_url"), "https://pypi.org/simple", {}),
    (("pip_sources", "extra_index_urls", 0), "https://mirror.example/simple", {}),
    (("pip_sources", "find_links", 0), "/srv/wheels", {}),
    (("install_root",), "/srv/comfyui", {}),
    (("service_user",), "comfy", {}),
    (("python",), "/usr/bin/python3", {}),
    (("listen",), "127.0.0.1", {}),
    (("service_manager",), "auto", {}),
    (("model_catalog", KEY), "sdxl", {}),
    (("model_catalog", "sdxl", "url"), "https://huggingface.co/o/r/resolve/0123abcd/sd_xl.safetensors", {}),
    (("model_catalog", "sdxl", "sha256"), "a" * 64, {}),
    (("model_catalog", "sdxl", "folder"), "checkpoints", {}),
    (("model_catalog", "sdxl", "filename"), "sd_xl.safetensors", {}),
    (("model_catalog", "sdxl", "token_env"), "HF_TOKEN", {}),
    (("model_catalog", "sdxl", "license"), "openrail", {}),
    (("models", 0), "sdxl", {}),
    (("models_dir",), "/srv/models", {}),
    (("gpu", "name"), "NVIDIA GeForce RTX 4090", DECLARED_GPU),
    (("gpu", "compute_capability"), "8.9", DECLARED_GPU),
    (("gpu", "driver_version"), "570.26", DECLARED_GPU),
    (("platform_arch",), "x86_64", {}),
    (("platform_init",), "systemd", {}),
    (("wsl_default_user",), "fred", {"host_kind": "wsl"}),
    (("container", "base"), "cuda", {"container": {"base_image": "nvidia/cuda:12.8.1-runtime-ubuntu24.04"}}),
    (("container", "base_image"), "nvcr.io/nvidia/pytorch:25.09-py3", {"container": {"base": "ngc"}}),
    (("container", "engine"), "podman", {"container": {"base": "python", "base_image": "localhost/base:1"}}),
    (("container", "image"), "comfyinfra/comfyui", {"container": {"base": "python", "base_image": "localhost/base:1"}}),
    (("container", "restart"), "always", {"container": {"base": "python", "base_image": "localhost/base:1"}}),
    (("vram_mode",), "default", {}),
    (("preview_method",), "none", {}),
    (("gpu_select",), "GPU-4090", {}),
    (("cleanup", 0, "directory"), "output", {}),
    (("cleanup", 0, "schedule"), "*/15 * * * *", {}),
    (("smoke_workflows", 0), "sdxl_txt2img.json", {}),
    (("smoke_generate",), "sdxl_txt2img.json", {}),
    (("service_secrets", KEY), "HF_TOKEN", {}),
    (("service_secrets", "HF_TOKEN"), "HF_TOKEN", {}),
    (("extra_args", 0), "--cache-lru", {}),
    (("extra_args", 1), "10", {}),
]

# What each format reads specially, what a shell reads, and what a line break is made of.
SNIPPETS = ("\n", "\r", "\t", "\x00", "\x1b", "\x7f", "\x85", "\u2028", " ", '"', "'", "%", "%n", "%%", "$", "$HOME",
            "${HOME}", "$(id)", "`id`", "#", " #x", ";", " ;x", ",", "\\", "-", "--", "=", "*", "..", "/", "//", "~",
            "é", "\u202e", "\ufeff", "😀", "[program:pwn]", "\nExecStartPre=+/bin/sh", ",LD_PRELOAD=/tmp/x.so",
            '",LD_PRELOAD="/tmp/x.so', "+", "_", ".", "@", ":", "-x")


def _edited(valid: str, edits: list[tuple[int, str]]) -> str:
    for position, text in edits:
        cut = position % (len(valid) + 1)
        valid = valid[:cut] + text + valid[cut:]
    return valid


# Characters most fields accept: values with these get through and are followed into every artifact.
SAFE_PIECES = ("-", "_", ".", "+", "/", "@", ":", ",", "=", "*", "0", "x", "-x", "/x")


def adversarial(valid: str) -> st.SearchStrategy[str]:
    """The valid value with snippets put in anywhere (hostile ones, or ones most fields accept), a leading '-',
    or any short text at all."""
    hostile = st.sampled_from(SNIPPETS) | st.text(min_size=1, max_size=3)
    return st.one_of(
        st.builds(_edited, st.just(valid), st.lists(st.tuples(st.integers(0, 80), hostile), min_size=1, max_size=3)),
        st.builds(_edited, st.just(valid), st.lists(st.tuples(st.integers(0, 80), st.sampled_from(SAFE_PIECES)),
                                                    min_size=1, max_size=2)),
        st.sampled_from(SNIPPETS).map(lambda snippet: "-" + valid + snippet),
        st.text(max_size=24),
    )


def host_data(path: tuple, value: str, extra: dict) -> dict:
    data = yaml.safe_load(yaml.safe_dump({**BASE, **extra}))  # a deep copy
    *parents, last = path
    target = data
    for step in parents:
        target = target[step]
    if last == KEY:  # a dict key: the entry moves to the new name (and models follow the catalog's)
        target[value] = target.pop(next(iter(target)))
        if parents == ["model_catalog"]:
            data["models"] = [value]
    else:
        target[last] = value
    return data


def spec_or_refusal(data: dict) -> HostSpec | None:
    """The spec, or None when refused the usual way: problems naming the host and field, one line each."""
    spec, problems = check_host("h1", data, {}, require_secrets=False)
    for problem in problems:
        text = str(problem)
        assert text.startswith("host h1, field ") and problem.message, text
        assert "\n" not in text and "\r" not in text, text  # shown with repr(), never raw
    return spec if not problems else None


def template_keys(name: str) -> Counter:
    """How often each Key= line appears in a unit template: a rendering may not have more (no injected setting)."""
    return Counter(match[1] for match in re.finditer(r"(?m)^([A-Za-z]+)=", (TEMPLATES / name).read_text()))


def render(name: str, plan) -> str:
    return rendered(plan, name)


def check_unit_settings(text: str, template: str, expected: dict[str, list], environment: int = 0) -> None:
    settings_ = read_unit(text)
    allowed = template_keys(template) + Counter({"Environment": environment})
    counted = Counter(key for _, key, _ in settings_)
    assert counted <= allowed, f"settings not in {template}: {counted - allowed}"
    for key, want in expected.items():
        got = [READERS.get(key, unit_specifiers)(value) for _, k, value in settings_ if k == key]
        assert got == want, f"{key}: {got!r} != {want!r}"


def one_assignment(value: str) -> tuple[str, str]:
    (pair,) = unit_environment(value)  # one variable per Environment= line, as rendered
    return pair


READERS = {"ExecStart": unit_exec, "ReadWritePaths": unit_paths, "ReadOnlyPaths": unit_paths,
           "Environment": one_assignment}


def systemd_artifacts(plan) -> list[str]:
    unit = render("comfyui.service.j2", plan)
    expected = {"ExecStart": [shlex.split(plan.command_line)], "Environment": list(plan.env),
                "ReadWritePaths": [list(plan.writable_paths)], "WorkingDirectory": [plan.paths.app],
                "User": [plan.spec.service_user], "EnvironmentFile": [f"-{plan.paths.secrets_env}"],
                "Description": [f"ComfyUI {plan.comfyui.label} on {plan.spec.listen}:{plan.spec.port}"]}
    if hasattr(plan.paths, "read_only") and "ReadOnlyPaths=" in unit:
        expected["ReadOnlyPaths"] = [list(plan.paths.read_only())]
    check_unit_settings(unit, "comfyui.service.j2", expected, environment=len(plan.env))
    units = [unit]
    if plan.gpu_monitor:
        monitor = render("gpu-monitor.service.j2", plan)
        check_unit_settings(monitor, "gpu-monitor.service.j2", {
            "ExecStart": [[plan.spec.python, plan.paths.gpu_monitor_helper, "once", "--dir", plan.paths.gpu_monitor_dir,
                           "--retention-days", str(plan.spec.gpu_monitor_retention_days)]],
            "ReadWritePaths": [[plan.paths.gpu_monitor_dir]], "User": [plan.spec.service_user]})
        units.append(monitor)
    return units


def supervisor_artifacts(plan) -> None:
    programs = supervisor_programs(render("supervisor-comfyui.conf.j2", plan),
                                   render("supervisor-extras.conf.j2", plan))
    assert set(programs) == {"comfyui", "comfyui-cron", *(("comfyui-gpu-monitor",) if plan.gpu_monitor else ())}
    comfyui = programs["comfyui"]
    assert comfyui.command == plan.supervisor_command
    if not plan.spec.service_secrets:
        assert shlex.split(comfyui.command) == shlex.split(plan.command_line)
    assert comfyui.environment == dict(plan.env)
    assert (comfyui.directory, comfyui.stdout_logfile) == (plan.paths.app, f"{plan.paths.logs}/comfyui.log")
    if plan.gpu_monitor:
        assert shlex.split(programs["comfyui-gpu-monitor"].command) == [
            plan.spec.python, plan.paths.gpu_monitor_helper, "run", "--dir", plan.paths.gpu_monitor_dir, "--interval",
            str(plan.spec.gpu_monitor_interval_s), "--retention-days", str(plan.spec.gpu_monitor_retention_days)]
    assert shlex.split(log_command(plan)) == ["tail", "-n", "30", f"{plan.paths.logs}/comfyui.log"]


def common_artifacts(plan) -> None:
    pip_conf = configparser.RawConfigParser()  # as pip reads it (pip/_internal/configuration.py)
    pip_conf.read_string(render("pip.conf.j2", plan))
    assert pip_conf.sections() == ["global"] and dict(pip_conf["global"]) == dict(plan.pip_config)
    sources = plan.spec.pip_sources
    if sources.find_links:  # pip splits list options on whitespace
        assert pip_conf["global"]["find-links"].split() == list(sources.find_links)
    if sources.extra_index_urls:
        assert pip_conf["global"]["extra-index-url"].split() == list(sources.extra_index_urls)

    paths_yaml = yaml.safe_load(render("extra_model_paths.yaml.j2", plan))
    assert paths_yaml["comfyinfra"]["base_path"] == plan.paths.models

    lines = [line for line in render("constraints.txt.j2", plan).splitlines() if line and line[0] != "#"]
    assert lines == list(plan.constraints)

    header = next(line for line in render("logrotate.j2", plan).splitlines() if line and line[0] != "#")
    assert shlex.split(header) == [f"{plan.paths.logs}/*.log", "{"]

    if plan.spec.host_kind.value == "wsl":  # /etc/wsl.conf, read as WSL reads it: an INI file
        wsl_conf = configparser.RawConfigParser()
        wsl_conf.read_string(next(a for a in host_artifacts(plan) if a.dest == WSL_CONF).render().decode())
        assert wsl_conf.get("user", "default", fallback=None) == plan.spec.wsl_default_user

    dirs = {"output": plan.paths.output, "input": plan.paths.input, "temp": plan.paths.temp}
    for job, rule in zip(plan.cron, plan.spec.cleanup):
        assert len(job.schedule.split()) == 5
        assert shlex.split(cron_command(f"{job.schedule} {job.command}")) == [
            "find", dirs[rule.directory], "-xdev", "-type", "f", "-mmin", f"+{rule.older_than_minutes}", "-delete"]


def container_artifacts_hold(plan) -> None:
    """The compose file read back by YAML, the Dockerfile's base and CMD read back as Docker reads them."""
    container = make_container_plan(plan)
    files = {a.dest: a.render().decode() for a in container_artifacts(container)}
    compose = yaml.safe_load(files[container.compose_file])["services"]["comfyui"]
    assert compose["image"].split(":")[0].endswith(plan.spec.container.image)
    assert compose["restart"] == plan.spec.container.restart
    assert f"{plan.paths.models}:/models:ro" in compose["volumes"]
    lines = files[container.dockerfile].splitlines()
    assert f"ARG BASE_IMAGE={plan.spec.container.base_image}" in lines
    cmd = next(line for line in lines if line.startswith("CMD "))
    assert json.loads(cmd[4:]) == list(container.argv)


def artifacts_hold(spec: HostSpec, units: list[str]) -> None:
    """Every artifact of this spec on a systemd host and on a supervisord host reads back intact."""
    for platform in (SYSTEMD, CONTAINER):
        try:
            plan = make_plan(spec, platform, RTX4090)
        except PlanError:
            return  # refused per host, with a message (e.g. a declared GPU that doesn't match the detected one)
        if plan.service_manager == "compose":  # pip.conf, constraints, model paths: the image's, checked here
            container_artifacts_hold(plan)
            return
        if plan.service_manager == "systemd":
            units += systemd_artifacts(plan)
        else:
            supervisor_artifacts(plan)
        common_artifacts(plan)


def systemd_analyze_verify(units: list[str], directory: Path) -> None:
    """All accepted units in one `systemd-analyze verify` run; only the (absent) venv python may be reported."""
    if not units or not shutil.which("systemd-analyze"):
        return
    files = []
    for number, text in enumerate(units):
        files.append(directory / f"accepted-{number}.service")
        files[-1].write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", *map(str, files)], check=False,
                            capture_output=True, text=True, timeout=120)
    problems = [line for line in result.stderr.splitlines()
                if line.strip() and not re.search(r"Command \S+ is not executable: No such file or directory", line)]
    assert not problems, "\n".join(problems)


def _string_fields(annotation: Any, path: tuple) -> list[tuple]:
    """Paths of every string (str, Literal, Enum) a spec annotation can hold; list items as 0, dict keys as KEY."""
    origin, args = get_origin(annotation), get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [p for name, field in annotation.model_fields.items()
                for p in _string_fields(field.annotation, path + (name,))]
    if origin is Annotated:
        return _string_fields(args[0], path)
    if origin is list:
        return _string_fields(args[0], path + (0,))
    if origin is dict:
        return _string_fields(args[0], path + (KEY,)) + _string_fields(args[1], path + ("<value>",))
    if origin is Literal or annotation is str or (isinstance(annotation, type) and issubclass(annotation, enum.Enum)):
        return [path]
    return [p for arg in args for p in _string_fields(arg, path)]  # unions: int | str | None, ...


def _shape(path: tuple) -> tuple:
    """A FIELDS path as _string_fields spells it: the entry of a dict field (model_catalog.sdxl) is <value>."""
    return tuple("<value>" if i == 1 and path[0] in ("model_catalog", "service_secrets") and step != KEY else step
                 for i, step in enumerate(path))


def test_every_string_field_of_the_spec_is_covered():
    declared = set(_string_fields(HostSpec, ()))
    covered = {_shape(path) for path, _, _ in FIELDS}
    assert declared <= covered, f"string fields without an adversarial case in FIELDS: {sorted(declared - covered)}"


@pytest.mark.parametrize("path,valid,extra", FIELDS, ids=["/".join(map(str, f[0])) for f in FIELDS])
def test_a_value_is_refused_or_reaches_every_artifact_intact(tmp_path, path, valid, extra):
    units: list[str] = []
    accepted = []

    @settings(max_examples=30, derandomize=True, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
    @given(value=adversarial(valid))
    def refused_or_intact(value):
        spec = spec_or_refusal(host_data(path, value, extra))
        if spec is not None:
            accepted.append(value)
            artifacts_hold(spec, units)

    spec = spec_or_refusal(host_data(path, valid, extra))
    assert spec is not None, "the valid value itself is refused"
    artifacts_hold(spec, units)
    refused_or_intact()
    systemd_analyze_verify(units, tmp_path)
