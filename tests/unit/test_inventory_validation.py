"""Malformed inventories are refused before any connection, naming file, host, field and what is allowed.

Each case is a real inventory file loaded by pyinfra's own inventory loader (group_data/ of this
repo included), then validated by comfyinfra.preflight; a few run through the real CLI.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from pyinfra.api import State
from pyinfra.context import ctx_state
from pyinfra_cli.inventory import make_inventory

from comfyinfra.validate import InventoryError, check_inventory

REPO = Path(__file__).resolve().parents[2]
GOOD_NODE = '{"name": "demo", "repo": "https://example.invalid/demo.git", "ref": "' + "b" * 40 + '"}'

# (id, inventory body, substrings that must all appear in the error)
CASES = [
    ("branch-ref", 'linux = [("h1", {"comfyui_ref": "master"})]',
     ["host h1", "field comfyui_ref", "'master' is a branch", "full 40-hex commit or a tag", "comfyui_allow_branch=True"]),
    ("abbreviated-commit", 'linux = [("h1", {"comfyui_ref": "a125cd84"})]',
     ["field comfyui_ref", "abbreviated commit", "full 40-hex commit"]),
    ("port-range", 'linux = [("h1", {"port": 70000})]', ["field port", "less than or equal to 65535"]),
    ("port-type", 'linux = [("h1", {"port": "eighty"})]', ["field port", "valid integer"]),
    ("relative-root", 'linux = [("h1", {"install_root": "opt/comfy"})]', ["field install_root", "is relative", "absolute path"]),
    ("dotdot-root", 'linux = [("h1", {"install_root": "/opt/../etc"})]', ["field install_root", "contains '..'"]),
    ("node-name", 'linux = [("h1", {"custom_nodes": [{"name": "../evil", "repo": "https://x.invalid/a.git", "ref": "v1.0"}]})]',
     ["field custom_nodes[0].name", "not a safe directory name", "allowed: letters, digits"]),
    ("node-branch", 'linux = [("h1", {"custom_nodes": [{"name": "n", "repo": "https://x.invalid/a.git", "ref": "main"}]})]',
     ["field custom_nodes[0].ref", "'main' is a branch", "allow_branch=True"]),
    ("node-missing-repo", 'linux = [("h1", {"custom_nodes": [{"name": "n", "ref": "v1.2"}]})]',
     ["field custom_nodes[0].repo", "required but not set"]),
    ("node-unknown-key", 'linux = [("h1", {"custom_nodes": [{"name": "n", "repo": "https://x.invalid/a.git", "commit": "v1.2"}]})]',
     ["field custom_nodes[0].commit", "unknown field 'commit'"]),
    ("typo-key", 'linux = [("h1", {"comfy_port": 8189})]', ["field comfy_port", "unknown field", "did you mean 'port'"]),
    ("typo-ssh-key", 'linux = [("h1", {"ssh_hostnme": "10.0.0.1"})]', ["field ssh_hostnme", "did you mean 'ssh_hostname'"]),
    ("kind-enum", 'linux = [("h1", {"host_kind": "windows"})]', ["field host_kind", "'windows' is not allowed", "'wsl'", "'linux'"]),
    ("no-kind-group", 'gpus = [("h1", {})]', ["host h1", "field host_kind", "one of the groups wsl, runpod, dgx or linux"]),
    ("torchvision-mismatch", 'linux = [("h1", {"torch": {"torch": "2.9.1", "torchvision": "0.23.0"}})]',
     ["field torch", "torchvision 0.23.0 does not match torch 2.9.1", "allowed: torchvision 0.24.1"]),
    ("torch-variant-in-version", 'linux = [("h1", {"torch": {"torch": "2.9.1+cu128"}})]',
     ["field torch.torch", "plain release X.Y.Z"]),
    ("listen-hostname", 'linux = [("h1", {"listen": "localhost"})]', ["field listen", "allowed: IP addresses"]),
    ("root-user", 'linux = [("h1", {"service_user": "root"})]', ["field service_user", "non-root POSIX user"]),
    ("repo-credentials", 'linux = [("h1", {"comfyui_repo": "https://user:tok@github.com/x/y.git"})]',
     ["field comfyui_repo", "credentials", "netrc"]),
    ("index-credentials", 'linux = [("h1", {"pip_sources": {"index_url": "https://u:p@mirror.invalid/simple"}})]',
     ["field pip_sources.index_url", "must not carry credentials"]),
    ("duplicate-nodes", f'linux = [("h1", {{"custom_nodes": [{GOOD_NODE}, {GOOD_NODE}]}})]',
     ["more than once", "demo"]),
    ("gpu-cc", 'linux = [("h1", {"gpu": {"name": "RTX 3090", "vram_mib": 24576, "compute_capability": "sm_86"}})]',
     ["field gpu.compute_capability", "major.minor"]),
    ("torch-in-extras", 'linux = [("h1", {"extra_pip_packages": ["torch==2.1.0"]})]',
     ["field extra_pip_packages", "pinned in 'torch'"]),
    ("model-sha", 'linux = [("h1", {"model_catalog": {"sd": {"url": "https://x.invalid/sd.safetensors", "sha256": "abc", '
                  '"folder": "checkpoints", "filename": "sd.safetensors"}}})]',
     ["field model_catalog.sd.sha256", "64 lowercase hex"]),
    ("model-folder", 'linux = [("h1", {"model_catalog": {"sd": {"url": "https://x.invalid/sd.safetensors", "sha256": "' + "a" * 64 +
                     '", "folder": "models", "filename": "sd.safetensors"}}})]',
     ["field model_catalog.sd.folder", "not a model folder ComfyUI knows", "checkpoints"]),
    ("model-url-secret", 'linux = [("h1", {"model_catalog": {"sd": {"url": "https://x.invalid/sd?token=hf_abc", "sha256": "' +
                         "a" * 64 + '", "folder": "vae", "filename": "sd.safetensors"}}})]',
     ["field model_catalog.sd.url", "carries a secret", "token_env"]),
    ("model-unknown-name", 'linux = [("h1", {"models": ["sdxl"]})]', ["field models", "'sdxl' not in model_catalog"]),
    ("model-filename", 'linux = [("h1", {"model_catalog": {"sd": {"url": "https://x.invalid/a", "sha256": "' + "a" * 64 +
                       '", "folder": "vae", "filename": "../../etc/passwd"}}})]',
     ["field model_catalog.sd.filename", "no '..'"]),
    ("model-token-unset", 'linux = [("h1", {"model_catalog": {"sd": {"url": "https://x.invalid/a", "sha256": "' + "a" * 64 +
                          '", "folder": "vae", "filename": "a.safetensors", "token_env": "COMFYINFRA_UNSET_TOKEN"}}, '
                          '"models": ["sd"]})]',
     ["field model_catalog.sd.token_env", "COMFYINFRA_UNSET_TOKEN is not set on the machine running pyinfra"]),
    ("exclusive-vram-flags", 'linux = [("h1", {"vram_mode": "gpu-only", "extra_args": ["--use-sage-attention", "--use-flash-attention"]})]',
     ["field extra_args", "--use-flash-attention and --use-sage-attention are mutually exclusive"]),
    ("cpu-with-vram-mode", 'linux = [("h1", {"cpu_only": True, "vram_mode": "highvram"})]',
     ["field extra_args", "--cpu and --highvram are mutually exclusive"]),
    ("managed-flag-in-extra-args", 'linux = [("h1", {"extra_args": ["--port=9000"]})]',
     ["--port is set from field 'port'"]),
    ("cleanup-schedule", 'linux = [("h1", {"cleanup": [{"directory": "output", "older_than_minutes": 5, "schedule": "hourly"}]})]',
     ["field cleanup[0].schedule", "five cron fields"]),
    ("service-manager", 'linux = [("h1", {"service_manager": "docker"})]',
     ["field service_manager", "'docker' is not allowed", "'supervisor'"]),
]


def load(tmp_path: Path, body: str):
    inventory_file = tmp_path / "inventory" / "bad.py"
    inventory_file.parent.mkdir(exist_ok=True)
    inventory_file.write_text(textwrap.dedent(body) + "\n")
    cwd = os.getcwd()
    os.chdir(REPO)  # group_data/ is read from the working directory, as the CLI does
    try:
        with ctx_state.use(State()):
            return make_inventory(str(inventory_file), cwd=str(REPO)), str(inventory_file)
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("case_id,body,expected", CASES, ids=[c[0] for c in CASES])
def test_malformed_inventory_is_refused(tmp_path, case_id, body, expected):
    inventory, path = load(tmp_path, body)
    with pytest.raises(InventoryError) as error:
        check_inventory(inventory, path)
    message = str(error.value)
    assert path in message and "nothing was touched" in message
    for text in expected:
        assert text in message, f"{text!r} missing from:\n{message}"


def test_service_secret_with_a_quote_is_refused_before_connecting(tmp_path, monkeypatch):
    monkeypatch.setenv("COMFYINFRA_TEST_QUOTED", "it's")
    inventory, path = load(tmp_path, 'linux = [("h1", {"service_secrets": {"API_KEY": "COMFYINFRA_TEST_QUOTED"}})]')
    with pytest.raises(InventoryError) as error:
        check_inventory(inventory, path)
    assert "field service_secrets.API_KEY" in str(error.value) and "quote or a newline" in str(error.value)
    assert "it's" not in str(error.value)  # the secret itself is never echoed


def test_source_of_a_bad_value_is_named(tmp_path):
    """A value set by a group's data is attributed to that group, not to the inventory file."""
    inventory, path = load(tmp_path, 'linux = [("h1", {})]\nrunpod = ([ "h2" ], {"port": 0})')
    with pytest.raises(InventoryError) as error:
        check_inventory(inventory, path)
    message = str(error.value)
    assert "host h2, field port" in message and "group runpod" in message
    assert "host h1" not in message


