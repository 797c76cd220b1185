"""Windows boxes that run ComfyUI in WSL2 (the host each `fronts`, in the wsl group) behind IIS, reached over WinRM.

Inventory entries are named @winrm/<name> (comfyinfra's WinRM connector); the host is then called <name>.
Every knob and its default: comfyinfra/windows/spec.py. Passwords never live here: `winrm.password_env` and
`wsl_user_password_env` name environment variables on the machine running pyinfra.
"""

host_kind = "windows"
