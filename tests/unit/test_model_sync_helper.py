"""The host-side model sync helper, run in-process against a real HTTP server with Range support."""

import hashlib
import importlib.util
import os
from pathlib import Path

import pytest

from tests.support.model_server import ModelServer, make_model_file

HELPER = Path(__file__).resolve().parents[2] / "comfyinfra" / "host_helpers" / "model_sync.py"
spec = importlib.util.spec_from_file_location("model_sync", HELPER)
model_sync = importlib.util.module_from_spec(spec)
spec.loader.exec_module(model_sync)

SIZE = 3 * (1 << 20) + 12345


@pytest.fixture
def model_file(server):
    sha = make_model_file(server.root / "sd.safetensors", SIZE)
    return sha


def manifest(tmp_path, models, **extra):
    return {"host": "h1", "blobs": str(tmp_path / "models/.blobs"), "logs": str(tmp_path / "logs"), "parallel": 2,
            "models": models, **extra}


def entry(server, tmp_path, sha, name="sd", folder="checkpoints", size=SIZE, **extra):
    return {"name": name, "url": server.url("sd.safetensors"), "sha256": sha, "size": size,
            "dests": [str(tmp_path / "models" / folder / "sd.safetensors")], **extra}


def gets(server):
    return [r for r in server.requests if r.method == "GET"]


def test_fresh_download_lands_verified_and_linked(server, model_file, tmp_path):
    m = manifest(tmp_path, [entry(server, tmp_path, model_file)])
    model_sync.sync(m)
    dest = Path(m["models"][0]["dests"][0])
    blob = Path(m["blobs"]) / model_file
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == model_file
    assert dest.stat().st_ino == blob.stat().st_ino and not Path(str(blob) + ".partial").exists()
    assert model_sync.check(m) == {"sd": "ok"}
    log = (tmp_path / "logs" / "sd.log").read_text()
    assert "MB/s" in log and f"verified sha256 {model_file}" in log


def test_second_sync_reads_nothing(server, model_file, tmp_path, monkeypatch):
    m = manifest(tmp_path, [entry(server, tmp_path, model_file)])
    model_sync.sync(m)
    marker = Path(m["blobs"]) / f"{model_file}.verified"
    before = marker.read_text()
    monkeypatch.setattr(model_sync, "sha256_of", lambda path: pytest.fail(f"{path} was read"))
    requests_before = len(server.requests)
    model_sync.sync(m)
    assert marker.read_text() == before and len(server.requests) == requests_before


def test_dropped_connection_resumes_with_range(server, model_file, tmp_path, monkeypatch):
    monkeypatch.setattr(model_sync, "_backoff", lambda attempt, *a: attempt + 1)  # no sleeping in tests
    server.faults.drop_after["/sd.safetensors"] = SIZE // 3
    m = manifest(tmp_path, [entry(server, tmp_path, model_file)])
    model_sync.sync(m)
    ranges = [r.range for r in gets(server)]
    assert ranges[0] is None and ranges[1].startswith("bytes=") and int(ranges[1][6:-1]) > 0
    assert model_sync.check(m) == {"sd": "ok"}


def test_partial_from_an_interrupted_run_is_resumed(server, model_file, tmp_path):
    m = manifest(tmp_path, [entry(server, tmp_path, model_file)])
    blobs = Path(m["blobs"])
    blobs.mkdir(parents=True)
    data = (server.root / "sd.safetensors").read_bytes()
    (blobs / f"{model_file}.partial").write_bytes(data[:1000000])
    model_sync.sync(m)
    assert [r.range for r in gets(server)] == ["bytes=1000000-"]
    assert model_sync.check(m) == {"sd": "ok"}


