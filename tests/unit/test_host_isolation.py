"""One bad host never stops the fleet: a fact answer or helper output that can't be read fails that host only,
with a message, before it has any operation; the other hosts deploy.

Each case is an answer a real host gave (issue 10, section 5). The last tests load deploy.py the way the CLI does
(pyinfra_cli's per-host loader, where any exception stops every host) on two @fake hosts, one of them broken.
"""

import re
import shlex
import subprocess
from pathlib import Path

import pytest
from pyinfra.api import Config, Inventory, State
from pyinfra.api.state import StateStage
from pyinfra.api.connect import connect_all
from pyinfra.api.operations import run_ops
from pyinfra.connectors.fake import FakeConnector
from pyinfra.connectors.util import CommandOutput, OutputLine
from pyinfra.context import ctx_state
from pyinfra_cli.util import load_deploy_file

from comfyinfra.facts import NvidiaGpus, Platform, UnreadableFact
from comfyinfra.operations.models import ModelStates
from comfyinfra.operations.service import device_type, wait_healthy
from comfyinfra.operations.snapshot import MARK, Batch, merge, probe, values
from comfyinfra.plan import PlanError, make_plan
from comfyinfra.spec import HostSpec
from tests.unit.test_operations import op_commands, run_op
from tests.unit.test_plan import BASE, X86_SYSTEMD

REPO = Path(__file__).resolve().parents[2]
MEM = "mem_kib=16384000"
SMI = "nvidia_smi=/usr/bin/nvidia-smi"
GOOD_PLATFORM = ["x86_64", "wsl=0", "systemd=1", MEM]
CPU_HOST = [MEM, "nvidia_smi="]
UNKNOWN_ERROR_ROW = "0, 00000000:01:00.0, GPU-1, NVIDIA GeForce RTX 4090, [Unknown Error], 580.95.05, 8.9"
BETA_DRIVER_ROW = "0, 00000000:01:00.0, GPU-1, NVIDIA GeForce RTX 4090, 24564, 580.65.06-beta, 8.9"


# --- the parsers, fed what the hosts printed ------------------------------------------------------------


@pytest.mark.parametrize("row,why", [
    (UNKNOWN_ERROR_ROW, "memory.total is [Unknown Error]"),
    ("0, 00000000:01:00.0, GPU-1, [GPU is lost], 24564, 580.95.05, 8.9", "name is [GPU is lost]"),
    ("0, 00000000:01:00.0, GPU-1, NVIDIA GeForce RTX 4090, 24564, 580.95.05, [Unknown Error]", "compute_cap is [Unknown Error]"),
    ("0, 00000000:01:00.0, GPU-1, NVIDIA GeForce RTX 4090, lots, 580.95.05, 8.9", "memory.total is 'lots'"),
])
def test_an_nvidia_smi_cell_it_could_not_fill_refuses_the_host(row, why):
    gpus = NvidiaGpus().process([MEM, SMI, row])
    assert gpus.gpus == () and why in gpus.error
    with pytest.raises(PlanError, match=re.escape(why)):
        make_plan(HostSpec.model_validate(BASE), X86_SYSTEMD, gpus)


def test_a_beta_driver_refuses_the_host_and_says_how_to_choose_the_build():
    gpus = NvidiaGpus().process([MEM, SMI, BETA_DRIVER_ROW])
    with pytest.raises(PlanError, match=r"'580.65.06-beta' is not a plain version number.*set torch.variant"):
        make_plan(HostSpec.model_validate(BASE), X86_SYSTEMD, gpus)
    forced = HostSpec.model_validate({**BASE, "torch": {**BASE["torch"], "variant": "cu128"}})
    assert make_plan(forced, X86_SYSTEMD, gpus).torch.variant == "cu128"


@pytest.mark.parametrize("output", [[], ["", "  "], ["sh: 1: uname: not found"], ["x86_64", "mem_kib=lots"]])
def test_platform_output_that_is_no_platform_is_unreadable(output):
    with pytest.raises(UnreadableFact, match="platform probe"):
        Platform().process(output)


def test_a_platform_probe_that_printed_nothing_is_a_plan_error():
    # the snapshot gives a fact's default() (None) when its command printed nothing or failed
    with pytest.raises(PlanError, match="platform probe.*printed nothing"):
        make_plan(HostSpec.model_validate(BASE), None, NvidiaGpus().process(CPU_HOST))
    with pytest.raises(PlanError, match="GPU probe"):
        make_plan(HostSpec.model_validate(BASE), X86_SYSTEMD, None)


@pytest.mark.parametrize("stats", [{"devices": ["cuda"]}, {"devices": []}, {"devices": [{"type": 5}]}, [], "cuda",
                                   None, {"devices": None}])
def test_system_stats_of_any_other_shape_has_no_device(stats):
    assert device_type(stats) is None


def test_system_stats_without_a_device_fails_the_health_check_on_that_host():
    answer = {re.compile(r"^curl -s -f -m 5 .*\|\| true$"): '{"devices":["cuda"]}'}
    executed, *_ = run_op(wait_healthy, answer, url="http://127.0.0.1:8188/system_stats", timeout_s=5,
                          log_command="true", expect_device="cuda")
    (command,) = [c for c in executed if c.startswith("echo 'comfyinfra:")]
    assert "answered without devices[0].type" in command and command.endswith("exit 1")


