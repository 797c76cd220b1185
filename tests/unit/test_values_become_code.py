"""Issue 10 §2, each finding reproduced: an inventory value that became a directive, a second argument or a
shell command. Two layers close each one: the spec refuses the value (with the usual message), and the
template filters (comfyinfra.quoting) escape or refuse what still reaches a format (a plan built around
the spec here, as a later code path could)."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from dataclasses import replace

import pytest
import yaml

from comfyinfra.facts import GpuProbe, HostPlatform
from comfyinfra.plan import make_plan
from comfyinfra.spec import HostSpec
from comfyinfra.validate import check_host
from roles.service import log_command
from tests.support.artifact_parsers import (
    cron_command,
    read_unit,
    rendered,
    supervisor_programs,
    unit_exec,
    unit_paths,
)

BASE = {"host_kind": "linux", "comfyui_repo": "https://github.com/comfyanonymous/ComfyUI.git",
        "comfyui_ref": "v0.3.64", "torch": {"torch": "2.9.1"}, "install_root": "/srv/comfyui", "service_user": "comfy"}
SYSTEMD = HostPlatform(arch="x86_64", wsl=False, systemd=True, mem_total_mib=64000)
CONTAINER = HostPlatform(arch="x86_64", wsl=False, systemd=False, mem_total_mib=64000)


def spec(**overrides) -> HostSpec:
    return HostSpec.model_validate({**BASE, **overrides})


def problems(**overrides) -> list[str]:
    """The messages a user sees for this host (comfyinfra.validate), one per problem."""
    return [str(p) for p in check_host("h1", {**BASE, **overrides}, {}, require_secrets=False)[1]]


def planted(platform: HostPlatform, **values):
    """A plan whose spec holds values the spec would refuse (model_copy skips validation): what reaches the
    templates if a value ever slips past the spec."""
    return make_plan(spec().model_copy(update=values), platform, GpuProbe())


def unit(plan) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for _, key, value in read_unit(rendered(plan, "comfyui.service.j2")):
        settings.setdefault(key, []).append(value)
    return settings


def program(plan):
    return supervisor_programs(rendered(plan, "supervisor-comfyui.conf.j2"))


# --- extra_args: a newline added ExecStartPre=+ (root) to the unit and a [program:pwn] to supervisord ---------

@pytest.mark.parametrize("payload", ["--fast\nExecStartPre=+/tmp/pwn", "--fast\n[program:pwn]\ncommand=/tmp/pwn",
                                     "--fast\r\nExecStartPre=+/tmp/pwn"])
def test_a_line_break_in_extra_args_is_refused(payload):
    assert any("field extra_args" in p and "control character" in p for p in problems(extra_args=[payload]))
    plan = replace(make_plan(spec(), SYSTEMD, GpuProbe()), launch_args=(payload,))
    with pytest.raises(ValueError, match="can't be written"):
        rendered(plan, "comfyui.service.j2")
    with pytest.raises(ValueError, match="can't be written"):
        rendered(replace(plan, service_manager="supervisor"), "supervisor-comfyui.conf.j2")


@pytest.mark.parametrize("extra_args", [["foo"], ["--fast", "a b"], ["-x"], ["--fast", "-1"], ["--Fast"],
                                        ["--fast", "%n"], ["--fast", "$HOME"], ["--fast", "a;b"], ["--fast", "'x'"],
                                        ["--fast=a b"], ["--fast", ""], ["--fast", "#x"]])
def test_extra_args_are_flags_by_name_and_plain_values(extra_args):
    assert any("field extra_args" in p and "allowed" in p for p in problems(extra_args=extra_args)), extra_args


@pytest.mark.parametrize("extra_args", [["--fast"], ["--cache-lru", "10"], ["--fast=fp16_accumulation"],
                                        ["--enable-cors-header", "*"], ["--fp8_e4m3fn-unet"],
                                        ["--front-end-version", "Comfy-Org/ComfyUI_frontend@latest"]])
def test_comfyuis_own_flags_reach_it_one_argument_each(extra_args):
    plan = make_plan(spec(extra_args=extra_args), SYSTEMD, GpuProbe())
    argv = shlex.split(plan.command_line)
    assert unit_exec(unit(plan)["ExecStart"][0]) == argv
    assert shlex.split(program(replace(plan, service_manager="supervisor"))["comfyui"].command) == argv


# --- install_root / models_dir: $(), spaces, quotes, %, #, , -------------------------------------------------

@pytest.mark.parametrize("path", ["/srv/$(touch /tmp/pwn)", "/srv/comfy ui", "/srv/comfy'ui", '/srv/comfy"ui',
                                  "/srv/comfy%nui", "/srv/comfy#ui", "/srv/comfy,ui", "/srv/comfy;ui", "/srv/cömfy",
                                  "/srv/comfy`id`", "/srv/comfy\\ui", "/srv/comfy*"])
@pytest.mark.parametrize("field", ["install_root", "models_dir"])
def test_paths_hold_only_characters_no_format_reads(field, path):
    assert any(f"field {field}" in p and "allowed in paths" in p for p in problems(**{field: path})), path


def test_the_failure_path_quotes_the_log_path_for_roots_shell(tmp_path):
    payload = tmp_path / "payload-ran"
    plan = planted(CONTAINER, install_root=f"{tmp_path}/x$(touch {payload})")
    command = log_command(plan)
    assert shlex.split(command) == ["tail", "-n", "30", f"{plan.paths.logs}/comfyui.log"]
    subprocess.run(["sh", "-c", command], check=False, capture_output=True)
    assert not payload.exists()


def test_a_percent_sign_reaches_supervisord_as_itself():
    plan = planted(CONTAINER, install_root="/srv/comfy%(ENV_HOME)s%ui")
    config = program(plan)["comfyui"]  # supervisord %-formats its values: unescaped, the whole file failed
    assert config.directory == "/srv/comfy%(ENV_HOME)s%ui/ComfyUI"
    assert shlex.split(config.command) == shlex.split(plan.command_line)
    assert config.stdout_logfile == "/srv/comfy%(ENV_HOME)s%ui/logs/comfyui.log"


@pytest.mark.parametrize("root", ["/srv/comfy%n$HOME", "/srv/comfy ui"])
def test_percent_dollar_and_space_reach_the_unit_as_themselves(tmp_path, root):
    plan = planted(SYSTEMD, install_root=root)
    settings = unit(plan)
    assert unit_exec(settings["ExecStart"][0]) == shlex.split(plan.command_line)
    assert unit_paths(settings["ReadWritePaths"][0]) == list(plan.writable_paths)  # a space split it in two
    if shutil.which("systemd-analyze"):
        path = tmp_path / "comfyui.service"
        path.write_text(rendered(plan, "comfyui.service.j2"))
        verify = subprocess.run(["systemd-analyze", "verify", "--man=no", str(path)], check=False, capture_output=True,
                                text=True)
        assert "specifier" not in verify.stderr and "Invalid" not in verify.stderr, verify.stderr


def test_quotes_and_commas_can_not_add_a_variable_to_supervisords_environment():
    injected = planted(CONTAINER, install_root='/srv/x",LD_PRELOAD="/tmp/evil.so')
    with pytest.raises(ValueError, match="environment="):
        rendered(injected, "supervisor-comfyui.conf.j2")
    plan = planted(CONTAINER, install_root="/srv/x,LD_PRELOAD=/tmp/evil.so")
    environment = program(plan)["comfyui"].environment
    assert environment == dict(plan.env) and "LD_PRELOAD" not in environment


def test_a_hash_in_models_dir_stays_in_the_yaml_base_path():
    plan = planted(SYSTEMD, models_dir="/srv/models #x: y")
    config = yaml.safe_load(rendered(plan, "extra_model_paths.yaml.j2"))
    assert config["comfyinfra"]["base_path"] == "/srv/models #x: y"  # unquoted, '#' started a comment


def test_a_percent_sign_in_a_cleanup_directory_does_not_cut_the_cron_command():
    plan = planted(SYSTEMD, install_root="/srv/comfy%ui")
    job = plan.cron[0]
    assert shlex.split(cron_command(f"{job.schedule} {job.command}"))[:2] == ["find", "/srv/comfy%ui/output"]


# --- install_root="/opt", "/etc" or "/": the deploy took the directory over -----------------------------------

@pytest.mark.parametrize("path", ["/", "/opt", "/etc", "/usr", "/usr/local/comfyui", "/etc/comfyui", "/var", "/home",
                                  "/home/alice", "/root", "/srv", "/tmp", "/lib", "/lib64/comfyui", "/boot/x",
                                  "/run/comfyui", "/proc/self", "/dev/shm/comfyui", "/sys/x", "/bin/x", "/sbin/x",
                                  "/var/lib", "/var/tmp", "/mnt"])
@pytest.mark.parametrize("field", ["install_root", "models_dir"])
def test_system_directories_are_refused(field, path):
    found = problems(**{field: path})
    assert any(f"field {field}" in p and "/opt/comfyui" in p and "take over" in p for p in found), found


@pytest.mark.parametrize("path", ["/opt/comfyui", "/srv/comfyui", "/var/lib/comfyui", "/home/comfy/comfyui",
                                  "/workspace/comfyui", "/mnt/d/models", "/data/comfy+ui_1.2-x",
                                  "/var/tmp/e2e/install"])
def test_a_directory_of_its_own_is_accepted(path):
    assert spec(install_root=path, models_dir=path + "/models").install_root == path


@pytest.mark.parametrize("path,normal", [("/opt/comfyui/", "/opt/comfyui"), ("/opt//comfyui", "/opt/comfyui"),
                                         ("/opt/./comfyui", "/opt/comfyui")])
def test_paths_are_written_normalised(path, normal):
    assert any(f"written as '{normal}'" in p for p in problems(install_root=path))


# --- pip_sources: checked on a stripped copy, rendered as given ----------------------------------------------

@pytest.mark.parametrize("field", ["index_url", "torch_index_url"])
def test_a_newline_in_an_index_url_is_refused_not_stripped(field):
    injected = "https://pypi.org/simple\n[install]\nconstraint = /dev/null"
    assert any(f"pip_sources.{field}" in p for p in problems(pip_sources={field: injected}))
    assert any("pip_sources.extra_index_urls" in p for p in problems(pip_sources={"extra_index_urls": [injected]}))
    plan = make_plan(spec(), SYSTEMD, GpuProbe())
    with pytest.raises(ValueError, match="pip.conf"):
        rendered(replace(plan, pip_config=(("index-url", injected),)), "pip.conf.j2")


@pytest.mark.parametrize("url", ["https://pypi.org/sim ple", "https://pypi.org/simple\t", "https://pypi.org/$(id)",
                                 "https://pypi.org/simple#frag", "https://pypi.org/%zz", "https:///simple",
                                 'https://pypi.org/"x'])
def test_index_urls_hold_only_url_characters(url):
    assert any("pip_sources.index_url" in p for p in problems(pip_sources={"index_url": url})), url


@pytest.mark.parametrize("link", ["wheels", "/srv/wheel house", "/srv/wheels\n[install]", "ftp://mirror/wheels",
                                  "/srv/wheels/", "https://mirror.example/wh eels", "/srv/$(id)", "-f/srv/wheels"])
def test_find_links_are_absolute_directories_or_urls(link):
    assert any("pip_sources.find_links" in p for p in problems(pip_sources={"find_links": [link]})), link


def test_find_links_that_pass_reach_pip_one_each():
    links = ["/srv/wheels", "https://mirror.example/wheels/"]
    plan = make_plan(spec(pip_sources={"find_links": links}), SYSTEMD, GpuProbe())
    parser = configparser.RawConfigParser()
    parser.read_string(rendered(plan, "pip.conf.j2"))
    assert parser["global"]["find-links"].split() == links


# --- `$` anchors: a trailing newline passed; a secret's name "HF_TOKEN\n" printed the secret into a log -------

@pytest.mark.parametrize("overrides", [
    {"service_secrets": {"HF_TOKEN\n": "HF_TOKEN"}}, {"service_secrets": {"HF_TOKEN": "HF_TOKEN\n"}},
    {"service_user": "comfy\n"}, {"listen": "127.0.0.1\n"}, {"comfyui_ref": "main\r", "comfyui_allow_branch": True},
    {"comfyui_ref": "a125cd84b054a57729b5eecab930ca9408719832\n"}, {"python": "python3\n"},
    {"custom_nodes": [{"name": "demo\n", "repo": "https://github.com/o/demo.git", "ref": "v1.0.0"}]},
    {"custom_nodes": [{"name": "demo", "repo": "https://github.com/o/demo.git", "ref": "v1.0.0",
                       "node_classes": ["Demo\n"]}]},
    {"extra_pip_packages": ["requests==2.32.3\n"]}, {"torch": {"torch": "2.9.1\n"}},
    {"gpu": {"name": "RTX\u2028", "vram_mib": 1, "compute_capability": "8.6"}},
])
def test_a_trailing_line_break_is_refused_in_every_field(overrides):
    found = problems(**overrides)
    assert found and all("\n" not in p for p in found), found


def test_a_refused_secret_name_is_never_shown():
    found = problems(service_secrets={"hf_secret_token_value\n": "HF_TOKEN"})
    assert found and not any("secret_token" in p for p in found), found


def test_gpu_monitor_log_names_match_as_a_whole():
    """The retention sweep deletes what file_date dates: `$` matched before a trailing newline, \\d any digit."""
    from datetime import date

    from comfyinfra.host_helpers.gpu_monitor import file_date

    assert file_date("gpu-2024-01-31.csv") == date(2024, 1, 31)
    assert file_date("gpu-2024-01-31.csv\n") is None and file_date("gpu-٢٠٢٤-01-31.csv") is None
