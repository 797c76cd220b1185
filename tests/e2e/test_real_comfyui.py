"""Opt-in: deploy the real ComfyUI (not the fixture) through the same sshd harness.

ComfyUI can't be cloned here, so this runs only when COMFYINFRA_REAL_COMFYUI names a local git
repository of it (bare or not); COMFYINFRA_REAL_COMFYUI_REF picks the commit (default v0.3.64).
Its tree is served by the harness's git daemon as a one-commit repo. torch 2.14.1 + torchvision
0.29.1 come from the machine's local package store (see ../shared/reference/comfyui-real-cpu.md).
It takes over the supervisord program of the fixture deploys, so it runs last.
"""

import os
import tempfile
import time
from pathlib import Path

import pytest
import requests

from tests.e2e.harness import export_tree, free_port, pyinfra

REAL = os.environ.get("COMFYINFRA_REAL_COMFYUI")
REF = os.environ.get("COMFYINFRA_REAL_COMFYUI_REF", "a125cd84b054a57729b5eecab930ca9408719832")
LOCAL_INDEXES = [f"file://{p}" for p in ("/opt/pypi/simple", "/opt/pypi-more/simple") if Path(p).is_dir()]

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not REAL, reason="set COMFYINFRA_REAL_COMFYUI=<ComfyUI git repo>")]


def test_real_comfyui_deploys_answers_and_loads_the_custom_node(world):
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "ComfyUI"
        missing = export_tree(REAL, REF, tree)
        repo = world.git.repo(tree, "ComfyUI-real")
    port = free_port()
    data = world.host_data(
        comfyui_repo=repo.url, comfyui_ref=repo.commit, port=port, health_timeout_s=600,
        install_root=str(world.root / "install-real"),
        torch={"torch": "2.14.1", "torchvision": "0.29.1", "variant": "pypi"},
        pip_sources={"extra_index_urls": LOCAL_INDEXES, "find_links": world.host_data()["pip_sources"]["find_links"]},
    )
    inventory = world.inventory("real", {"target": data})
    started = time.monotonic()
    result = pyinfra(inventory, "-y", "--json", timeout=1800)
    elapsed = time.monotonic() - started
    assert result.rc == 0, result.stderr[-6000:]
    stats = requests.get(f"http://127.0.0.1:{port}/system_stats", timeout=10).json()
    assert stats["system"]["comfyui_version"] == "0.3.64" and stats["system"]["pytorch_version"].startswith("2.14.1")
    assert stats["devices"][0]["type"] == "cpu" and "--cpu" in stats["system"]["argv"]
    info = requests.get(f"http://127.0.0.1:{port}/object_info", timeout=30).json()
    assert info["DemoSolidImage"]["python_module"] == "custom_nodes.demo"
    again = pyinfra(inventory, "-y", "--json")
    assert again.changes("target") == [], again.stderr[-4000:]
    print(f"\nreal ComfyUI: first deploy {elapsed:.0f} s, {len(info)} node classes, blobs missing from the copy: {missing}")
