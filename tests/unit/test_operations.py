"""Custom operations' commands, generated against @fake hosts whose facts are canned (no SSH)."""

import re

import pytest
from pyinfra.api import Config, Inventory, State
from pyinfra.api.connect import connect_all
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.operation import add_op
from pyinfra.api.operations import run_ops

from comfyinfra.operations.git import GIT, pinned_checkout, trusting
from comfyinfra.operations.pip import pip_install_stamped, stamp_value
from comfyinfra.operations.service import supervisord_running, wait_healthy

SHA = "a" * 40
DEST = "/opt/comfyui/ComfyUI"


def run_op(op, responses, **kwargs):
    """Run one operation on a fake host; returns (executed commands, state, host)."""
    inventory = Inventory(([("@fake/h", {"fake_delay": 0, "fake_delay_jitter": 0, "fake_responses": responses})], {}))
    state = State(inventory=inventory, config=Config())
    connect_all(state)
    host = inventory.get_host("@fake/h")
    add_op(state, op, **kwargs)
    try:
        run_ops(state)
    except PyinfraError:
        pass
    return host.connector.executed_commands, state, host


def op_commands(executed):
    return [c for c in executed if not c.startswith(("if [ ! -e", "cat ", "curl -s -f -m 5 http", "if supervisorctl"))
            or c.startswith("curl -s -f -m 5 http") and "| python3" in c]


def checkout_fact(**values):
    return {re.compile(r"^if \[ ! -e "): "\n".join(f"{k}={v}" for k, v in values.items())}


def test_fresh_clone_pins():
    executed, state, _ = run_op(pinned_checkout, checkout_fact(state="absent"), repo="https://example.invalid/ComfyUI.git",
                                dest=DEST, ref=SHA, kind="commit")
    commands = op_commands(executed)
    assert commands[0] == f"{GIT} clone -q --no-checkout https://example.invalid/ComfyUI.git {DEST}"
    assert commands[-1] == f"{GIT} -C {DEST} checkout -q --detach {SHA}"


def test_local_mirror_is_trusted_for_exactly_the_commands_that_read_it():
    executed, *_ = run_op(pinned_checkout, {}, repo="/srv/mirror/ComfyUI.git", dest=DEST, ref=SHA, kind="commit")
    clone, fetch, checkout = op_commands(executed)
    assert "GIT_CONFIG_GLOBAL" in clone and "directory = %s" in clone and "/srv/mirror/ComfyUI.git" in clone
    assert "GIT_CONFIG_GLOBAL" in fetch and "GIT_CONFIG_GLOBAL" not in checkout
    assert trusting("https://example.invalid/a.git", "git fetch") == "git fetch"
    assert trusting("file:///srv/m.git", "git fetch").count("/srv/m.git") == 4


def test_already_pinned_is_a_noop():
    executed, state, host = run_op(pinned_checkout, checkout_fact(state="present", head=SHA, origin="/r", dirty=0, target=SHA),
                                   repo="/r", dest=DEST, ref=SHA, kind="commit")
    assert op_commands(executed) == []


def test_local_changes_are_discarded_with_what_hides_them():
    executed, *_ = run_op(pinned_checkout, checkout_fact(state="present", head=SHA, origin="/r", dirty=1, target=SHA),
                          repo="/r", dest=DEST, ref=SHA, kind="commit")
    unhide, checkout, clean = op_commands(executed)
    assert "refs/replace" in unhide and "--no-assume-unchanged --" in unhide and "--no-skip-worktree --" in unhide
    assert checkout == f"{GIT} -C {DEST} checkout -q -f --detach {SHA}"
    assert clean == f"{GIT} -C {DEST} reset -q --hard && {GIT} -C {DEST} clean -q -f -d -- . ':(exclude)custom_nodes'"


