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
TOKEN = "hf_" + "abcdefghijklmnopqrstuvwxyz0123456789AB"  # 41 characters, as a pasted Hugging Face token
REDACTED_TOKEN = "'hf_a…' (41 characters)"


def model(folder: str = "vae", filename: str = "a.safetensors", sha: str = "a", **extra: object) -> str:
    """A model_catalog entry as inventory source; sha: one hex digit repeated to 64 (or a literal bad value)."""
    fields = {"url": "https://x.invalid/a", "sha256": sha * 64 if len(sha) == 1 else sha, "folder": folder,
              "filename": filename, **extra}
    return repr(fields)


def cleanup(schedule: str) -> str:
    rule = {"directory": "output", "older_than_minutes": 5, "schedule": schedule}
    return f'linux = [("h1", {{"cleanup": [{rule!r}]}})]'


def blackwell(kind: str, driver: str | None, host: str = "h1", **extra) -> str:
    """An RTX 5090 (compute capability 12.0) declared with a driver version, as an inventory line."""
    gpu = {"name": "NVIDIA GeForce RTX 5090", "vram_mib": 32607, "compute_capability": "12.0", "driver_version": driver}
    return f'{kind} = [({host!r}, {{"gpu": {gpu!r}, **{extra!r}}})]'


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
    ("kind-enum", 'linux = [("h1", {"host_kind": "macos"})]', ["field host_kind", "'macos' is not allowed", "'wsl'", "'linux'"]),
    ("no-kind-group", 'gpus = [("h1", {})]', ["host h1", "field host_kind", "one of the groups wsl, runpod, dgx, linux or windows"]),
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
     ["host h1, field custom_nodes (set in ", "'demo' listed more than once", "allowed: unique custom node names"]),
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
    ("cron-hour-range", cleanup("0 25 * * *"),
     ["field cleanup[0].schedule", "'0 25 * * *' is not a valid cron schedule", "out of range", "allowed: five cron"]),
    ("cron-all-out-of-range", cleanup("99 99 99 99 99"),
     ["'99 99 99 99 99' is not a valid cron schedule", "out of range"]),
    ("cron-zero-step", cleanup("*/0 * * * *"), ["'*/0 * * * *' is not a valid cron schedule", "step '0'"]),
    ("cron-dashes", cleanup("- - - - -"), ["'- - - - -' is not a valid cron schedule", "allowed: five cron fields"]),
    ("cron-never-fires", cleanup("0 0 31 2 *"), ["'0 0 31 2 *' is not a valid cron schedule", "can never occur"]),
    ("cron-newline", cleanup("*/15 * * * *\n"), ["field cleanup[0].schedule", "control character (U+000A) at position 12"]),
    ("cron-percent", cleanup("*/15 * * * %"), ["field cleanup[0].schedule", "'*/15 * * * %': allowed: five cron"]),
    ("cron-macro", cleanup("@hourly"), ["'@hourly': allowed: five cron fields"]),
    ("cron-seconds-field", cleanup("0 */15 * * * *"), ["'0 */15 * * * *': allowed: five cron fields"]),
    ("cron-croniter-extension", cleanup("0 0 L * *"), ["'L' in the day-of-month field is not crontab syntax"]),
    ("cron-backwards-range", cleanup("0 0 * * fri-mon"), ["the range 'fri-mon' in the day-of-week field runs back"]),
    ("cron-step-after-number", cleanup("5/10 * * * *"), ["'5/10' in the minute field", "*/n or a-b/n"]),
    ("model-same-file", 'linux = [("h1", {"model_catalog": {"sd": ' + model() + ', "sd-fixed": ' + model(sha="b") +
     '}})]',
     ["host h1, field model_catalog (set in ", "'sd' and 'sd-fixed' both place vae/a.safetensors with different sha256",
      "allowed: one file per folder/filename"]),
    ("model-bad-entry-only", 'linux = [("h1", {"model_catalog": {"sd": ' + model(sha="abc") + ', "vae": ' +
     model(filename="b.safetensors") + '}, "models": ["sd", "vae"]})]',
     ["field model_catalog.sd.sha256", "(1 problem(s))"]),
    ("gpu-select-negative", 'linux = [("h1", {"gpu_select": -1})]',
     ["host h1, field gpu_select (set in ", "-1: allowed: an nvidia-smi index (0, 1, ...) or a GPU UUID or its prefix",
      "'GPU-3f1c'"]),
    ("gpu-select-list", 'linux = [("h1", {"gpu_select": "GPU-3f1c, GPU-aa"})]',
     ["field gpu_select", "'GPU-3f1c, GPU-aa': allowed: an nvidia-smi index"]),
    ("gpu-select-name", 'linux = [("h1", {"gpu_select": "RTX 3090"})]', ["field gpu_select", "'RTX 3090': allowed:"]),
    ("gpu-select-bool", 'linux = [("h1", {"gpu_select": True})]', ["field gpu_select (set in ", "True: allowed:"]),
    ("gpu-driver-too-old", blackwell("linux", "560.35.03"),
     ["host h1, field gpu.driver_version (set in ", "driver 560.35.03 is too old", "cu128 needs >= 570.26",
      "Upgrade the NVIDIA driver"]),
    ("gpu-driver-too-old-wsl", blackwell("wsl", "566.36"),
     ["field gpu.driver_version", "driver 566.36 is too old", "cu128 needs >= 570.65", "Windows/WSL driver numbering"]),
    ("gpu-driver-too-old-dgx", 'dgx = [("h1", {"gpu": {"name": "NVIDIA GB10", "vram_mib": 122502, '
     '"compute_capability": "12.1", "driver_version": "570.10"}})]',
     ["field gpu.driver_version", "NVIDIA GB10: driver 570.10 is too old", "cu128 needs >= 570.26"]),
    ("gpu-no-build", 'linux = [("h1", {"gpu": {"name": "Tesla K40", "vram_mib": 11441, "compute_capability": "3.5", '
     '"driver_version": "470.256.02"}})]',
     ["host h1, field gpu (set in ", "compute capability 3.5) is not supported by any torch 2.9.1 build",
      "pin another torch release"]),
    ("token-env-inline-secret", 'linux = [("h1", {"model_catalog": {"sd": ' + model(token_env=TOKEN) + '}})]',
     ["field model_catalog.sd.token_env", REDACTED_TOKEN + " is not an environment variable name",
      "allowed: an environment variable NAME"]),
    ("service-secret-inline-value", f'linux = [("h1", {{"service_secrets": {{"HF_TOKEN": {TOKEN!r}}}}})]',
     ["field service_secrets (set in ", REDACTED_TOKEN + " is not an environment variable name",
      "allowed: environment variable NAMES on both sides"]),
    ("service-secret-inline-key", f'linux = [("h1", {{"service_secrets": {{{TOKEN!r}: "HF_TOKEN"}}}})]',
     ["field service_secrets (set in ", REDACTED_TOKEN + " is not an environment variable name"]),
    ("service-secret-key-wrong-type", f'linux = [("h1", {{"service_secrets": {{{TOKEN!r}: 5}}}})]',
     ["field service_secrets (set in ", REDACTED_TOKEN + " is not an environment variable name"]),
    ("no-index-with-an-index", 'linux = [("h1", {"pip_sources": {"no_index": True, "find_links": ["/w"], '
                               '"torch_index_url": "https://download.pytorch.org/whl/cpu"}})]',
     ["field pip_sources", "no_index is set, so torch_index_url would never be used"]),
    ("no-index-without-wheelhouse", 'linux = [("h1", {"pip_sources": {"no_index": True}})]',
     ["field pip_sources", "no_index needs find_links"]),
    ("trailing-newline-in-tag", 'linux = [("h1", {"comfyui_ref": "v0.3.64\\n"})]', ["field comfyui_ref"]),
    ("systemd-under-var-tmp", 'linux = [("h1", {"service_manager": "systemd", "install_root": "/var/tmp/comfy"})]',
     ["field install_root", "PrivateTmp=yes hides", "outside /tmp and /var/tmp"]),
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
    assert TOKEN not in message and TOKEN[:8] not in message  # a secret is never echoed, not even in part


