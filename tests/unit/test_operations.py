"""Custom operations' commands, generated against @fake hosts whose facts are canned (no SSH)."""

import re

import pytest
from pyinfra.api import Config, Inventory, State
from pyinfra.api.connect import connect_all
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.operation import add_op
from pyinfra.api.operations import run_ops

from comfyinfra.operations import (
    pinned_checkout,
    pip_install_stamped,
    stamp_value,
    supervisord_running,
    wait_healthy,
)

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
    return [c for c in executed if not c.startswith(("if [ ! -e", "echo digest=", "curl -s -f -m 5 http", "if supervisorctl"))
            or c.startswith("curl -s -f -m 5 http") and "| python3" in c]


def checkout_fact(**values):
    return {re.compile(r"^if \[ ! -e "): "\n".join(f"{k}={v}" for k, v in values.items())}


def test_fresh_clone_checks_reachability_then_pins():
    executed, state, _ = run_op(pinned_checkout, checkout_fact(state="absent"), repo="https://example.invalid/ComfyUI.git",
                                dest=DEST, ref=SHA, kind="commit", unreachable_hint="Set comfyui_repo.")
    commands = op_commands(executed)
    assert commands[0].startswith("err=$(timeout 60 git ls-remote -q https://example.invalid/ComfyUI.git")
    assert "Set comfyui_repo." in commands[0]
    assert commands[1] == f"git clone -q --no-checkout https://example.invalid/ComfyUI.git {DEST}"
    assert commands[-1] == f"git -C {DEST} checkout -q --detach {SHA}"


def test_already_pinned_is_a_noop():
    executed, state, host = run_op(pinned_checkout, checkout_fact(state="present", head=SHA, origin="/r", dirty=0, target=SHA),
                                   repo="/r", dest=DEST, ref=SHA, kind="commit")
    assert op_commands(executed) == []


def test_local_changes_are_discarded():
    executed, *_ = run_op(pinned_checkout, checkout_fact(state="present", head=SHA, origin="/r", dirty=1, target=SHA),
                          repo="/r", dest=DEST, ref=SHA, kind="commit")
    assert op_commands(executed) == [f"git -C {DEST} checkout -q -f --detach {SHA}"]


def test_tag_not_yet_fetched_and_mirror_moved():
    executed, *_ = run_op(pinned_checkout, checkout_fact(state="present", head=SHA, origin="/old", dirty=0, target=""),
                          repo="/new", dest=DEST, ref="v0.3.65", kind="tag")
    assert op_commands(executed) == [f"git -C {DEST} remote set-url origin /new", f"git -C {DEST} fetch -q --tags origin",
                                     f"git -C {DEST} checkout -q -f --detach refs/tags/v0.3.65"]


def test_non_git_directory_is_refused():
    executed, state, host = run_op(pinned_checkout, checkout_fact(state="notgit"), repo="/r", dest=DEST, ref=SHA,
                                   kind="commit")
    assert op_commands(executed) == ["echo 'comfyinfra: /opt/comfyui/ComfyUI exists but is not a git checkout; "
                                     "move it away and deploy again' >&2; exit 1"]


def test_stamped_pip_install_skips_when_stamp_matches():
    digest = "d" * 64
    wanted = stamp_value(digest, ("requests",))
    responses = {re.compile(r"^echo digest="): f"digest={digest}\nstamp={wanted}"}
    executed, *_ = run_op(pip_install_stamped, responses, python="/v/bin/python", stamp="/s/stamp", inputs=("/a/req.txt",),
                          requirement_files=("/a/req.txt",), packages=("requests",))
    assert op_commands(executed) == []


def test_stamped_pip_install_runs_and_names_the_owner_on_conflict():
    responses = {re.compile(r"^echo digest="): "digest=abc\nstamp=old"}
    executed, *_ = run_op(pip_install_stamped, responses, python="/v/bin/python", stamp="/s/stamp", inputs=("/n/req.txt",),
                          requirement_files=("/n/req.txt",), owner_label="custom node 'x'", protected=("torch==2.9.1+cu128",))
    install, write_stamp = op_commands(executed)
    assert "/v/bin/python -m pip install --no-input" in install and "-r /n/req.txt" in install
    assert "custom node '\"'\"'x'\"'\"' needs packages that conflict" in install and "torch==2.9.1+cu128" in install
    assert write_stamp.endswith(f"echo {stamp_value('abc', ())} > /s/stamp")


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
    executed, *_ = run_op(supervisord_running, {re.compile(r"^if supervisorctl"): f"daemon={daemon}"},
                          conf="/etc/supervisor/supervisord.conf")
    assert len(op_commands(executed)) == expected
