"""comfyinfra.client and comfyinfra.loadtest against the fixture ComfyUI (tests/fixtures/comfyui),
with tests/support/fault_proxy.py injecting resets and delays.

One fixture server per module runs from a temporary copy of the fixture plus two test-only custom
nodes (DemoFail raises at run time, FixtureSleep sleeps); a second one is started, SIGKILLed and
restarted on the same port for the "ComfyUI killed mid-run" case. No timing upper bounds are asserted.
"""

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
import urllib3.util.connection

from comfyinfra import loadtest
from comfyinfra.client import (ComfyClient, ConnectionFailed, ExecutionFailed, HttpError, Timeout, png_ok)
from tests.support.fault_proxy import FaultProxy
from tests.support.fixture_comfyui import FAULT_NODES, Server, free_port, make_checkout

ROOT = Path(__file__).resolve().parents[2]




def demo_workflow(color=16711680, prefix="demo"):
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": color}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    }


def sleep_workflow(seconds, color):
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": color}},
        "2": {"class_type": "FixtureSleep", "inputs": {"image": ["1", 0], "seconds": seconds}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "sleep"}},
    }


_colors = iter(range(1, 1 << 24))


def unique_color():
    return next(_colors)


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    server = Server(make_checkout(tmp_path_factory.mktemp("client-comfyui"), FAULT_NODES))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def proxy(comfy):
    p = FaultProxy(("127.0.0.1", comfy.port)).start()
    try:
        yield p
    finally:
        p.stop()


def fast_client(url, **kw):
    kw.setdefault("timeout", 10)
    kw.setdefault("backoff_s", 0.02)
    return ComfyClient(url, **kw)


def attempts(client, method, path):
    return [outcome for m, p, outcome in client.attempts if (m, p) == (method, path)]


# -- pure helpers --------------------------------------------------------------------------------

def test_png_ok_checks_signature_ihdr_and_size():
    header = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + (64).to_bytes(4, "big") + (48).to_bytes(4, "big")
    png = header + b"\x08\x02\x00\x00\x00" + b"\x00" * 2000
    assert png_ok(png)
    assert not png_ok(png[:1000])  # smaller than the default 1 KiB
    assert png_ok(png[:1000], min_bytes=100)
    assert not png_ok(b"GIF89a" + png[6:])
    assert not png_ok(png.replace(b"IHDR", b"IDAT"))
    assert not png_ok(b"")


