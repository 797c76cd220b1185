"""Offline hosts, as the README tells users to set them up, deployed for real.

- ComfyUI from a root-owned bare mirror given as a plain path through COMFYINFRA_COMFYUI_REPO, a custom
  node from a root-owned file:// mirror: git refuses another user's repository ("detected dubious
  ownership") unless told to trust it, and the service user is the one who clones.
- Python packages from a wheelhouse only (pip_sources no_index + find_links): no index at all.
- The preflight checks both as the service user, before anything is installed or created: a mirror
  that user can't read, or a torch wheel that is nowhere, stops the host at once.

These deploys take over the e2e host's supervisord program; the last test gives it back.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import requests

from tests.e2e.harness import pyinfra, run

HOST = "target"
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def mirrors(world):
    """Root-owned bare copies of the fixture repos, like /srv/mirror/*.git on an offline host."""
    base = world.root / "mirror"
    base.mkdir()
    for name in ("ComfyUI", "demo-node"):
        run(["git", "clone", "-q", "--bare", str(world.git.base / f"{name}.git"), str(base / f"{name}.git")])
    return base


def offline_data(world, install_root: str, **overrides) -> dict:
    data = world.host_data(install_root=install_root, **overrides)
    del data["comfyui_repo"]  # from COMFYINFRA_COMFYUI_REPO, exactly as the README says
    return data


def deploy(world, data: dict, mirror: Path, name: str = "offline"):
    inventory = world.inventory(name, {HOST: data})
    return pyinfra(inventory, "-y", "--json", env={"COMFYINFRA_COMFYUI_REPO": str(mirror)})


def explain(result) -> str:
    return f"rc={result.rc}\nchanged={result.changed}\nfailed={result.failed}\n--- stderr ---\n{result.stderr[-5000:]}"


def test_a_mirror_the_host_cannot_read_stops_the_host_before_anything(world, mirrors):
    missing = world.root / "private" / "ComfyUI.git"  # root clones: what root can't read is what isn't there
    install_root = str(world.root / "never")
    result = deploy(world, offline_data(world, install_root), missing)
    assert result.rc != 0
    assert f"cannot reach {missing} from this host" in result.stderr, explain(result)
    assert "COMFYINFRA_COMFYUI_REPO" in result.stderr  # the fix is named
    assert not Path(install_root).exists()
    assert result.changes(HOST) == []  # failed at the preflight: nothing was installed or created


def test_a_torch_wheel_found_nowhere_stops_the_host_before_anything(world, mirrors, tmp_path):
    empty = tmp_path / "wheels"
    empty.mkdir()
    tmp_path.chmod(0o755)
    install_root = str(world.root / "never")
    data = offline_data(world, install_root, pip_sources={"no_index": True, "find_links": [str(empty)]})
    result = deploy(world, data, mirrors / "ComfyUI.git")
    assert result.rc != 0
    assert f"cannot get torch==2.13.0+cpu from find-links {empty}" in result.stderr, explain(result)
    assert "pip_sources.find_links" in result.stderr
    assert not Path(install_root).exists() and result.changes(HOST) == []


def test_an_unreachable_torch_index_stops_the_host_before_anything(world, mirrors):
    """A CPU host that can't reach its torch index (and has no wheelhouse) is told so before pip runs."""
    install_root = str(world.root / "never")
    data = offline_data(world, install_root, pip_sources={"torch_index_url": "https://127.0.0.1:9/simple"})
    result = deploy(world, data, mirrors / "ComfyUI.git")
    assert result.rc != 0
    assert "cannot get torch==2.13.0+cpu from https://127.0.0.1:9/simple" in result.stderr, explain(result)
    assert "pip_sources.torch_index_url" in result.stderr
    assert not Path(install_root).exists() and result.changes(HOST) == []


def test_offline_recipe_deploys_from_mirrors_and_a_wheelhouse(world, mirrors, wheelhouse_dir):
    install_root = str(world.root / "offline")
    nodes = [{"name": "demo", "repo": f"file://{mirrors}/demo-node.git", "ref": world.node.commit}]
    data = offline_data(world, install_root, custom_nodes=nodes,
                        pip_sources={"no_index": True, "find_links": [str(wheelhouse_dir)]})
    result = deploy(world, data, mirrors / "ComfyUI.git")
    assert result.rc == 0, explain(result)
    stats = requests.get(f"http://127.0.0.1:{world.port}/system_stats", timeout=5).json()
    assert stats["system"]["pytorch_version"] == "2.13.0+cpu" and install_root in " ".join(stats["system"]["argv"])
    origin = subprocess.run(["git", "-c", "safe.directory=*", "-C", f"{install_root}/ComfyUI", "config",
                             "remote.origin.url"], capture_output=True, text=True).stdout.strip()
    assert origin == str(mirrors / "ComfyUI.git")
    assert "no-index = true" in Path(install_root, "venv", "pip.conf").read_text()
    again = deploy(world, data, mirrors / "ComfyUI.git")
    assert again.rc == 0 and again.changes(HOST) == [], explain(again)


def test_the_e2e_host_is_given_back(world):
    inventory = world.inventory("fleet", {HOST: world.host_data()})
    result = pyinfra(inventory, "-y", "--json")
    assert result.rc == 0, explain(result)
    argv = requests.get(f"http://127.0.0.1:{world.port}/system_stats", timeout=5).json()["system"]["argv"]
    assert world.install_root in " ".join(argv)