def test_a_checkout_another_user_owns_is_cloned_again():
    executed, *_ = run_op(pinned_checkout, checkout_fact(state="foreign"), repo="/r", dest=DEST, ref=SHA, kind="commit")
    commands = op_commands(executed)
    assert commands[0] == f"rm -rf {DEST}" and "clone -q --no-checkout" in commands[1]


def test_tag_not_yet_fetched_and_mirror_moved():
    executed, *_ = run_op(pinned_checkout, checkout_fact(state="present", head=SHA, origin="/old", dirty=0, target=""),
                          repo="/new", dest=DEST, ref="v0.3.65", kind="tag")
    assert op_commands(executed) == [f"{GIT} -C {DEST} remote set-url origin /new",
                                     trusting("/new", f"{GIT} -C {DEST} fetch -q --force --tags origin"),
                                     f"{GIT} -C {DEST} checkout -q -f --detach refs/tags/v0.3.65"]


def test_non_git_directory_is_refused():
    executed, state, host = run_op(pinned_checkout, checkout_fact(state="notgit"), repo="/r", dest=DEST, ref=SHA,
                                   kind="commit")
    assert op_commands(executed) == ["echo 'comfyinfra: /opt/comfyui/ComfyUI exists but is not a git checkout; "
                                     "move it away and deploy again' >&2; exit 1"]


def test_stamped_pip_install_skips_when_stamp_matches():
    wanted = stamp_value(("/r@" + SHA, "torch==2.13.0+cpu", "requests"))
    executed, *_ = run_op(pip_install_stamped, {re.compile(r"^cat /s/stamp"): wanted}, python="/v/bin/python",
                          stamp="/s/stamp", inputs=("/r@" + SHA, "torch==2.13.0+cpu"), requirement_files=("/a/req.txt",),
                          packages=("requests",))
    assert op_commands(executed) == []


def test_stamped_pip_install_runs_and_names_the_owner_on_conflict():
    executed, *_ = run_op(pip_install_stamped, {re.compile(r"^cat /s/stamp"): "old"}, python="/v/bin/python",
                          stamp="/s/stamp", inputs=("pin",), requirement_files=("/n/req.txt",),
                          owner_label="custom node 'x'", protected=("torch==2.9.1+cu128",))
    (install,) = op_commands(executed)
    assert "/v/bin/python -m pip install --no-input" in install and "-r /n/req.txt" in install
    assert "custom node '\"'\"'x'\"'\"' needs packages that conflict" in install and "torch==2.9.1+cu128" in install
    assert install.endswith(f"echo {stamp_value(('pin',))} > /s/stamp")


STATS_URL = "http://127.0.0.1:8188/system_stats"


def stats_response(device):
    return {re.compile(r"^curl -s -f -m 5"): '{"system": {}, "devices": [{"type": "%s"}]}' % device}


def test_health_wait_is_a_noop_when_healthy_on_the_expected_device():
    healthy, *_ = run_op(wait_healthy, stats_response("cpu"), url=STATS_URL, timeout_s=30,
                         log_command="tail -n 30 /l/comfyui.log", expect_device="cpu")
    assert op_commands(healthy) == []


def test_health_wait_fails_when_a_gpu_host_runs_on_the_cpu():
    wrong, *_ = run_op(wait_healthy, stats_response("cpu"), url=STATS_URL, timeout_s=30,
                       log_command="tail -n 30 /l/comfyui.log", expect_device="cuda")
    (command,) = op_commands(wrong)
    assert "runs on '\"'\"'cpu'\"'\"', expected '\"'\"'cuda'\"'\"'" in command and command.endswith("exit 1")


def test_health_wait_polls_then_checks_the_device_and_shows_logs_on_timeout():
    waiting, *_ = run_op(wait_healthy, {re.compile(r"^curl -s -f -m 5"): ""}, url=STATS_URL, timeout_s=30,
                         log_command="tail -n 30 /l/comfyui.log", expect_device="cuda")
    loop, check = op_commands(waiting)
    assert "[ $i -gt 30 ]" in loop and "tail -n 30 /l/comfyui.log >&2" in loop
    assert "python3 -c" in check and "'cuda'" in check


