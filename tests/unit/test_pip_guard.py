"""The pip guard: a node's requirements.txt refused before pip when it could fetch packages from outside
pip_sources, and the torch set verified against its RECORD after requirements were installed.

The host-side helper is exercised in-process (pure functions) and as the operations send it: their
generated commands run here with sh against a tmp checkout and a fake venv.
"""

import base64
import hashlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pyinfra.api import Config, Inventory, State
from pyinfra.api.connect import connect_all
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.operation import add_op
from pyinfra.api.operations import run_ops

from comfyinfra.operations.pip import pip_install_stamped, stamp_value, torch_files_intact

HELPER = Path(__file__).resolve().parents[2] / "comfyinfra" / "host_helpers" / "pip_guard.py"
_spec = importlib.util.spec_from_file_location("pip_guard", HELPER)
pip_guard = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pip_guard)

OPT_IN = "custom_nodes[1].allow_requirement_options"


# --- requirement lines -----------------------------------------------------------------------------

PLAIN = """\
# a comment
numpy>=1.25.0
opencv-python-headless==4.10.0.84  # trailing comment
scikit-image ; python_version >= "3.10"
transformers[torch]>=4.40,<5
huggingface_hub (>=0.20)
requests==2.32.3 --hash=sha256:70761cfe03c773ceb22aa2f671b4757976145175cdfca038c02654d061d6dcc6
einops \\
    ==0.8.0
torch
torchvision
"""


def test_plain_requirements_pass():
    assert pip_guard.refused_lines(PLAIN) == []


REFUSED = [
    ("--find-links https://evil.example/wheels", "--find-links is a pip option line"),
    ("-f /tmp/wheels", "-f is a pip option line"),
    ("-i https://evil.example/simple", "-i is a pip option line"),
    ("--index-url=https://evil.example/simple", "--index-url is a pip option line"),
    ("--extra-index-url https://download.pytorch.org/whl/cu121", "--extra-index-url is a pip option line"),
    ("--trusted-host evil.example", "--trusted-host is a pip option line"),
    ("-e git+https://github.com/u/r#egg=r", "-e is a pip option line"),
    ("--editable .", "--editable is a pip option line"),
    ("--no-index", "--no-index is a pip option line"),
    ("-r other.txt", "-r is a pip option line"),
    ("-c constraints.txt", "-c is a pip option line"),
    ("  --pre", "--pre is a pip option line"),
    ("evilpkg @ https://evil.example/evilpkg-1.0-py3-none-any.whl", "installs from a URL"),
    ("evilpkg@git+https://evil.example/e.git", "installs from a URL"),
    ("git+https://github.com/u/r.git@abc#egg=r", "installs from a URL"),
    ("https://evil.example/torch-2.9.1-cp311-none-any.whl", "installs from a URL"),
    ("file:///srv/wheels/x.whl", "installs from a URL"),
    ("./local", "local path"),
    ("../sibling", "local path"),
    ("/abs/pkg", "local path"),
    ("vendor/pkg", "local path"),
    ("evilpkg-1.0-py3-none-any.whl", "local path or archive"),
    ("thing.tar.gz", "local path or archive"),
    ("pkg @ ./local", "direct reference"),
    ("requests ; python_version > '3' --index-url https://evil.example/simple", "--index-url is a per-requirement"),
    ("pkg --config-settings=x=y", "--config-settings is a per-requirement"),
    ("${EXTRA_OPTIONS}", "environment variable"),
    ("pkg===", "not a plain requirement"),
]


@pytest.mark.parametrize("line,reason", REFUSED, ids=[r[0] for r in REFUSED])
def test_option_url_and_path_lines_are_refused(line, reason):
    (refusal,) = pip_guard.refused_lines(f"numpy\n{line}\n")
    assert refusal.line_number == 2 and reason in refusal.reason


def test_continued_line_is_reported_at_its_first_line():
    (refusal,) = pip_guard.refused_lines("numpy\n\n--extra-index-url \\\n  https://evil.example/simple\nscipy\n")
    assert refusal.line_number == 3 and "https://evil.example/simple" in refusal.line


