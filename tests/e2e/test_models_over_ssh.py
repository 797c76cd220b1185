"""Model sync through the real deploy: a real HTTP server with Range support on loopback, the sshd
harness host, and ComfyUI (fixture) finding the files through extra_model_paths.yaml."""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.e2e.harness import REPO_ROOT, pyinfra, pyinfra_command
from tests.support.model_server import ModelServer, make_model_file

HOST = "target"
MB = 1 << 20
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def models(world):
    files = world.root / "model-server"
    files.mkdir()
    with ModelServer(files) as server:
        catalog = {}
        for name, folder, size in (("sdxl", "checkpoints", 24 * MB), ("vae", "vae", 3 * MB + 7),
                                   ("big", "diffusion_models", 48 * MB), ("gated", "loras", 6 * MB)):
            sha = make_model_file(files / f"{name}.safetensors", size, seed=len(name) + size)
            catalog[name] = {"url": server.url(f"{name}.safetensors"), "sha256": sha, "size": size,
                             "folder": folder, "filename": f"{name}.safetensors"}
        yield server, catalog


def deploy(world, catalog, names, *args, env=None, **overrides):
    inventory = world.inventory("models", {HOST: world.host_data(model_catalog=catalog, models=names, **overrides)})
    return pyinfra(inventory, "-y", "--json", *args, env=env)


def dest(world, entry) -> Path:
    return Path(world.install_root, "models", entry["folder"], entry["filename"])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def explain(result) -> str:
    return f"rc={result.rc} changed={result.changed}\n{result.stderr[-5000:]}"


def test_fresh_download_lands_verified_and_comfyui_lists_it(world, models):
    server, catalog = models
    result = deploy(world, catalog, ["sdxl", "vae"])
    assert result.rc == 0, explain(result)
    for name in ("sdxl", "vae"):
        assert sha256(dest(world, catalog[name])) == catalog[name]["sha256"]
    listed = requests.get(f"http://127.0.0.1:{world.port}/models/checkpoints", timeout=5).json()
    assert "sdxl.safetensors" in listed  # ComfyUI finds models_dir through extra_model_paths.yaml


def test_redeploy_changes_nothing_and_reads_no_model(world, models):
    server, catalog = models
    blobs = Path(world.install_root, "models", ".blobs")
    markers = {p.name: p.read_text() for p in blobs.glob("*.verified")}
    served = len(server.requests)
    result = deploy(world, catalog, ["sdxl", "vae"])
    assert result.rc == 0 and result.changes(HOST) == [], explain(result)
    assert {p.name: p.read_text() for p in blobs.glob("*.verified")} == markers  # no re-verification happened
    assert len(server.requests) == served


def test_interrupted_download_resumes_with_range(world, models):
    server, catalog = models
    server.faults.rate = 6 * MB  # slow enough to interrupt mid-way
    inventory = world.inventory("models-big", {HOST: world.host_data(model_catalog=catalog, models=["big"])})
    proc = subprocess.Popen(pyinfra_command(inventory, "-y"), cwd=REPO_ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "PYINFRA_PROGRESS": "off"})
    partial = Path(world.install_root, "models", ".blobs", catalog["big"]["sha256"] + ".partial")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not partial.exists() or partial.stat().st_size < 12 * MB):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the deploy dies: SSH session gone ...
    subprocess.run(["pkill", "-KILL", "-f", "model_sync.py sync"])  # ... and its helper with it
    proc.wait()
    kept = partial.stat().st_size
    assert 0 < kept < catalog["big"]["size"]
    server.faults.rate = 0
    result = deploy(world, catalog, ["big"])
    assert result.rc == 0, explain(result)
    resumed = [r for r in server.requests if r.path == "/big.safetensors" and r.range]
    assert resumed and int(resumed[-1].range.split("=")[1].rstrip("-")) >= kept
    assert sha256(dest(world, catalog["big"])) == catalog["big"]["sha256"]


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_model_is_detected_and_replaced(world, models, damage):
    server, catalog = models
    path = dest(world, catalog["vae"])
    with open(path, "r+b") as handle:
        if damage == "flip":  # same size: only the mtime (and the content) tell
            handle.seek(1000)
            handle.write(b"\x00\xff\x00\xff")
        else:
            handle.truncate(1 * MB)
    result = deploy(world, catalog, ["sdxl", "vae"])
    assert result.rc == 0, explain(result)
    assert any(name.startswith("Models | Models:") for name in result.changes(HOST))
    assert sha256(path) == catalog["vae"]["sha256"]