def test_wrong_sha_never_reaches_the_final_path(server, model_file, tmp_path):
    wrong = "0" * 64
    m = manifest(tmp_path, [entry(server, tmp_path, wrong)])
    with pytest.raises(model_sync.SyncError) as error:
        model_sync.sync(m)
    assert f"model sd on host h1: sha256 mismatch: expected {wrong}, got {model_file}" in str(error.value)
    assert not Path(m["models"][0]["dests"][0]).exists()
    assert list(Path(m["blobs"]).iterdir()) == []


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_file_changed_behind_our_back_is_reverified_and_replaced(server, model_file, tmp_path, damage):
    m = manifest(tmp_path, [entry(server, tmp_path, model_file)])
    model_sync.sync(m)
    dest = Path(m["models"][0]["dests"][0])
    with open(dest, "r+b") as handle:
        if damage == "flip":
            handle.seek(SIZE // 2)
            byte = handle.read(1)
            handle.seek(SIZE // 2)
            handle.write(bytes([byte[0] ^ 0xFF]))
        else:
            handle.truncate(SIZE // 2)
    assert model_sync.check(m) == {"sd": "verify"}
    model_sync.sync(m)
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == model_file
    assert model_sync.check(m) == {"sd": "ok"}


def test_correct_file_placed_by_hand_is_adopted_without_download(server, model_file, tmp_path):
    m = manifest(tmp_path, [entry(server, tmp_path, model_file)])
    dest = Path(m["models"][0]["dests"][0])
    dest.parent.mkdir(parents=True)
    dest.write_bytes((server.root / "sd.safetensors").read_bytes())
    model_sync.sync(m)
    assert gets(server) == [] and model_sync.check(m) == {"sd": "ok"}


def test_not_enough_space_is_refused_before_any_byte(server, model_file, tmp_path, monkeypatch):
    monkeypatch.setenv("COMFYINFRA_FREE_BYTES", str(SIZE - 1))
    m = manifest(tmp_path, [entry(server, tmp_path, model_file)])
    with pytest.raises(model_sync.SyncError, match="need 3158073 more bytes"):
        model_sync.sync(m)
    assert gets(server) == []


def test_same_sha_in_two_folders_is_stored_once(server, model_file, tmp_path):
    m = manifest(tmp_path, [entry(server, tmp_path, model_file, name="a", folder="checkpoints"),
                            entry(server, tmp_path, model_file, name="b", folder="diffusion_models")])
    model_sync.sync(m)
    a, b = (Path(x["dests"][0]) for x in m["models"])
    assert a.stat().st_ino == b.stat().st_ino and len(gets(server)) == 1


def test_token_is_sent_and_dropped_on_cross_host_redirect(tmp_path, model_file, server):
    with ModelServer(server.root) as cdn:
        server.faults.tokens["/gated.safetensors"] = "hf_secret_value"
        os.link(server.root / "sd.safetensors", server.root / "gated.safetensors")
        m = manifest(tmp_path, [dict(entry(server, tmp_path, model_file), url=server.url("gated.safetensors"),
                                     token="hf_secret_value")])
        server.faults.redirects["/redirected"] = cdn.url("sd.safetensors")
        model_sync.sync(m)
        assert gets(server)[0].authorization == "Bearer hf_secret_value"
        m2 = manifest(tmp_path / "2", [dict(entry(server, tmp_path / "2", model_file), url=server.url("redirected"),
                                            token="hf_secret_value")])
        model_sync.sync(m2)
        assert gets(cdn)[0].authorization is None  # the CDN host never sees the token
    assert "hf_secret_value" not in (tmp_path / "logs/sd.log").read_text()


def test_missing_token_gives_an_actionable_error(server, model_file, tmp_path):
    server.faults.tokens["/sd.safetensors"] = "t"
    with pytest.raises(model_sync.SyncError, match=r"HTTP 401 from .*\(check the token"):
        model_sync.sync(manifest(tmp_path, [entry(server, tmp_path, model_file)]))


def test_unknown_size_is_asked_with_head(server, model_file, tmp_path):
    m = manifest(tmp_path, [entry(server, tmp_path, model_file, size=None)])
    model_sync.sync(m)
    assert [r.method for r in server.requests] == ["HEAD", "GET"] and model_sync.check(m) == {"sd": "ok"}


@pytest.mark.parametrize("parallel", [1, 2])
def test_downloads_per_host_are_bounded(server, tmp_path, parallel):
    server.faults.rate = 4 * (1 << 20)  # each download lasts long enough to overlap with the others
    models = []
    for i in range(3):
        sha = make_model_file(server.root / f"m{i}.safetensors", 1 << 20, seed=i)
        models.append({"name": f"m{i}", "url": server.url(f"m{i}.safetensors"), "sha256": sha, "size": 1 << 20,
                       "dests": [str(tmp_path / "models" / "loras" / f"m{i}.safetensors")]})
    model_sync.sync(manifest(tmp_path, models, parallel=parallel))
    assert server.max_in_flight == parallel
