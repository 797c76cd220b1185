"""Fleet defaults: every knob comfyinfra has, with its default. Hosts and groups override these.

The full reference (types, allowed values) is comfyinfra/spec.py; `python -m comfyinfra.schema`
prints it as JSON schema.
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
# Package sources on the host: torch_index_url (default: download.pytorch.org/whl/<variant>),
# index_url (a PyPI mirror), extra_index_urls, find_links (an offline wheelhouse). No credentials
# in URLs: use ~/.netrc on the host.
pip_sources = {}

# --- Custom nodes --------------------------------------------------------------------------
# Each: {"name": dir under custom_nodes/, "repo": git URL, "ref": full commit or tag}.
# Their requirements install under the torch constraints; a node that needs another torch fails.
custom_nodes = []

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
model_catalog = {}
models = []  # e.g. ["sdxl-base"]; set per kind or per host
models_dir = None  # default <install_root>/models; e.g. a RunPod network volume
model_downloads_parallel = 2  # models of one host downloaded at once

# --- Layout and service --------------------------------------------------------------------
install_root = "/opt/comfyui"  # ComfyUI/, venv/, models/, input/, output/, temp/, user/, logs/
service_user = "comfy"  # created as a system user; owns install_root and runs ComfyUI
python = "python3"  # the host's interpreter for the venv
listen = "127.0.0.1"  # keep ComfyUI on loopback; it has no authentication
# Any other listen address (0.0.0.0, a LAN address) is refused unless a host sets this: whoever reaches the
# port runs workflows, custom-node code included, as the service user. Prefer a reverse proxy with
# authentication in front of a loopback ComfyUI.
expose_unauthenticated = False
port = 8188
service_manager = "auto"  # systemd when it is init, else supervisord
health_timeout_s = 180  # the deploy waits this long for /system_stats after a (re)start
