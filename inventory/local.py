"""The embedded default target: this machine, through pyinfra's @local connector (no SSH).

CPU mode when there is no NVIDIA GPU. Run as root (or with passwordless sudo): the deploy installs
OS packages and creates the `comfy` service user, whose home holds the install root.
Without internet, point comfyui_repo at a copy: COMFYINFRA_COMFYUI_REPO=/path/to/ComfyUI.
"""

import getpass
import os

_user = getpass.getuser()
_root_run = _user == "root"

linux = [
    (
        "@local",
        {
            "service_user": "comfy" if _root_run else _user,
            "install_root": "/home/comfy/comfyui" if _root_run else os.path.expanduser("~/comfyui"),
            **({} if _root_run else {"_sudo": True}),
        },
    ),
]
