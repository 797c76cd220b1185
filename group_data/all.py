"""The fleet's own values: what every host shares and the spec has no default for (or a different one).

Every other knob has its default in one place, comfyinfra/spec.py (its field descriptions are the reference;
`python -m comfyinfra.schema` prints them as JSON schema). Hosts and groups override anything. Nothing here
repeats a spec default (tests/unit/test_render.py checks): set a knob here only to change it fleet-wide.
"""

import os

# --- ComfyUI source ------------------------------------------------------------------------
# Override for mirrors and offline hosts: --data comfyui_repo=/srv/mirror/ComfyUI.git, or the
# COMFYINFRA_COMFYUI_REPO environment variable on the machine running pyinfra.
comfyui_repo = os.environ.get("COMFYINFRA_COMFYUI_REPO", "https://github.com/comfyanonymous/ComfyUI.git")
# A full 40-hex commit or a tag (branches are refused unless comfyui_allow_branch = True).
comfyui_ref = "a125cd84b054a57729b5eecab930ca9408719832"  # v0.3.64, 2025-10-12

# --- Python packages -----------------------------------------------------------------------
# The torch set; only the build variant (cu126/cu128/cu130/cpu) is chosen per host from its GPU,
# driver and CPU architecture (comfyinfra/torch_matrix.py). torchaudio is optional.
torch = {"torch": "2.9.1", "torchvision": "0.24.1", "torchaudio": "2.9.1"}
# ComfyUI 0.3.64 imports `requests` although its requirements.txt omits it.
extra_pip_packages = ["requests"]
# pip_sources (spec default: each host's torch variant index, PyPI for the rest): torch_index_url, index_url
# (a PyPI mirror), extra_index_urls, find_links (an offline wheelhouse). No credentials in URLs: ~/.netrc.

# --- Custom nodes --------------------------------------------------------------------------
# custom_nodes (spec default: none). Each: {"name": dir under custom_nodes/, "repo": git URL, "ref": full
# commit or tag}. Their requirements install under the torch constraints; a node that needs another torch fails.

# --- Models -------------------------------------------------------------------------------
# The fleet's model files by name; hosts (or group_data/<kind>.py) pick names with `models`.
# Each: url (pin a Hugging Face revision: .../resolve/<40-hex commit>/<path>), sha256 (required;
# the file never lands without matching it), size (bytes, optional), folder (checkpoints, vae,
# loras, diffusion_models, text_encoders, ...), filename, and token_env: the NAME of an environment
# variable on the machine running pyinfra (e.g. "HF_TOKEN") for gated models. Example:
#   model_catalog = {"sdxl-base": {
#       "url": "https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/resolve/<commit>/sd_xl_base_1.0.safetensors",
#       "sha256": "<64 hex: X-Linked-Etag of the file>", "size": 6938078334,
#       "folder": "checkpoints", "filename": "sd_xl_base_1.0.safetensors"}}
# Then hosts or group_data/<kind>.py pick `models = ["sdxl-base"]`; `models_dir` (default
# <install_root>/models) moves them, e.g. to a RunPod network volume.

# --- Layout and service --------------------------------------------------------------------
install_root = "/opt/comfyui"  # root's tree; the service writes only input/, output/, temp/, user/, home/
service_user = "comfy"  # created as a system user; runs ComfyUI, owns only what ComfyUI writes
# ComfyUI listens on 127.0.0.1:8188 (spec defaults `listen`, `port`): it has no authentication. Any other
# address is refused unless a host sets expose_unauthenticated = True; prefer a reverse proxy with
# authentication in front of a loopback ComfyUI.