def test_service_secret_with_a_quote_is_refused_before_connecting(tmp_path, monkeypatch):
    monkeypatch.setenv("COMFYINFRA_TEST_QUOTED", "it's")
    inventory, path = load(tmp_path, 'linux = [("h1", {"service_secrets": {"API_KEY": "COMFYINFRA_TEST_QUOTED"}})]')
    with pytest.raises(InventoryError) as error:
        check_inventory(inventory, path)
    assert "field service_secrets.API_KEY" in str(error.value) and "quote or a newline" in str(error.value)
    assert "it's" not in str(error.value)  # the secret itself is never echoed


def test_pydantic_never_echoes_a_secret(tmp_path):
    """pydantic's own errors (wrong types) and its whole-error text carry no inventory value either."""
    from pydantic import ValidationError

    from comfyinfra.spec import HostSpec

    inventory, path = load(tmp_path, 'linux = [("h1", {"model_catalog": {"sd": ' + model(token_env=[TOKEN]) + '}}), '
                                     f'("h2", {{"service_secrets": {{"HF_TOKEN": [{TOKEN!r}]}}}})]')
    with pytest.raises(InventoryError) as error:
        check_inventory(inventory, path)
    message = str(error.value)
    assert "host h1, field model_catalog.sd.token_env" in message and "host h2, field service_secrets" in message
    assert TOKEN not in message
    with pytest.raises(ValidationError) as raw:  # printed whole, pydantic would show each input value
        HostSpec.model_validate({"model_catalog": {"sd": {"token_env": TOKEN}},
                                 "service_secrets": {"A": 1, TOKEN: "B"}})
    assert TOKEN not in str(raw.value)


