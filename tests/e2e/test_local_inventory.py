"""The README's main command deploys inventory/local.py; without a reachable ComfyUI source it stops
at once, naming the override, before installing or creating anything."""

import os
import subprocess
import sys
from pathlib import Path

from tests.e2e.harness import REPO_ROOT


def test_unreachable_source_fails_fast_naming_the_override():
    existed_before = Path("/home/comfy/comfyui").exists()
    env = {**os.environ, "PYINFRA_PROGRESS": "off",
           "COMFYINFRA_COMFYUI_REPO": "https://unreachable.invalid/comfyanonymous/ComfyUI.git"}
    proc = subprocess.run([sys.executable, "-m", "pyinfra", "inventory/local.py", "deploy.py", "-y"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 1
    assert "cannot reach https://unreachable.invalid/comfyanonymous/ComfyUI.git" in proc.stderr
    assert "Set comfyui_repo" in proc.stderr and "COMFYINFRA_COMFYUI_REPO" in proc.stderr
    assert "Base system" not in proc.stderr  # stopped at the preflight: nothing installed or created
    assert Path("/home/comfy/comfyui").exists() == existed_before
