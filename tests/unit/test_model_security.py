"""Model tokens and model integrity (issue 10, sections 3 and 4), each finding reproduced and closed:

- the spec and the preflight: no token over http://, no credential in a model URL's query, no token value
  that an HTTP header can't carry (and the value is never shown);
- the host helper, against a real HTTP server on loopback: the Authorization header only to the URL's own
  origin, reading stops at the declared size, a marker vouches only for the file it was written for, and
  nothing the helper writes follows a link;
- the deploy: the tokens reach the sync command's stdin and no other command (facts included).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from pyinfra.api import Config, Inventory, State
from pyinfra.api.connect import connect_all
from pyinfra.api.deploy import add_deploy
from pyinfra.api.operations import run_ops
from pyinfra.connectors.fake import FakeConnector

from comfyinfra.facts import GpuProbe, HostPlatform
from comfyinfra.plan import make_plan
from comfyinfra.spec import HostSpec, Model
from comfyinfra.validate import InventoryError, check_inventory
from tests.support.model_server import ModelServer, make_model_file
from tests.unit.test_inventory_validation import load, model

HELPER = Path(__file__).resolve().parents[2] / "comfyinfra" / "host_helpers" / "model_sync.py"
_spec = importlib.util.spec_from_file_location("model_sync_security", HELPER)
model_sync = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(model_sync)

MiB = 1 << 20
SIZE = MiB + 4321
TOKEN = "hf_" + "Zq8xW2mVt7LkP4nR9sYb3JcD6fHg1TuE"
TOKEN_ENV = "COMFYINFRA_TEST_MODEL_TOKEN"


# --- spec and preflight ------------------------------------------------------------------------------


def refusal(tmp_path, body: str) -> str:
    inventory, path = load(tmp_path, body)
    with pytest.raises(InventoryError) as error:
        check_inventory(inventory, path)
    return str(error.value)


def test_a_token_is_refused_over_http(tmp_path, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    entry = model(url="http://models.example/a.safetensors", token_env=TOKEN_ENV)
    message = refusal(tmp_path, f'linux = [("h1", {{"model_catalog": {{"sd": {entry}}}, "models": ["sd"]}})]')
    assert "host h1, field model_catalog.sd" in message
    assert f"url is http:// and token_env {TOKEN_ENV} sends a bearer token" in message
    assert "allowed with token_env: an https:// URL" in message


def test_http_without_a_token_and_https_with_one_pass():
    for url, token_env in (("http://mirror.lan/a.safetensors", None), ("https://huggingface.co/a", TOKEN_ENV),
                           ("http://127.0.0.1:8000/a.safetensors", TOKEN_ENV)):  # a mirror on the host itself
        Model.model_validate({"url": url, "sha256": "a" * 64, "folder": "vae", "filename": "a.safetensors",
                              "token_env": token_env})


PRESIGNED = [
    ("s3-sigv4", ("https://b.s3.amazonaws.com/m.safetensors?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="
                  "AKIAEXAMPLE%2F20250101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=0f1e2d3c4b5a69788796a5b4"),
     "x-amz-credential"),
    ("s3-session", "https://b.s3.amazonaws.com/m?X-Amz-Security-Token=FQoGZXIvYXdzEXAMPLESESSIONTOKEN",
     "x-amz-security-token"),
    ("s3-sigv2", "https://b.s3.amazonaws.com/m?AWSAccessKeyId=AKIAEXAMPLE&Expires=1700000000&Signature=c2lnbmF0dXJl",
     "awsaccesskeyid"),
    ("gcs", "https://storage.googleapis.com/b/m?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Signature=abcdef0123456789",
     "x-goog-signature"),
    ("azure-sas", "https://a.blob.core.windows.net/c/m.safetensors?sv=2022-11-02&se=2025-01-01&sp=r&sig=c2VjcmV0c2ln",
     "sig"),
    ("api_key", "https://civitai.example/api/download/models/1?type=Model&api_key=5f4dcc3b5aa765d61d8327deb882cf99",
     "api_key"),
    ("apikey-case", "https://x.example/m?APIKEY=5f4dcc3b5aa765d61d8327deb882cf99", "apikey"),
    ("access_token", "https://x.example/m?access_token=ya29.a0AfH6SMBexample", "access_token"),
    ("token-encoded-name", "https://civitai.example/api/download/models/1?%74oken=5f4dcc3b5aa765d61d8327deb882cf99",
     "token"),
    ("google-key", "https://x.example/m?key=AIzaSyA1b2C3d4E5f6G7h8I9j0KLMNOPQRSTUVW", "key"),
]


@pytest.mark.parametrize("url,parameter", [c[1:] for c in PRESIGNED], ids=[c[0] for c in PRESIGNED])
def test_credentials_in_a_model_url_are_refused(tmp_path, url, parameter):
    secret = url.rsplit("=", 1)[1]
    message = refusal(tmp_path, f'linux = [("h1", {{"model_catalog": {{"sd": {model(url=url)}}}}})]')
    assert "field model_catalog.sd.url" in message
    assert f"the URL carries a secret (query parameter {parameter!r})" in message
    assert "put the token in token_env instead" in message and "x-amz-signature" in message  # the list is given
    assert secret not in message and secret[:8] not in message


@pytest.mark.parametrize("url", ["https://huggingface.co/o/r/resolve/0123abcd/m.safetensors?download=true",
                                 "https://mirror.example/get?key=checkpoints/sd_xl_base_1.0.safetensors",
                                 "https://mirror.example/get?key=short"])
def test_plain_query_parameters_pass(url):
    Model.model_validate({"url": url, "sha256": "a" * 64, "folder": "vae", "filename": "a.safetensors"})


@pytest.mark.parametrize("value", [TOKEN + "\n", TOKEN + "\r\n", "Bearer " + TOKEN, TOKEN + "\x00", TOKEN + "é"])
def test_a_token_an_http_header_cant_carry_is_refused_without_showing_it(tmp_path, monkeypatch, value):
    if "\x00" in value:  # no real environment holds a NUL: the check is on the value as read
        monkeypatch.setattr(os, "environ", {**os.environ, TOKEN_ENV: value})
    else:
        monkeypatch.setenv(TOKEN_ENV, value)
    entry = model(url="https://huggingface.co/a", token_env=TOKEN_ENV)
    message = refusal(tmp_path, f'linux = [("h1", {{"model_catalog": {{"sd": {entry}}}, "models": ["sd"]}})]')
    assert "host h1, field model_catalog.sd.token_env" in message
    assert f"the value of {TOKEN_ENV} contains a space, a control character (a trailing newline?)" in message
    assert TOKEN not in message and TOKEN[:8] not in message


# --- the host helper: fixtures ---------------------------------------------------------------------


@pytest.fixture
def sha(server):
    return make_model_file(server.root / "sd.safetensors", SIZE)


def manifest(tmp_path, server, sha, size=SIZE, name="sd.safetensors", **extra):
    entry = {"name": "sd", "url": server.url(name), "sha256": sha, "size": size,
             "dests": [str(tmp_path / "models" / "checkpoints" / "sd.safetensors")], **extra}
    return {"host": "h1", "blobs": str(tmp_path / "models" / ".blobs"), "logs": str(tmp_path / "logs"), "parallel": 1,
            "models": [entry]}


def paths(m):
    blob = Path(m["blobs"]) / m["models"][0]["sha256"]
    return blob, Path(f"{blob}.verified"), Path(m["models"][0]["dests"][0])


# --- the Authorization header goes to the URL's origin only ------------------------------------------


def redirected(url: str, to: str) -> urllib.request.Request:
    """The request the helper's own redirect handler makes for a 302 from `url` to `to`."""
    handler = next(h for h in model_sync.OPENER.handlers if isinstance(h, urllib.request.HTTPRedirectHandler))
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    return handler.redirect_request(request, None, 302, "Found", {}, to)