def test_vary_workflow_sets_seeds_else_color_else_prefix():
    seeded = {"3": {"class_type": "KSampler", "inputs": {"seed": 1, "model": ["4", 0]}},
              "5": {"class_type": "SamplerCustom", "inputs": {"noise_seed": 7}},
              "1": {"class_type": "EmptyImage", "inputs": {"color": 5}}}
    out = loadtest.vary_workflow(seeded, 3, seed_base=100)
    assert out["3"]["inputs"]["seed"] == 103 and out["5"]["inputs"]["noise_seed"] == 103
    assert out["1"]["inputs"]["color"] == 5 and seeded["3"]["inputs"]["seed"] == 1  # copy, not mutated
    colors = {loadtest.vary_workflow(demo_workflow(), j, 0)["1"]["inputs"]["color"] for j in range(50)}
    assert len(colors) == 50
    no_color = {"1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
                "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "p"}}}
    assert loadtest.vary_workflow(no_color, 4, 9)["2"]["inputs"]["filename_prefix"] == "p_lt9_4"


def test_nearest_rank_percentiles_and_sla():
    values = [float(v) for v in range(1, 101)]
    assert loadtest.percentile(values, 50) == 50.0
    assert loadtest.percentile(values, 95) == 95.0
    assert loadtest.percentile(values, 99) == 99.0
    assert loadtest.percentile([3.0], 95) == 3.0
    assert loadtest.percentile([], 95) is None
    results = [loadtest.JobResult(i, f"p{i}", i != 0, 1.0, 1 if i else 0, None if i else "execution", None)
               for i in range(10)]
    summary = loadtest.summarize(results, 60.0, loadtest.DEFAULT_SLA)
    assert (summary["succeeded"], summary["failed"], summary["success_rate"]) == (9, 1, 0.9)
    assert summary["errors_by_kind"] == {"execution": 1}
    assert not summary["sla"]["passed"]
    assert {b["metric"] for b in summary["sla"]["breaches"]} == {"success_rate", "images_per_minute"}


# -- client against the fixture ------------------------------------------------------------------

def test_submit_wait_view_round_trip(comfy):
    client = fast_client(comfy.url)
    assert client.system_stats()["devices"][0]["type"] == "cpu"
    assert "EmptyImage" in client.object_info()
    assert set(client.queue()) >= {"queue_running", "queue_pending"}
    assert client.history("00000000-0000-0000-0000-000000000000") is None
    prompt_id = client.submit(demo_workflow(color=unique_color()))
    entry = client.wait(prompt_id, timeout_s=20, poll_s=0.05)
    assert entry["status"]["status_str"] == "success"
    image = entry["outputs"]["2"]["images"][0]
    data = client.view(image["filename"], image["subfolder"], image["type"])
    assert png_ok(data, min_bytes=64)
    assert data[16:24] == (64).to_bytes(4, "big") + (48).to_bytes(4, "big")

    result = client.run(demo_workflow(color=unique_color(), prefix="run"), timeout_s=20)
    assert len(result.images) == 1 and result.images[0].filename.startswith("run_")
    assert png_ok(result.images[0].data, min_bytes=64) and result.latency_s > 0


def test_bad_prompt_is_http_4xx_readable_and_not_retried(proxy):
    client = fast_client(proxy.url)
    bad = demo_workflow()
    del bad["2"]["inputs"]["filename_prefix"]
    del bad["1"]["inputs"]["color"]
    with pytest.raises(HttpError) as info:
        client.submit(bad)
    err = info.value
    assert (err.kind, err.status) == ("http_4xx", 400)
    assert err.error["type"] == "prompt_outputs_failed_validation"
    assert set(err.node_errors) == {"1", "2"}
    text = str(err)
    assert "node 2 (SaveImage)" in text and "node 1 (EmptyImage)" in text
    assert "Required input is missing: filename_prefix" in text
    assert "Required input is missing: color" in text
    assert attempts(client, "POST", "/prompt") == [400]
    assert proxy.connections == 1

    with pytest.raises(HttpError) as info:
        client.submit({"1": {"class_type": "NoSuchNode", "inputs": {}}})
    assert info.value.kind == "http_4xx" and "NoSuchNode does not exist" in str(info.value)


def test_non_json_body_is_http_5xx_and_post_not_retried(comfy):
    client = fast_client(comfy.url)
    with pytest.raises(HttpError) as info:
        client._request("POST", "/prompt", data="{not json", headers={"Content-Type": "application/json"})
    assert (info.value.kind, info.value.status) == ("http_5xx", 500)
    assert attempts(client, "POST", "/prompt") == [500]


def test_execution_error_is_classified(comfy):
    client = fast_client(comfy.url)
    failing = {"1": {"class_type": "DemoFail", "inputs": {"message": f"boom {unique_color()}"}},
               "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "f"}}}
    with pytest.raises(ExecutionFailed) as info:
        client.run(failing, timeout_s=20)
    err = info.value
    assert err.kind == "execution"
    assert (err.node_id, err.node_type, err.exception_type) == ("1", "DemoFail", "RuntimeError")
    assert err.exception_message.startswith("boom ")
    assert "DemoFail" in str(err)


def test_wait_timeout_is_classified(comfy):
    client = fast_client(comfy.url)
    prompt_id = client.submit(sleep_workflow(0.8, unique_color()))
    with pytest.raises(Timeout) as info:
        client.wait(prompt_id, timeout_s=0.2, poll_s=0.05)
    assert info.value.kind == "timeout"
    assert client.wait(prompt_id, timeout_s=20, poll_s=0.05)["status"]["status_str"] == "success"


def test_read_timeout_via_delay_proxy_is_classified_and_not_retried(proxy):
    proxy.delay(1.5)
    client = fast_client(proxy.url, timeout=0.3)
    with pytest.raises(Timeout) as info:
        client.submit(demo_workflow(color=unique_color()))
    assert info.value.kind == "timeout"
    assert attempts(client, "POST", "/prompt") == ["timeout"]


def test_connection_refused_is_classified_and_retried():
    client = fast_client(f"http://127.0.0.1:{free_port()}", retries=2)
    with pytest.raises(ConnectionFailed) as info:
        client.system_stats()
    assert info.value.kind == "connection"
    assert attempts(client, "GET", "/system_stats") == ["connection"] * 3
    with pytest.raises(ConnectionFailed):
        client.submit(demo_workflow())
    # nothing was sent, so even POST /prompt is retried
    assert attempts(client, "POST", "/prompt") == ["connection"] * 3


def test_reset_get_is_retried_and_succeeds(proxy):
    proxy.reset_next(1)
    client = fast_client(proxy.url)
    assert client.system_stats()["system"]["comfyui_version"]
    assert attempts(client, "GET", "/system_stats") == ["connection", 200]
    assert (proxy.resets, proxy.connections) == (1, 2)


def test_reset_after_post_was_sent_is_not_retried(proxy):
    proxy.reset_next(1)
    client = fast_client(proxy.url)
    with pytest.raises(ConnectionFailed) as info:
        client.submit(demo_workflow(color=unique_color()))
    assert info.value.kind == "connection"
    assert attempts(client, "POST", "/prompt") == ["connection"]
    assert (proxy.resets, proxy.connections) == (1, 1)


def test_post_retried_when_connect_itself_failed(proxy, monkeypatch):
    real = urllib3.util.connection.create_connection
    calls = []

    def refuse_once(*args, **kw):
        calls.append(args[0])
        if len(calls) == 1:
            raise ConnectionRefusedError(111, "Connection refused")
        return real(*args, **kw)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", refuse_once)
    client = fast_client(proxy.url)
    prompt_id = client.submit(demo_workflow(color=unique_color()))
    assert prompt_id
    assert attempts(client, "POST", "/prompt") == ["connection", 200]
    assert proxy.connections == 1  # the refused attempt never reached the proxy


# -- load test -----------------------------------------------------------------------------------

def test_delay_shows_up_in_p95(proxy, tmp_path):
    proxy.delay(0.4)
    summary = loadtest.run_load_test(proxy.url, demo_workflow(), jobs=4, concurrency=2, timeout_s=30,
                                     output=tmp_path / "delay.json", sla=None, poll_s=0.05)
    assert summary["succeeded"] == 4, summary
    assert summary["latency_s"]["p95"] >= 0.4
    assert summary["latency_s"]["p50"] >= 0.4  # every job opened a fresh connection


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "comfyinfra.loadtest", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_loadtest_cli_end_to_end(comfy, tmp_path):
    workflow = tmp_path / "wf.json"
    workflow.write_text(json.dumps(demo_workflow()))
    out = tmp_path / "out" / "summary.json"
    common = ["--server", comfy.url, "--workflow", workflow, "--jobs", 12, "--concurrency", 3, "--timeout", 30]
    proc = run_cli(*common, "--output", out, "--no-sla", "--progress")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(out.read_text())
    for key in ("jobs", "succeeded", "failed", "success_rate", "latency_s", "images", "images_per_minute",
                "wall_s", "errors_by_kind", "sla"):
        assert key in summary
    assert (summary["jobs"], summary["succeeded"], summary["failed"], summary["images"]) == (12, 12, 0, 12)
    assert summary["success_rate"] == 1.0 and summary["errors_by_kind"] == {}
    lat = summary["latency_s"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert summary["images_per_minute"] > 0 and summary["wall_s"] > 0
    assert set(summary["sla"]) >= {"targets", "passed", "breaches"} and summary["sla"]["passed"]
    lines = [json.loads(line) for line in (tmp_path / "out" / "summary.json.ndjson").read_text().splitlines()]
    assert len(lines) == 12 and sorted(rec["job"] for rec in lines) == list(range(12))
    assert all(set(rec) == {"job", "prompt_id", "ok", "latency_s", "images", "error_kind", "error"} for rec in lines)
    assert all(rec["ok"] and rec["images"] == 1 for rec in lines)
    assert len({rec["prompt_id"] for rec in lines}) == 12
    assert "12/12" in proc.stderr and "success rate" in proc.stdout

    breached = run_cli(*common, "--output", tmp_path / "breach.json", "--sla-images-per-minute", 1000000)
    assert breached.returncode == 3, breached.stdout + breached.stderr
    sla = json.loads((tmp_path / "breach.json").read_text())["sla"]
    assert not sla["passed"] and [b["metric"] for b in sla["breaches"]] == ["images_per_minute"]
    assert "BREACHED" in breached.stdout
    assert "12/12" not in breached.stderr  # no progress bar when stderr is not a TTY


def test_loadtest_usage_errors_exit_2(comfy, tmp_path):
    workflow = tmp_path / "wf.json"
    workflow.write_text(json.dumps(demo_workflow()))
    base = ["--server", comfy.url, "--output", tmp_path / "o.json"]
    assert run_cli(*base, "--workflow", workflow, "--jobs", 0).returncode == 2
    assert run_cli(*base, "--workflow", workflow, "--jobs", 100001).returncode == 2
    assert run_cli(*base, "--workflow", tmp_path / "missing.json", "--jobs", 1).returncode == 2
    (tmp_path / "ui.json").write_text(json.dumps({"nodes": [], "links": []}))
    assert run_cli(*base, "--workflow", tmp_path / "ui.json", "--jobs", 1).returncode == 2
    assert run_cli(*base, "--workflow", workflow, "--jobs", "x").returncode == 2
    assert not (tmp_path / "o.json").exists()


def test_comfyui_killed_mid_run_fails_cleanly_then_recovers(tmp_path):
    server = Server(make_checkout(tmp_path, FAULT_NODES))
    server.start()
    try:
        holder = {}
        job = threading.Thread(target=lambda: holder.setdefault("r", loadtest.run_job(
            server.url, sleep_workflow(5.0, unique_color()), 0, timeout_s=20, seed_base=0,
            request_timeout=5, poll_s=0.05)))
        job.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # wait until the sleep prompt is running
            if requests.get(server.url + "/queue", timeout=5).json()["queue_running"]:
                break
            time.sleep(0.05)
        # The prompt runs before the client has read the POST's answer; let it (the prompt sleeps 5 s), so the
        # kill lands mid-run, not mid-answer (on real threads the two race: seen as IncompleteRead, no prompt id).
        time.sleep(0.5)
        server.kill()
        job.join(60)
        assert not job.is_alive()
        result = holder["r"]
        assert not result.ok and result.prompt_id
        assert result.error_kind in ("connection", "timeout"), result

        server.start()  # same port
        again = loadtest.run_job(server.url, demo_workflow(), 1, timeout_s=20, seed_base=0, poll_s=0.05)
        assert again.ok and again.images == 1, again
    finally:
        server.stop()
