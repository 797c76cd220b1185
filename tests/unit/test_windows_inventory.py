"""A Windows host's inventory is checked before anything connects, together with the WSL host it fronts.

Real inventory files loaded by pyinfra's loader (group_data/ of this repo included: windows.py sets the kind),
validated by comfyinfra.validate as the preflight does; then the plan both hosts give the Windows side.
"""

from __future__ import annotations

import pytest

from comfyinfra.artifacts import WSL_CONF, host_artifacts
from comfyinfra.plan import plan_without_host
from comfyinfra.validate import InventoryError, check_inventory
from comfyinfra.windows.plan import make_windows_plan
from tests.unit.test_inventory_validation import load

PASSWORD = "Tr0ub4dor&3-horse-battery"  # what a user might paste into a *_env field by mistake
WSL = {"platform_init": "systemd"}
WINDOWS = {"fronts": "wsl-box", "winrm": {"host": "win.example.com", "user": "WIN\\deploy",
                                          "password_env": "WIN_WINRM_PASSWORD"},
           "site": {"host_name": "comfy.example.com", "certificate": {"subject": "CN=*.example.com"}},
           "wsl_user": "WIN\\comfy", "wsl_user_password_env": "WIN_COMFY_PASSWORD"}


def body(windows: dict | None = None, wsl: dict | None = None, extra: str = "") -> str:
    return (f"wsl = [('wsl-box', {({**WSL, **(wsl or {})})!r})]\n"
            f"windows = [('win-box', {({**WINDOWS, **(windows or {})})!r})]\n{extra}")


@pytest.fixture(autouse=True)
def passwords(monkeypatch):
    monkeypatch.setenv("WIN_WINRM_PASSWORD", PASSWORD)
    monkeypatch.setenv("WIN_COMFY_PASSWORD", PASSWORD + "-2")


def problems(tmp_path, text: str) -> str:
    inventory, path = load(tmp_path, text)
    with pytest.raises(InventoryError) as error:
        check_inventory(inventory, path)
    message = str(error.value)
    assert PASSWORD[:6] not in message  # never echoed, not even in part
    return message


CASES = [
    ("password-pasted", {"winrm": {**WINDOWS["winrm"], "password_env": PASSWORD}}, None,
     ["host win-box, field winrm.password_env", "not an environment variable name", "never the password itself"]),
    ("cors-any", {"cors_origins": ["*"]}, None, ["cors_origins '*'", "cors_allow_any_origin = True"]),
    ("cors-path", {"cors_origins": ["https://app.example.com/x"]}, None,
     ["field cors_origins[0]", "scheme, host and port only"]),
    ("upload-over-comfyui", {"upload_limit_mb": 200}, None,
     ["field upload_limit_mb", "200 MiB is more than wsl-box's max_upload_size_mb 100", "at most 100"]),
    ("fronts-unknown", {"fronts": "nobody"}, None, ["field fronts", "no host 'nobody'", "wsl-box"]),
    ("fronted-open", None, {"listen": "0.0.0.0", "expose_unauthenticated": True},
     ["field fronts", "listens on 0.0.0.0", "IIS would not be the only way in"]),
    ("fronted-cors", None, {"extra_args": ["--enable-cors-header"]},
     ["field cors_origins", "CORS headers twice", "remove the flag"]),
    ("fronted-undeclared", None, {"platform_init": None},
     ["field fronts", "can't be planned without connecting", "platform_init"]),
    ("winrm-http", {"winrm": {**WINDOWS["winrm"], "scheme": "http"}}, None,
     ["field winrm", "scheme http", "allow_insecure_transport = True"]),
    ("thumbprint", {"site": {**WINDOWS["site"], "certificate": {"thumbprint": "abc"}}}, None,
     ["field site.certificate.thumbprint", "40 hexadecimal digits"]),
    ("install-dir", {"install_dir": "C:\\ProgramData"}, None, ["field install_dir", "every user shares"]),
    ("account", {"wsl_user": "WIN\\co'mfy"}, None, ["field wsl_user", "not a Windows account name"]),
    ("network", {"allowed_ips": ["192.168.1.7/24"]}, None, ["field allowed_ips", "host bits zero"]),
]


@pytest.mark.parametrize("case_id,windows,wsl,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_windows_host_is_refused_before_connecting(tmp_path, case_id, windows, wsl, expected):
    message = problems(tmp_path, body(windows, wsl))
    for text in expected:
        assert text in message, f"{text!r} missing from:\n{message}"


def test_fronting_a_linux_host_is_refused(tmp_path):
    message = problems(tmp_path, body({"fronts": "box"}, extra="linux = [('box', {})]\n"))
    assert "field fronts" in message and "box is a linux host" in message


def test_unset_passwords_are_named_not_shown(tmp_path, monkeypatch):
    monkeypatch.delenv("WIN_COMFY_PASSWORD")
    monkeypatch.setenv("WIN_WINRM_PASSWORD", PASSWORD + "\n")
    message = problems(tmp_path, body())
    assert "field wsl_user_password_env" in message and "WIN_COMFY_PASSWORD is not set" in message
    assert "field winrm.password_env" in message and "control character" in message


def plans(tmp_path, windows: dict | None = None, wsl: dict | None = None):
    tmp_path.mkdir(exist_ok=True)
    inventory, path = load(tmp_path, body(windows, wsl))
    specs = check_inventory(inventory, path)
    fronted = plan_without_host(specs["wsl-box"])
    return make_windows_plan("win-box", specs["win-box"], fronted), fronted


def test_the_windows_plan_takes_port_limit_and_backend_from_the_fronted_host(tmp_path):
    plan, _ = plans(tmp_path, {"upload_limit_mb": 500}, {"port": 8288, "max_upload_size_mb": 512})
    assert plan.proxy_target == "http://127.0.0.1:8288{UNENCODED_URL}"
    assert plan.fronted.health_url == "http://127.0.0.1:8288/system_stats"
    assert plan.upload_limit_bytes == 500 * 1024 * 1024
    assert plan.fronted.start == ("/usr/bin/systemctl", "start", "comfyui.service")
    supervised, _ = plans(tmp_path / "again", wsl={"platform_init": "other"})
    assert supervised.fronted.backend == "supervisor" and "supervisord -c" in supervised.fronted.start[-1]
    assert plan.wslconfig == "C:\\Users\\comfy\\.wslconfig"


def test_the_default_limit_is_100_mib_in_bytes(tmp_path):
    plan, _ = plans(tmp_path)
    assert plan.upload_limit_bytes == 104857600


def test_wsl_conf_closes_interop_and_the_windows_drives_unless_asked(tmp_path):
    _, fronted = plans(tmp_path)
    conf = next(a for a in host_artifacts(fronted) if a.dest == WSL_CONF).render().decode()
    assert "[boot]\nsystemd=true\n" in conf
    assert "[interop]\nenabled=false\nappendWindowsPath=false\n" in conf
    assert 'options="uid=0,gid=0,umask=077"' in conf
    _, open_ = plans(tmp_path / "again", wsl={"wsl_windows_access": True, "wsl_default_user": "fred"})
    conf = next(a for a in host_artifacts(open_) if a.dest == WSL_CONF).render().decode()
    assert "[interop]" not in conf and "[user]\ndefault=fred\n" in conf