def test_every_problem_of_every_host_is_listed(tmp_path):
    inventory, path = load(tmp_path, 'linux = [("h1", {"port": 0, "listen": "x"}), ("h2", {"comfyui_ref": "dev"})]')
    with pytest.raises(InventoryError) as error:
        check_inventory(inventory, path)
    assert "3 problem(s)" in str(error.value)


def test_valid_inventories_pass(tmp_path):
    for name in ("prod.py", "local.py"):
        os.chdir(REPO)
        with ctx_state.use(State()):
            inventory = make_inventory(str(REPO / "inventory" / name), cwd=str(REPO))
        specs = check_inventory(inventory, f"inventory/{name}")
        assert specs and all(spec.comfyui_ref for spec in specs.values())


def test_cli_refuses_before_connecting(tmp_path):
    """The real CLI exits non-zero with the message, and never opens a connection to the host."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    accepted = []

    def watch():
        for _ in range(100):
            try:
                accepted.append(listener.accept())
            except (TimeoutError, OSError):
                if not thread_alive[0]:
                    return

    thread_alive = [True]
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    inventory = tmp_path / "bad.py"
    inventory.write_text(f'linux = [("h1", {{"ssh_hostname": "127.0.0.1", "ssh_port": {port}, "comfyui_ref": "master"}})]\n')
    proc = subprocess.run([sys.executable, "-m", "pyinfra", str(inventory), "deploy.py", "-y"], cwd=REPO,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYINFRA_PROGRESS": "off"})
    thread_alive[0] = False
    watcher.join(timeout=5)
    listener.close()
    assert proc.returncode != 0
    assert "host h1, field comfyui_ref" in proc.stderr and "'master' is a branch" in proc.stderr
    assert str(inventory) in proc.stderr
    assert accepted == [], "pyinfra connected to the host although the inventory was invalid"