@pytest.mark.parametrize("url,to", [
    ("https://models.example/a", "http://models.example/a"),  # same host and default-port netloc, clear text
    ("https://models.example/a", "https://cdn.example/a"),
    ("https://models.example/a", "https://models.example:8443/a"),
    ("http://127.0.0.1:8000/a", "https://127.0.0.1:8000/a"),
])
def test_authorization_is_dropped_on_a_redirect_to_another_scheme_host_or_port(url, to):
    assert redirected(url, to).get_header("Authorization") is None


@pytest.mark.parametrize("url,to", [("https://models.example/a", "https://models.example/b"),
                                    ("https://Models.example:443/a", "https://models.example/b")])
def test_authorization_follows_a_redirect_on_the_same_origin(url, to):
    assert redirected(url, to).get_header("Authorization") == f"Bearer {TOKEN}"


def test_authorization_never_reaches_another_server_through_the_helper(tmp_path, server, sha):
    with ModelServer(server.root) as other:  # same address, another port: another origin
        server.faults.redirects["/moved"] = other.url("sd.safetensors")
        model_sync.sync(manifest(tmp_path, server, sha, name="moved", token=TOKEN))
    assert server.requests[0].authorization == f"Bearer {TOKEN}"
    assert [r.authorization for r in other.requests] == [None]