def test_wrong_sha256_fails_the_host_and_nothing_lands(world, models):
    server, catalog = models
    wrong = dict(catalog["vae"], sha256="0" * 64, filename="wrong.safetensors")
    result = deploy(world, {**catalog, "wrong": wrong}, ["wrong"])
    assert result.rc != 0
    assert f"model wrong on host {HOST}: sha256 mismatch: expected {'0' * 64}, got {catalog['vae']['sha256']}" in result.stderr
    assert not dest(world, wrong).exists()


def test_not_enough_disk_is_refused_before_any_byte(world, models, tmp_path_factory):
    server, catalog = models
    mount = world.root / "small-volume"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0777", "tmpfs", str(mount)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        served = len(server.requests)
        result = deploy(world, catalog, ["sdxl"], models_dir=str(mount / "models"))
        assert result.rc != 0
        assert "models need 25165824 more bytes" in result.stderr and "nothing was downloaded" in result.stderr, explain(result)
        assert [r for r in server.requests[served:] if r.method == "GET"] == []
    finally:
        subprocess.run(["umount", str(mount)])
    restored = deploy(world, catalog, ["sdxl", "vae"])  # back to the default models_dir (restart: flags changed)
    assert restored.rc == 0, explain(restored)


def test_token_reaches_the_server_and_nowhere_else(world, models):
    server, catalog = models
    token = "hf_" + secrets.token_hex(20)
    server.faults.tokens["/gated.safetensors"] = token
    server.faults.rate = 3 * MB  # ~2 s of download to look at `ps` during
    gated = {**catalog, "gated": dict(catalog["gated"], token_env="COMFYINFRA_TEST_HF_TOKEN")}
    inventory = world.inventory("models-gated", {HOST: world.host_data(model_catalog=gated, models=["sdxl", "gated"])})
    proc = subprocess.Popen(pyinfra_command(inventory, "-y", "-vv", "--diff"), cwd=REPO_ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYINFRA_PROGRESS": "off", "COMFYINFRA_TEST_HF_TOKEN": token})
    process_lists = []
    while proc.poll() is None:
        process_lists.append(subprocess.run(["ps", "-ewwo", "args"], capture_output=True, text=True).stdout)
        time.sleep(0.2)
    output = proc.stdout.read()
    server.faults.rate = 0
    assert proc.returncode == 0, output[-5000:]
    assert any("model_sync.py sync" in listing for listing in process_lists), output[-3000:]
    assert all(token not in listing for listing in process_lists)
    assert [r.authorization for r in server.requests if r.path == "/gated.safetensors"][-1] == f"Bearer {token}"
    assert token not in output  # pyinfra's -vv log, --diff output
    leaked = subprocess.run(["grep", "-rl", token, world.install_root, "/etc/supervisor"], capture_output=True, text=True)
    assert leaked.stdout == "", f"token written to {leaked.stdout}"
    assert sha256(dest(world, catalog["gated"])) == catalog["gated"]["sha256"]


def test_progress_command_prints_each_models_last_state(world, models):
    server, catalog = models
    inventory = world.inventory("progress", {HOST: world.host_data(model_catalog=catalog, models=["sdxl", "vae"])})
    proc = subprocess.run([*pyinfra_command(inventory)[:-1], "tools/model_progress.py", "--dry"], cwd=REPO_ROOT, text=True,
                          capture_output=True, env={**os.environ, "PYINFRA_PROGRESS": "off"}, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"[{HOST}]" in proc.stderr and "sdxl: in place: " in proc.stderr and "vae: " in proc.stderr