def test_valid_schedules_and_gpu_selections_pass():
    from comfyinfra.spec import CleanupRule, HostSpec

    for schedule in ("*/15 * * * *", "0 3 * * mon-fri", "0 0 1 jan-mar/2 *", "30 2 * * sun,7", "0 0 31 2 mon",
                     "0-59/5 1,2 * * *"):
        assert CleanupRule(directory="temp", older_than_minutes=1, schedule=schedule).schedule == schedule
    assert CleanupRule(directory="temp", older_than_minutes=1, schedule="0  3 * * *").schedule == "0 3 * * *"
    base = {"host_kind": "linux", "comfyui_repo": "https://x.invalid/c.git", "comfyui_ref": "v0.3.64",
            "torch": {"torch": "2.9.1"}, "install_root": "/opt/comfyui", "service_user": "comfy"}
    for choice in (0, 3, "1", "GPU-3f1c", "GPU-3f1c2a4e-91b0-4d3c-8e7f-0a1b2c3d4e5f"):
        assert HostSpec.model_validate({**base, "gpu_select": choice}).gpu_select == choice


def test_declared_gpu_with_a_recent_driver_or_cpu_only_passes(tmp_path):
    """Only a declared driver that no build fits is refused; cpu_only and a forced variant keep the plan's reading."""
    body = "\n".join([blackwell("linux", "570.124.06"), blackwell("runpod", "560.35.03", "h2", cpu_only=True),
                      blackwell("dgx", "560.35.03", "h3", torch={"torch": "2.9.1", "variant": "cu128"}),
                      blackwell("wsl", None, "h4")])
    inventory, path = load(tmp_path, body)
    assert set(check_inventory(inventory, path)) == {"h1", "h2", "h3", "h4"}


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


def test_valid_inventories_pass(tmp_path, monkeypatch):
    monkeypatch.setenv("WIN3090_WINRM_PASSWORD", "x")  # the Windows host's passwords, by name in inventory/prod.py
    monkeypatch.setenv("WIN3090_COMFY_PASSWORD", "y")
    for name in ("prod.py", "local.py"):
        os.chdir(REPO)
        with ctx_state.use(State()):
            inventory = make_inventory(str(REPO / "inventory" / name), cwd=str(REPO))
        specs = check_inventory(inventory, f"inventory/{name}")
        assert specs and all(getattr(spec, "comfyui_ref", None) or spec.fronts for spec in specs.values())


def test_a_limited_run_needs_only_the_secrets_of_its_hosts():
    """--limit gpu-4090 must not ask for the Windows host's passwords; the Windows host itself does."""
    os.chdir(REPO)
    with ctx_state.use(State()):
        inventory = make_inventory(str(REPO / "inventory" / "prod.py"), cwd=str(REPO))
    assert "gpu-4090" in check_inventory(inventory, "inventory/prod.py", targets={"gpu-4090"})
    with pytest.raises(InventoryError, match="WIN3090_WINRM_PASSWORD is not set"):
        check_inventory(inventory, "inventory/prod.py", targets={"win-3090"})


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
