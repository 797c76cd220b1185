"""What a test deploy of the fixture ComfyUI needs without network: the wheelhouse every wheel comes from
(pip_sources no_index), and the host data of a container host that sees the fixture's bare repos and
that wheelhouse mounted read-only (/srv/mirror, /srv/wheels). Shared by the e2e tests and the benchmarks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

MIRROR, WHEELS = "/srv/mirror", "/srv/wheels"


def make_wheelhouse(house: Path) -> Path | None:
    """torch 2.13.0+cpu from this machine's wheel store, PyYAML and requests with their dependencies downloaded as
    a user would; None when this machine has no such torch wheel."""
    links = os.environ.get("PIP_FIND_LINKS", "").split() + ["/opt/wheels"]
    torch = sorted(w for link in links if Path(link).is_dir() for w in Path(link).glob("torch-2.13.0+cpu-*.whl"))
    if not torch:
        return None
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "-d", str(house),
                    str(torch[0]), "pyyaml", "requests"], check=True, capture_output=True, text=True, timeout=600)
    house.chmod(0o755)
    return house


def container_host_data(connection: dict, comfyui_commit: str, node_commit: str, **overrides) -> dict:
    """Host data deploying the fixture ComfyUI and demo node from the mounted mirrors and wheelhouse."""
    return {
        **connection,
        "comfyui_repo": f"{MIRROR}/ComfyUI.git",
        "comfyui_ref": comfyui_commit,
        "torch": {"torch": "2.13.0"},
        "pip_sources": {"no_index": True, "find_links": [WHEELS]},
        "custom_nodes": [{"name": "demo", "repo": f"file://{MIRROR}/demo-node.git", "ref": node_commit,
                          "node_classes": ["DemoSolidImage", "DemoInvert"]}],
        "install_root": "/opt/comfyui",
        "port": 8188,
        "health_timeout_s": 120,
        "smoke_workflows": ["cpu_smoke.json"],
        "smoke_generate": "cpu_smoke.json",
        **overrides,
    }
