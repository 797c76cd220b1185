"""The review render (comfyinfra.render): every host's files from the one artifact list, planned without the host,
byte-identical wherever it runs, committed in rendered/ and current; a group_data change shows exactly where it lands;
no secret value ever reaches it; PLAN.md and the fleet table are the plan's data and read back to it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from comfyinfra import render
from comfyinfra.artifacts import host_artifacts
from comfyinfra.hostinfo import GpuProbe, HostPlatform
from comfyinfra.plan import PlanError, declared_platform, make_plan, plan_without_host
from comfyinfra.render import fleet_row, parse_tables, read_tree, summary, windows_summary
from comfyinfra.spec import HostSpec
from comfyinfra.windows.artifacts import windows_artifacts
from comfyinfra.windows.plan import make_windows_plan
from comfyinfra.windows.spec import WindowsHostSpec
from tests.unit.test_plan import BASE

REPO = Path(__file__).resolve().parents[2]
# What a render reads: the code, the fleet's data and what the artifacts are made of.
SOURCES = ("comfyinfra", "group_data", "inventory", "templates", "workflows")


def run_render(repo: Path, *args: str, cwd: Path | None = None, env: dict | None = None):
    environment = {**os.environ, "PYTHONPATH": str(repo), **(env or {})}
    return subprocess.run([sys.executable, "-m", "comfyinfra.render", *args], cwd=cwd or repo, env=environment, check=False,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def repo_copy(tmp_path) -> Path:
    """This repository's render inputs, copied: a place to change group_data/ without touching the real one."""
    copy = tmp_path / "repo"
    for name in SOURCES:
        shutil.copytree(REPO / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


@pytest.fixture(scope="module")
def prod() -> list:
    hosts, _ = render.load("inventory/prod.py")
    return hosts


def test_the_committed_render_is_current():
    result = run_render(REPO, "inventory/prod.py", "--check")
    assert result.returncode == 0, result.stderr  # the fix, when it fails: "run ./infra render"


def test_a_render_is_identical_twice_and_from_another_working_directory(tmp_path):
    first, second, elsewhere = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert run_render(REPO, "inventory/prod.py", "--out", str(first)).returncode == 0
    assert run_render(REPO, "inventory/prod.py", "--out", str(second)).returncode == 0
    result = run_render(REPO, "inventory/prod.py", "--out", str(elsewhere), cwd=tmp_path,
                        env={"COMFYINFRA_COMFYUI_REPO": "/srv/mirror/ComfyUI.git"})  # a machine's own override
    assert result.returncode == 0, result.stderr
    tree = read_tree(first)
    assert tree == read_tree(second) == read_tree(elsewhere) == read_tree(REPO / "rendered")
    hosts = {"wsl-3090", "runpod-a5000", "dgx-spark", "gpu-4090", "gpu-5060ti", "win-3090"}
    assert {path.split("/")[0] for path in tree} == hosts | {"README.md"}
    assert all(f"{host}/PLAN.md" in tree for host in hosts)


def test_a_stale_render_fails_the_check_with_the_fix(tmp_path):
    out = tmp_path / "rendered"
    shutil.copytree(REPO / "rendered", out)
    unit = out / "gpu-4090/etc/systemd/system/comfyui.service"
    unit.write_text(unit.read_text().replace("Restart=always", "Restart=no"))
    result = run_render(REPO, "inventory/prod.py", "--out", str(out), "--check")
    assert result.returncode == 1
    assert result.stderr.strip().endswith("run ./infra render") and len(result.stderr.strip().splitlines()) == 1
    assert "gpu-4090/etc/systemd/system/comfyui.service" in result.stderr
    assert run_render(REPO, "inventory/prod.py", "--out", str(out)).returncode == 0
    assert run_render(REPO, "inventory/prod.py", "--out", str(out), "--check").returncode == 0


def test_a_group_data_change_lands_on_exactly_the_expected_files(repo_copy, tmp_path):
    before, after = tmp_path / "before", tmp_path / "after"
    assert run_render(repo_copy, "inventory/prod.py", "--out", str(before)).returncode == 0
    with open(repo_copy / "group_data/all.py", "a") as all_py:
        all_py.write('preview_method = "auto"\n')
    result = run_render(repo_copy, "inventory/prod.py", "--out", str(after))
    assert result.returncode == 0, result.stderr
    old, new = read_tree(before), read_tree(after)
    changed = {path for path in old.keys() | new.keys() if old.get(path) != new.get(path)}
    # the flag reaches ComfyUI's argv: each host's unit (the supervisord program on the RunPod pod), a container
    # host's Dockerfile (CMD) and compose.yaml (the image's tag names what is built into it), and each PLAN.md
    containers = {f"{host}/{path}" for host in ("dgx-spark", "gpu-5060ti")
                  for path in ("opt/comfyui/build/Dockerfile", "opt/comfyui/compose.yaml", "PLAN.md")}
    assert changed == {"wsl-3090/etc/systemd/system/comfyui.service", "wsl-3090/PLAN.md",
                       "runpod-a5000/etc/supervisor/conf.d/comfyui.conf", "runpod-a5000/PLAN.md",
                       "gpu-4090/etc/systemd/system/comfyui.service", "gpu-4090/PLAN.md", *containers}
    assert b"--preview-method auto" in new["gpu-4090/etc/systemd/system/comfyui.service"]


def test_no_secret_value_reaches_the_render(repo_copy, tmp_path):
    secret, token = "s3cr3t-service-value-7f1c", "hf_token-value-0a9b8c7d6e"
    (repo_copy / "inventory/secrets.py").write_text(
        'linux = [("gpu-a", {"platform_arch": "x86_64", "platform_init": "systemd",\n'
        '                    "service_secrets": {"HF_TOKEN": "RENDER_TEST_SECRET"}, "models": ["gated"],\n'
        '                    "model_catalog": {"gated": {"url": "https://huggingface.co/o/r/resolve/0123abcd/m.safetensors",\n'
        '                                                 "sha256": "' + "a" * 64 + '", "folder": "checkpoints",\n'
        '                                                 "filename": "m.safetensors", "token_env": "RENDER_TEST_TOKEN"}}})]\n')
    out = tmp_path / "out"
    result = run_render(repo_copy, "inventory/secrets.py", "--out", str(out),
                        env={"RENDER_TEST_SECRET": secret, "RENDER_TEST_TOKEN": token})
    assert result.returncode == 0, result.stderr
    tree = read_tree(out)
    for path, content in tree.items():
        assert secret.encode() not in content and token.encode() not in content, path
    assert secret not in result.stdout + result.stderr and token not in result.stdout + result.stderr
    assert tree["gpu-a/opt/comfyui/.comfyinfra/secrets.env"] == b"HF_TOKEN=<secret from env RENDER_TEST_SECRET>\n"
    assert b"RENDER_TEST_SECRET" in tree["gpu-a/PLAN.md"]


def test_plan_md_and_the_fleet_table_read_back_to_the_plan(prod):
    readme = (REPO / "rendered/README.md").read_text()
    (fleet,) = parse_tables(readme)
    assert fleet[0] == render.FLEET_COLUMNS
    rows = fleet[1:]
    assert [row[0] for row in rows] == [host.name for host in prod]
    by_name = {host.name: host for host in prod}
    for host, row in zip(prod, rows):
        if isinstance(host.spec, WindowsHostSpec):
            windows_plan = make_windows_plan(host.name, host.spec, plan_without_host(by_name[host.spec.fronts].spec))
            headline, commands, files = parse_tables((REPO / "rendered" / host.name / "PLAN.md").read_text())
            assert dict(headline[1:]) == windows_summary(windows_plan)
            assert commands[1][1].split() == list(windows_plan.fronted.start)
            assert [r[0] for r in files[1:]] == [a.dest for a in windows_artifacts(windows_plan)]
            assert row[0] == host.name and row[1] == "windows" and host.spec.fronts in row[-1]
            continue
        plan = plan_without_host(host.spec)
        assert row == fleet_row(host, plan)
        assert row[2] == plan.service_manager and plan.torch.variant in row[4] and str(plan.spec.port) in row[5]
        text = (REPO / "rendered" / host.name / "PLAN.md").read_text()
        headline, environment, *rest = parse_tables(text)
        facts = dict(headline[1:])
        assert facts == summary(host, plan)
        assert facts["torch"].split() == list(plan.torch.requirements)
        assert facts["health URL"] == plan.health_url and facts["service manager"] == plan.service_manager
        assert plan.spec.comfyui_ref in facts["ComfyUI"]
        argv, env = render.launch(plan)  # a container host's: the image's CMD and environment
        assert dict(environment[1:]) == dict(env)
        launch = text.split("```\n")[1].splitlines()
        assert launch == list(argv)
        files = rest[-1]
        assert [row[0] for row in files[1:]] == [a.dest for a in host_artifacts(plan)]
        crons = rest[-2]
        assert [(name, schedule, command) for name, schedule, command in crons[1:]] == \
            [(job.name, job.schedule, job.command) for job in plan.cron]


def test_the_dgx_spark_is_planned_as_aarch64_with_cuda_13(prod):
    (dgx,) = [host for host in prod if host.name == "dgx-spark"]
    plan = plan_without_host(dgx.spec)
    assert declared_platform(dgx.spec).arch == "aarch64" and plan.torch.variant == "cu130"
    runpod = next(host for host in prod if host.name == "runpod-a5000")
    assert plan_without_host(runpod.spec).service_manager == "supervisor"


def test_the_hosts_facts_win_and_a_contradiction_fails_the_host():
    spec = HostSpec.model_validate({**BASE, "platform_arch": "aarch64", "platform_init": "systemd"})
    host = HostPlatform(arch="x86_64", wsl=False, systemd=False, mem_total_mib=1024)
    with pytest.raises(PlanError, match=r"platform_arch 'aarch64' but the host is 'x86_64'.*platform_init 'systemd'"):
        make_plan(spec, host, GpuProbe())
    undeclared = HostSpec.model_validate(BASE)
    assert make_plan(undeclared, host, GpuProbe()).service_manager == "supervisor"  # nothing declared: facts decide
    with pytest.raises(PlanError, match="platform_arch and platform_init not declared"):
        plan_without_host(undeclared)


def test_group_data_all_does_not_repeat_spec_defaults():
    """Defaults live in the spec alone: a value in group_data/all.py must change something."""
    import runpy

    from pydantic_core import PydanticUndefined

    from comfyinfra.spec import HostSpec

    repeated = []
    for name, value in runpy.run_path(str(REPO / "group_data" / "all.py")).items():
        field = HostSpec.model_fields.get(name)
        if field is None:
            continue
        default = field.get_default(call_default_factory=True)
        if default is PydanticUndefined:
            continue
        if hasattr(default, "model_dump") and isinstance(value, dict):
            same = type(default).model_validate(value) == default  # e.g. pip_sources = {}
        else:
            same = value == default
        if same:
            repeated.append(name)
    assert repeated == [], f"group_data/all.py repeats the spec's defaults of {repeated}: delete them there"