# --- a token an HTTP header can't carry --------------------------------------------------------------


def test_a_token_with_a_trailing_newline_fails_without_showing_it(tmp_path, server, sha):
    """Before: http.client raised ValueError("Invalid header value b'Bearer hf_...\\n'"), and its traceback
    printed the token."""
    m = manifest(tmp_path, server, sha, token=TOKEN + "\n")
    proc = subprocess.run([sys.executable, str(HELPER), "sync"], input=json.dumps(m), capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 1
    assert "model sd on host h1: its token contains a space, a control character (a trailing newline?)" in proc.stderr
    assert "nothing was downloaded" in proc.stderr and server.requests == []
    assert TOKEN[3:] not in proc.stdout + proc.stderr


def test_an_unexpected_failure_prints_its_traceback_without_the_tokens():
    m = {"models": [{"token": TOKEN + "\n"}]}
    text = f"ValueError: Invalid header value b'Bearer {TOKEN}\\n'\n  token={TOKEN + chr(10)!r}"
    cleaned = model_sync.without_tokens(text, m)
    assert TOKEN[3:] not in cleaned and "<token>" in cleaned


# --- reading stops at the declared size --------------------------------------------------------------


@pytest.fixture
def bytes_read(monkeypatch):
    """Every body byte the helper reads from a response."""
    counted = []
    real_open = model_sync.open_url

    def counting_open(*args, **kwargs):
        response = real_open(*args, **kwargs)
        real_read = response.read
        response.read = lambda *a: counted.append(len(chunk := real_read(*a))) or chunk
        return response

    monkeypatch.setattr(model_sync, "open_url", counting_open)
    return counted


def test_a_body_longer_than_announced_size_is_not_read(tmp_path, server, bytes_read):
    big = make_model_file(server.root / "big.safetensors", 8 * MiB)
    m = manifest(tmp_path, server, big, size=MiB, name="big.safetensors")
    with pytest.raises(model_sync.SyncError, match="model sd on host h1: the server announces 8388608 bytes, the "
                                                   "catalog declares 1048576 .*the download was discarded"):
        model_sync.sync(m)
    assert sum(bytes_read) == 0 and list(Path(m["blobs"]).iterdir()) == []


def test_an_unannounced_body_is_read_up_to_the_declared_size_and_one_byte(tmp_path, server, bytes_read):
    big = make_model_file(server.root / "big.safetensors", 8 * MiB)
    server.faults.unannounced.add("/big.safetensors")
    m = manifest(tmp_path, server, big, size=MiB, name="big.safetensors")
    with pytest.raises(model_sync.SyncError, match="the server sent more than the declared 1048576 bytes"):
        model_sync.sync(m)
    assert sum(bytes_read) == MiB + 1 and list(Path(m["blobs"]).iterdir()) == []


def test_an_unannounced_body_of_the_declared_size_lands(tmp_path, server, sha):
    server.faults.unannounced.add("/sd.safetensors")
    m = manifest(tmp_path, server, sha)
    model_sync.sync(m)
    assert model_sync.check(m) == {"sd": "ok"}


# --- a marker vouches only for the file it was written for -------------------------------------------


def forge(m, content: bytes, with_ctime: bool):
    """What the service user could do where it could write: a tiny blob linked into place, and a marker matching
    its stat()."""
    blob, marker, dest = paths(m)
    blob.parent.mkdir(parents=True, exist_ok=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(content)
    os.link(blob, dest)
    st = blob.stat()
    record = {"sha256": m["models"][0]["sha256"], "size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}
    if with_ctime:
        record["ctime_ns"] = st.st_ctime_ns
    marker.write_text(json.dumps(record))
    return blob


@pytest.mark.parametrize("with_ctime", [False, True])
def test_a_forged_marker_for_a_5_byte_file_is_not_ok(tmp_path, server, sha, with_ctime):
    m = manifest(tmp_path, server, sha)
    forge(m, b"pwned", with_ctime)
    assert model_sync.check(m) == {"sd": "verify"}
    model_sync.sync(m)
    blob, _, dest = paths(m)
    assert blob.stat().st_size == SIZE and dest.read_bytes() == (server.root / "sd.safetensors").read_bytes()
    assert model_sync.check(m) == {"sd": "ok"}


def test_a_marker_or_blob_of_another_user_is_not_trusted(tmp_path, server, sha, monkeypatch):
    m = manifest(tmp_path, server, sha)
    model_sync.sync(m)
    monkeypatch.setattr(os, "geteuid", lambda: os.getuid() + 4242)  # the files now belong to someone else
    assert model_sync.check(m) == {"sd": "verify"}


def test_a_marker_through_a_symlink_is_not_trusted(tmp_path, server, sha):
    m = manifest(tmp_path, server, sha)
    model_sync.sync(m)
    _, marker, _ = paths(m)
    elsewhere = tmp_path / "forged.verified"
    elsewhere.write_bytes(marker.read_bytes())
    marker.unlink()
    marker.symlink_to(elsewhere)
    assert model_sync.check(m) == {"sd": "verify"}


def test_a_blob_whose_metadata_changed_is_verified_again(tmp_path, server, sha):
    """A chown (the tree taken over from the service user, forged marker and all) or chmod changes the ctime."""
    m = manifest(tmp_path, server, sha)
    model_sync.sync(m)
    blob, _, _ = paths(m)
    os.chmod(blob, blob.stat().st_mode & 0o7777)
    assert model_sync.check(m) == {"sd": "verify"}
    model_sync.sync(m)
    assert model_sync.check(m) == {"sd": "ok"}


def test_a_file_others_can_write_is_copied_into_the_blob_not_linked(tmp_path, server, sha):
    m = manifest(tmp_path, server, sha)
    _, _, dest = paths(m)
    dest.parent.mkdir(parents=True)
    dest.write_bytes((server.root / "sd.safetensors").read_bytes())
    os.chmod(dest, 0o666)
    placed = dest.stat().st_ino
    model_sync.sync(m)
    blob, _, _ = paths(m)
    assert [r for r in server.requests if r.method == "GET"] == []  # adopted, not downloaded
    assert blob.stat().st_ino != placed and blob.stat().st_mode & 0o777 == 0o644
    assert dest.stat().st_ino == blob.stat().st_ino
    assert model_sync.check(m) == {"sd": "ok"}


# --- nothing the helper writes follows a link ---------------------------------------------------------


@pytest.mark.parametrize("planted", ["marker temp", "log", "partial"])
def test_a_link_planted_where_the_helper_writes_is_replaced_not_followed(tmp_path, server, sha, planted):
    m = manifest(tmp_path, server, sha)
    blob, marker, _ = paths(m)
    link = {"marker temp": Path(f"{marker}.tmp"), "log": tmp_path / "logs" / "sd.log",
            "partial": Path(f"{blob}.partial")}[planted]
    canary = tmp_path / "canary"
    canary.write_bytes(b"root-only canary")
    os.chmod(canary, 0o600)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(canary)
    model_sync.sync(m)
    assert canary.read_bytes() == b"root-only canary" and canary.stat().st_mode & 0o777 == 0o600
    assert model_sync.check(m) == {"sd": "ok"}


# --- the deploy: tokens reach the sync command only --------------------------------------------------


@pytest.fixture
def recorded(monkeypatch):
    """Every command the fake host is sent, with the stdin sent along (pyinfra's FakeConnector records no stdin)."""
    calls = []
    run_shell_command = FakeConnector.run_shell_command

    def recording(self, command, print_output=False, print_input=False, **arguments):
        calls.append((command if isinstance(command, str) else command.get_raw_value(), arguments.get("_stdin")))
        return run_shell_command(self, command, print_output, print_input, **arguments)

    monkeypatch.setattr(FakeConnector, "run_shell_command", recording)
    return calls


def deploy_models(plan, with_snapshot: bool):
    from comfyinfra.operations.snapshot import expect
    from roles import models

    if with_snapshot:  # as deploy.py does: every fact asked up front, in one command
        expect(models.probes(plan))
    models.models(plan)


@pytest.mark.parametrize("with_snapshot", [False, True], ids=["facts-asked-one-by-one", "snapshot"])
def test_tokens_reach_the_sync_command_and_nothing_else(monkeypatch, recorded, with_snapshot):
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    entry = {"sha256": "a" * 64, "folder": "checkpoints"}
    spec = HostSpec.model_validate({
        "host_kind": "linux", "comfyui_repo": "https://github.com/comfyanonymous/ComfyUI.git",
        "comfyui_ref": "a125cd84b054a57729b5eecab930ca9408719832", "torch": {"torch": "2.9.1"},
        "install_root": "/opt/comfyui", "service_user": "comfy", "models": ["gated", "open"],
        "model_catalog": {"gated": dict(entry, url="https://huggingface.co/o/r/resolve/0a1b/g.safetensors",
                                        filename="g.safetensors", token_env=TOKEN_ENV),
                          "open": dict(entry, sha256="b" * 64, url="https://mirror.example/o.safetensors",
                                       filename="o.safetensors")}})
    plan = make_plan(spec, HostPlatform(arch="x86_64", wsl=False, systemd=True, mem_total_mib=64000), GpuProbe())
    inventory = Inventory(([("@fake/h", {"fake_delay": 0, "fake_delay_jitter": 0,
                                         "fake_responses": {"model_sync.py check": "{}"}})], {}))
    state = State(inventory=inventory, config=Config())
    connect_all(state)
    add_deploy(state, deploy_models, plan, with_snapshot)
    run_ops(state)
    syncs = [(command, stdin) for command, stdin in recorded if command.endswith("model_sync.py sync")]
    assert len(syncs) == 1, recorded
    assert [m.get("token") for m in json.loads(syncs[0][1])["models"]] == [TOKEN, None]
    others = [(command, stdin) for command, stdin in recorded if command not in dict(syncs)]
    assert any("model_sync.py check" in command for command, _ in others)  # the state fact was asked
    assert [(command, stdin) for command, stdin in others if stdin is not None] == []
    assert not any(TOKEN in command for command, _ in recorded)


def test_models_synced_refuses_an_operation_level_stdin():
    from pyinfra.api.operation import add_op

    from comfyinfra.operations.models import models_synced

    inventory = Inventory(([("@fake/h", {"fake_delay": 0, "fake_delay_jitter": 0})], {}))
    state = State(inventory=inventory, config=Config())
    connect_all(state)
    with pytest.raises(TypeError, match="pass tokens=, not _stdin="):
        add_op(state, models_synced, python="python3", helper="/h.py", manifest={"logs": "/l", "models": []},
               _stdin="{}")