@pytest.mark.parametrize("answer", ['{"devices":["cuda"]}', "[]", "not json"])
def test_after_a_restart_the_device_check_on_the_host_says_what_is_wrong(answer):
    executed, *_ = run_op(wait_healthy, {re.compile(r"^curl -s -f -m 5"): ""}, url="http://127.0.0.1:8188/system_stats",
                          timeout_s=5, log_command="true", expect_device="cuda")
    check = shlex.split(op_commands(executed)[-1].split(" | ", 1)[1])  # python3 -c <program>, fed /system_stats
    run = subprocess.run(check, input=answer, capture_output=True, text=True, timeout=30)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip().endswith("answered without devices[0].type, which ComfyUI's /system_stats has")


@pytest.mark.parametrize("output", [["Traceback (most recent call last):"], ["[]"], ['{"sdxl": 1}'], ['"ok"']])
def test_model_helper_output_that_is_no_states_is_unreadable(output):
    with pytest.raises(UnreadableFact, match="model helper"):
        ModelStates().process(output)
    assert ModelStates().process(['{"sdxl": "ok"}']) == {"sdxl": "ok"}


def test_any_exception_from_a_parser_in_the_snapshot_names_the_fact():
    batch = merge((probe(NvidiaGpus), probe(Platform)))
    sections, status = Batch().process([f"{MARK} 0", MEM, SMI, UNKNOWN_ERROR_ROW, f"{MARK} rc=0",
                                        f"{MARK} 1", "x86_64", "mem_kib=", f"{MARK} rc=0"])
    with pytest.raises(UnreadableFact, match="platform probe"):  # the parser's own message passes through
        values(batch, batch, sections, status)

    class Crashes(Platform):
        def process(self, output):
            return int("x")

    with pytest.raises(UnreadableFact, match=r"Crashes: ValueError: invalid literal"):
        values((probe(Crashes),), (probe(Crashes),), [["x"]], [True])


# --- deploy.py on two @fake hosts, loaded as the CLI loads it ------------------------------------------


def snapshot_answers(command: str, answers: dict[str, list[str]]) -> list[str]:
    """A fake host's output for a snapshot command (one section per fact): each fact whose command contains
    one of `answers`' keys prints those lines and succeeds; any other fails (the snapshot uses its default)."""
    output = []
    for index, section in re.findall(rf"echo '{MARK} (\d+)'; \(\n(.*?)\n\) 2>/dev/null", command, re.S):
        lines = next((lines for key, lines in answers.items() if key in section), None)
        output += [f"{MARK} {index}", *(lines or []), "", f"{MARK} rc={0 if lines is not None else 1}"]
    return output


# a CPU host that reaches its sources (the preflight's probes answer "ok"); every other fact is its default
GOOD = {"uname -m": GOOD_PLATFORM, "--query-gpu": CPU_HOST, "git ls-remote": ["ok"], "whl/cpu/torch/": ["ok"]}
BROKEN = {
    "nvidia-smi [Unknown Error]": ({**GOOD, "--query-gpu": [MEM, SMI, UNKNOWN_ERROR_ROW]}, "memory.total is [Unknown Error]"),
    "beta driver": ({**GOOD, "--query-gpu": [MEM, SMI, BETA_DRIVER_ROW]}, "not a plain version number"),
    "empty platform": ({**GOOD, "uname -m": []}, "platform probe"),
    "model helper prints no JSON": ({**GOOD, "model_sync.py check": ["Traceback (most recent call last):"]},
                                    "check printed"),
}
MODEL = {"url": "https://example.invalid/m.safetensors", "sha256": "a" * 64, "folder": "checkpoints",
         "filename": "m.safetensors"}


@pytest.mark.parametrize("case", BROKEN)
def test_a_broken_host_is_refused_alone_and_the_other_host_deploys(case, monkeypatch):
    broken, why = BROKEN[case]
    answers = {"@fake/good": GOOD, "@fake/bad": broken}
    lookup = FakeConnector._lookup_response

    def respond(connector, command):
        if f"echo '{MARK} 0'" not in command:
            return lookup(connector, command)
        lines = snapshot_answers(command, answers[connector.host.name])
        return True, CommandOutput([OutputLine("stdout", line) for line in lines])

    monkeypatch.setattr(FakeConnector, "_lookup_response", respond)
    data = {**BASE, "fake_delay": 0, "fake_delay_jitter": 0, "models": ["m"], "model_catalog": {"m": MODEL}}
    inventory = Inventory(([("@fake/good", data), ("@fake/bad", data)], {}))
    state = State(inventory=inventory, config=Config())
    monkeypatch.chdir(REPO)
    with ctx_state.use(state):  # as pyinfra_cli.cli does: connect, prepare (load deploy.py per host), execute
        state.set_stage(StateStage.Connect)
        connect_all(state)
        state.set_stage(StateStage.Prepare)
        load_deploy_file(state, str(REPO / "deploy.py"))  # raised for every host before the fix
        state.set_stage(StateStage.Execute)
        run_ops(state)

    good, bad = (inventory.get_host(name).connector.executed_commands for name in ("@fake/good", "@fake/bad"))
    (refusal,) = [c for c in bad if c.startswith("echo 'comfyinfra:")]
    assert "@fake/bad:" in refusal and why in refusal and refusal.endswith("exit 1")
    assert all(f"{MARK} 0" in c or c == refusal for c in bad), "the broken host ran nothing but its refusal"
    assert not any(c.startswith("echo 'comfyinfra:") for c in good)
    assert any("useradd" in c for c in good) and any("model_sync.py sync" in c for c in op_commands(good))