@pytest.mark.parametrize("daemon,expected", [("up", 0), ("down", 1)])
def test_supervisord_started_only_when_down(daemon, expected):
    executed, *_ = run_op(supervisord_running, {re.compile(r"^if supervisorctl"): f"supervisord={daemon}"},
                          conf="/etc/supervisor/supervisord.conf")
    assert len(op_commands(executed)) == expected


# Every custom operation on a host where nothing exists yet: each fact answers nothing (no venv, no
# checkout, no service user, no supervisord, no model dir, no nvidia-smi), which pyinfra turns into
# the fact's default(). Each operation must plan its work, not crash (issue: `--dry` on a fresh host).
FRESH_HOST_OPS = [
    ("pinned_checkout", "comfyinfra.operations.git", dict(repo="/srv/m.git", dest=DEST, ref=SHA, kind="commit"), "clone"),
    ("sources_reachable", "comfyinfra.operations.git",
     dict(sources=(("/srv/m.git", DEST, "hint"),)), "cannot reach"),
    ("pip_pinned", "comfyinfra.operations.pip", dict(python="/v/bin/python", requirements=("torch==2.13.0+cpu",)),
     "pip install"),
    ("pip_install_stamped", "comfyinfra.operations.pip",
     dict(python="/v/bin/python", stamp="/s/st", inputs=("x",), requirement_files=("/r.txt",)), "pip install"),
    ("torch_source_reachable", "comfyinfra.operations.pip",
     dict(python="/v/bin/python", requirement="torch==2.13.0+cpu", index_url=None, find_links=(), user="root",
          hint="hint"), "cannot get"),
    ("models_synced", "comfyinfra.operations.models",
     dict(python="python3", helper="/h.py", manifest={"logs": "/l", "models": [{"name": "m"}]}), "sync"),
    ("secret_file", "comfyinfra.operations.service", dict(path="/s/secrets.env", group="comfy"), "cat >"),
    ("supervisord_running", "comfyinfra.operations.service", dict(conf="/etc/supervisor/supervisord.conf"), "supervisord -c"),
    ("supervisor_programs_running", "comfyinfra.operations.service",
     dict(conf="/etc/supervisor/supervisord.conf", programs=("comfyui",)), "start comfyui"),
    ("wait_healthy", "comfyinfra.operations.service",
     dict(url=STATS_URL, timeout_s=5, log_command="true", expect_device="cpu"), "until curl"),
    ("os_packages", "comfyinfra.operations.system", dict(packages=("git", "supervisor")), "apt-get install"),
    ("service_user", "comfyinfra.operations.system", dict(user="comfy", home="/opt/comfyui"), "useradd"),
    ("directory", "comfyinfra.operations.system", dict(path="/opt/comfyui", user="comfy", group="comfy"), "mkdir -p"),
    ("managed_file", "comfyinfra.operations.system", dict(dest="/opt/comfyui/.comfyinfra/c.txt", content=b"x"),
     "chmod"),
    ("venv", "comfyinfra.operations.system", dict(path="/opt/comfyui/venv", python="python3"), "-m venv"),
    ("cron_entry", "comfyinfra.operations.system",
     dict(user="comfy", cron_name="c", command="true", minute="*/15", hour="*", day_of_month="*", month="*",
          day_of_week="*"), "crontab"),
    ("unit_running", "comfyinfra.operations.system", dict(unit="comfyui.service"), "systemctl"),
]


@pytest.mark.parametrize("name,module,kwargs,expected", FRESH_HOST_OPS, ids=[c[0] for c in FRESH_HOST_OPS])
def test_every_operation_plans_its_work_on_a_fresh_host(name, module, kwargs, expected):
    import importlib

    op = getattr(importlib.import_module(module), name)
    executed, state, host = run_op(op, {}, **kwargs)
    assert any(expected in command for command in executed), executed