def test_message_names_owner_file_line_and_field_without_credentials(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("numpy\n--extra-index-url https://user:s3cret@private.example/simple?token=abc123\n")
    (message,) = pip_guard.check_requirements([str(requirements), str(tmp_path / "absent.txt")],
                                              "custom node 'x'", OPT_IN)
    assert message.startswith(f"custom node 'x': {requirements} line 2: ")
    assert f"set {OPT_IN}=True" in message and "Nothing was installed" in message
    assert "s3cret" not in message and "abc123" not in message and "//***@private.example" in message


# --- the install operation on a tmp checkout ---------------------------------------------------------

def run_op(op, responses, before=None, **kwargs):
    """Run one operation (after `before`, an (op, kwargs) pair) on a fake host; returns the commands it issued."""
    inventory = Inventory(([("@fake/h", {"fake_delay": 0, "fake_delay_jitter": 0, "fake_responses": responses})], {}))
    state = State(inventory=inventory, config=Config())
    connect_all(state)
    host = inventory.get_host("@fake/h")
    if before:
        first = add_op(state, before[0], **before[1])[host]
        kwargs["after"] = (first,)
    add_op(state, op, **kwargs)
    try:
        run_ops(state)
    except PyinfraError:
        pass
    return [c for c in host.connector.executed_commands if not c.startswith("cat ")]


def sh(command: str) -> subprocess.CompletedProcess:
    """A generated command run here, as the host's shell would."""
    return subprocess.run(["sh", "-c", command], check=False, capture_output=True, text=True)


@pytest.fixture
def fake_venv(tmp_path):
    """A venv whose python runs the real interpreter, except `-m pip`, which only records its arguments."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\nif [ "$1" = -m ]; then echo "$@" >> {venv}/pip-calls; exit 0; fi\n'
                      f'exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    return venv


def node_install(venv, requirements, **extra):
    return run_op(pip_install_stamped, {re.compile(r"^cat "): "old"}, python=f"{venv}/bin/python",
                  stamp=f"{venv.parent}/stamp", inputs=("pin",), requirement_files=(str(requirements),),
                  owner_label="custom node 'x'", **extra)


def test_node_requirements_with_an_index_line_are_refused_before_pip_unless_the_node_opts_in(tmp_path, fake_venv):
    checkout = tmp_path / "custom_nodes" / "x"
    checkout.mkdir(parents=True)
    (checkout / "requirements.txt").write_text("numpy\n--find-links https://evil.example/wheels\nevil-torch-files\n")
    (command,) = node_install(fake_venv, checkout / "requirements.txt", refuse_options_unless=OPT_IN)
    result = sh(command)
    assert result.returncode == 1
    assert f"comfyinfra: custom node 'x': {checkout}/requirements.txt line 2: " in result.stderr
    assert OPT_IN in result.stderr
    assert not (fake_venv / "pip-calls").exists() and not (tmp_path / "stamp").exists()

    (opted_in,) = node_install(fake_venv, checkout / "requirements.txt")
    assert "check-requirements" not in opted_in and sh(opted_in).returncode == 0
    assert f"-r {checkout}/requirements.txt" in (fake_venv / "pip-calls").read_text()


def test_plain_node_requirements_go_on_to_pip(tmp_path, fake_venv):
    (tmp_path / "requirements.txt").write_text(PLAIN)
    (command,) = node_install(fake_venv, tmp_path / "requirements.txt", refuse_options_unless=OPT_IN)
    result = sh(command)
    assert result.returncode == 0, result.stderr
    assert f"-r {tmp_path}/requirements.txt" in (fake_venv / "pip-calls").read_text()


def test_node_without_requirements_file_installs_nothing(tmp_path, fake_venv):
    (command,) = node_install(fake_venv, tmp_path / "requirements.txt", refuse_options_unless=OPT_IN)
    assert sh(command).returncode == 0
    assert not (fake_venv / "pip-calls").exists()


# --- RECORD verification -----------------------------------------------------------------------------

def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def install(site: Path, name: str, version: str, files: dict[str, bytes], unhashed: tuple[str, ...] = ()) -> Path:
    """A distribution as pip leaves it: its files, and a dist-info whose RECORD lists them (pyc without a hash)."""
    dist_info = site / f"{name}-{version}.dist-info"
    dist_info.mkdir(parents=True)
    rows = []
    for relative, data in files.items():
        path = site / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        rows.append(f"{relative},{'' if relative in unhashed else record_hash(data)},{'' if relative in unhashed else len(data)}")
    rows.append(f"{dist_info.name}/RECORD,,")
    (dist_info / "RECORD").write_text("\n".join(rows) + "\n")
    return dist_info


PYC = "torch/__pycache__/__init__.cpython-311.pyc"
VERIFY = "' verify-records --venv "  # the helper's command after its quoted source (which names it too)


@pytest.fixture
def site(tmp_path):
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    install(site, "torch", "2.9.1+cpu", {"torch/__init__.py": b"import torch._C\n", "torch/_C.so": b"\x7fELF" * 100,
                                         PYC: b"pyc", "../../../bin/torchrun": b"#!python\n"}, unhashed=(PYC,))
    install(site, "numpy", "2.1.0", {"numpy/__init__.py": b"# numpy\n"})
    return site


def test_intact_install_has_no_problems(site):
    assert pip_guard.verify_distribution(str(site), "torch==2.9.1+cpu") == []


def test_altered_and_missing_files_are_reported(site):
    (site / "torch" / "__init__.py").write_text("import os; os.system('id')\n")
    (site / "torch" / "_C.so").unlink()
    assert pip_guard.verify_distribution(str(site), "torch==2.9.1+cpu") == [
        "torch/_C.so: missing", "torch/__init__.py: altered"]


def test_file_outside_site_packages_is_verified(site):
    (site.parents[2] / "bin" / "torchrun").write_text("#!/bin/sh\nevil\n")
    assert pip_guard.verify_distribution(str(site), "torch==2.9.1+cpu") == ["../../../bin/torchrun: altered"]


def test_unhashed_pyc_is_not_compared_but_an_overwrite_by_another_package_is_found(site):
    (site / PYC).write_bytes(b"recompiled by pip for another interpreter run")
    assert pip_guard.verify_distribution(str(site), "torch==2.9.1+cpu") == []
    # a package shipping torch's files: pip overwrites them and lists them in its own RECORD
    install(site, "evil_helper", "1.0", {PYC: b"evil", "torch/__init__.py": b"import os\n"})
    assert pip_guard.verify_distribution(str(site), "torch==2.9.1+cpu") == [
        "torch/__init__.py: altered; also installed by evil-helper 1.0",
        f"{PYC}: also installed by evil-helper 1.0"]


def test_missing_distribution_or_record_is_a_problem(site):
    assert pip_guard.verify_distribution(str(site), "torchvision==0.24.1+cpu") == [
        f"torchvision==0.24.1+cpu is not installed in {site}"]
    (site / "torch-2.9.1+cpu.dist-info" / "RECORD").unlink()
    assert "has no RECORD" in pip_guard.verify_distribution(str(site), "torch==2.9.1+cpu")[0]


def test_weak_or_unknown_hash_algorithm_is_not_trusted(site):
    record = site / "numpy-2.1.0.dist-info" / "RECORD"
    record.write_text("numpy/__init__.py,md5=abc,8\n")
    assert pip_guard.verify_distribution(str(site), "numpy==2.1.0") == [
        "numpy/__init__.py: hash algorithm 'md5' can't be verified"]


def verify_command(site: Path, after_install: bool) -> list[str]:
    """The verification's command, run after a requirements install that was (or was not) needed."""
    venv = site.parents[2]
    install_op = (pip_install_stamped, {"python": f"{venv}/bin/python", "stamp": "/s/st", "inputs": ("x",),
                                        "requirement_files": ("/r.txt",)})
    stamp = {re.compile(r"^cat /s/st"): "old" if after_install else stamp_value(("x",))}
    commands = run_op(torch_files_intact, stamp, before=install_op, python=f"{venv}/bin/python",
                      requirements=("torch==2.9.1+cpu",), invalidate=(str(venv.parent / "stamp-a"),))
    return [c for c in commands if VERIFY in c]


def test_verification_runs_only_after_an_install(site):
    assert verify_command(site, after_install=False) == []
    assert len(verify_command(site, after_install=True)) == 1


def test_verification_command_fails_the_host_and_forgets_the_stamps(site, fake_venv):
    tmp = site.parents[3]
    (tmp / "stamp-a").write_text("done")
    (command,) = verify_command(site, after_install=True)
    assert sh(command).returncode == 0
    assert (tmp / "stamp-a").exists()

    install(site, "evil_helper", "1.0", {"torch/__init__.py": b"import os\n"})
    result = sh(command)
    assert result.returncode == 1
    assert "comfyinfra: torch==2.9.1+cpu's installed files no longer match its RECORD" in result.stderr
    assert "torch/__init__.py: altered; also installed by evil-helper 1.0" in result.stderr
    assert "--force-reinstall --no-deps torch==2.9.1+cpu" in result.stderr
    assert not (tmp / "stamp-a").exists()  # the next deploy installs and verifies again


# --- wiring: deploy.py on a fresh @fake host ---------------------------------------------------------

def test_deploy_guards_each_nodes_requirements_and_verifies_torch_after_the_installs(monkeypatch):
    from pyinfra.api.state import StateStage
    from pyinfra.connectors.fake import FakeConnector
    from pyinfra.connectors.util import CommandOutput, OutputLine
    from pyinfra.context import ctx_state
    from pyinfra_cli.util import load_deploy_file

    from comfyinfra.operations.snapshot import MARK
    from tests.unit.test_plan import BASE

    repo = Path(__file__).resolve().parents[2]
    # a CPU host whose sources answer; every other fact prints nothing (a fresh host)
    answers = {"uname -m": ["x86_64", "wsl=0", "systemd=1", "mem_kib=16384000"],
               "--query-gpu": ["mem_kib=16384000", "nvidia_smi="], "git ls-remote": ["ok"], "whl/cpu/torch/": ["ok"]}
    lookup = FakeConnector._lookup_response

    def respond(connector, command):
        if f"echo '{MARK} 0'" not in command:
            return lookup(connector, command)
        output = []
        for index, section in re.findall(rf"echo '{MARK} (\d+)'; \(\n(.*?)\n\) 2>/dev/null", command, re.DOTALL):
            lines = next((lines for key, lines in answers.items() if key in section), None)
            output += [f"{MARK} {index}", *(lines or []), "", f"{MARK} rc={0 if lines is not None else 1}"]
        return True, CommandOutput([OutputLine("stdout", line) for line in output])

    monkeypatch.setattr(FakeConnector, "_lookup_response", respond)
    nodes = [{"name": "guarded", "repo": "https://example.invalid/a.git", "ref": "b" * 40},
             {"name": "trusted", "repo": "https://example.invalid/b.git", "ref": "c" * 40,
              "allow_requirement_options": True}]
    data = {**BASE, "custom_nodes": nodes, "fake_delay": 0, "fake_delay_jitter": 0}
    inventory = Inventory(([("@fake/h", data)], {}))
    state = State(inventory=inventory, config=Config())
    monkeypatch.chdir(repo)
    with ctx_state.use(state):
        state.set_stage(StateStage.Connect)
        connect_all(state)
        state.set_stage(StateStage.Prepare)
        load_deploy_file(state, str(repo / "deploy.py"))
        state.set_stage(StateStage.Execute)
        run_ops(state)

    commands = inventory.get_host("@fake/h").connector.executed_commands
    installs = {name: next(c for c in commands if f"custom_nodes/{name}/requirements.txt" in c and "pip install" in c)
                for name in ("guarded", "trusted")}
    assert "check-requirements" in installs["guarded"] and "custom_nodes[0].allow_requirement_options" in installs["guarded"]
    assert "check-requirements" not in installs["trusted"]
    (verify,) = [c for c in commands if VERIFY in c]
    assert commands.index(verify) > commands.index(installs["trusted"])
    assert "torch==2.9.1+cpu" in verify and "requirements-node-guarded.sha256" in verify
