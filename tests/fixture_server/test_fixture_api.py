"""The fixture ComfyUI (tests/fixtures/comfyui) against responses recorded from real ComfyUI 0.3.64.

One server per module runs from a temporary copy of the fixture with the demo node package,
a few test-only custom nodes (one broken on import, one failing at run time) and a dummy
checkpoint. Shapes (key sets, value types, nesting) are compared with ../shared/reference/
comfyui-api; those comparisons skip when that directory is absent.
"""

import json
import re
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import pytest
import requests

from tests.support.fixture_comfyui import FAKE_TORCH, FAULT_NODES, Server, fixture_env
from tests.support.fixture_comfyui import make_checkout as support_checkout

ROOT = Path(__file__).resolve().parents[2]
DEMO_NODE = ROOT / "tests" / "fixtures" / "custom_node_demo"
RECORDED = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "comfyui-api"

TEST_NODES = FAULT_NODES + '''
from server import PromptServer


@PromptServer.instance.routes.get("/fixture/ping")
async def ping(request):
    return {"pong": True}


class NotAnEmptyImage:
    pass


# EmptyImage is a core class: this mapping must be ignored, the other two must load.
NODE_CLASS_MAPPINGS = {**NODE_CLASS_MAPPINGS, "EmptyImage": NotAnEmptyImage}
'''

BROKEN_NODE = '''
raise RuntimeError("broken on purpose")
NODE_CLASS_MAPPINGS = {"BrokenNode": object}
'''

EXTRA_NODE = '''
class ExtraPathNode:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    CATEGORY = "test"

    def run(self):
        return {}


NODE_CLASS_MAPPINGS = {"ExtraPathNode": ExtraPathNode}
'''


# -- helpers ---------------------------------------------------------------------------------

def recorded(name):
    path = RECORDED / name
    if not path.is_file():
        pytest.skip(f"recorded response {path} is not available")
    return json.loads(path.read_text())


UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def skeleton(value, key=None):
    """Type skeleton of a JSON value: dicts keyed by node/prompt ids collapse to one '<id>' entry,
    homogeneous lists to one element. Recorded files elide tracebacks to a string, where ComfyUI
    sends a list of lines, so tracebacks are compared by name only."""
    if key == "traceback":
        return "traceback"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float, str)):
        return type(value).__name__
    if value is None:
        return "null"
    if isinstance(value, dict):
        if value and all(k.isdigit() or UUID.match(k) for k in value):
            return {"<id>": skeleton(next(iter(value.values())))}
        return {k: skeleton(v, k) for k, v in value.items() if not k.startswith("_")}
    items = [skeleton(v) for v in value]
    return items[:1] if items and all(i == items[0] for i in items) else items


def shape_differences(actual, expected, path="$"):
    if isinstance(expected, dict) and isinstance(actual, dict):
        if expected.keys() != actual.keys():
            return [f"{path}: keys {sorted(actual)} != recorded {sorted(expected)}"]
        return [d for k in expected for d in shape_differences(actual[k], expected[k], f"{path}.{k}")]
    if isinstance(expected, list) and isinstance(actual, list):
        if not expected or not actual:  # an empty list says nothing about its elements
            return []
        if len(expected) == len(actual):
            pairs = zip(actual, expected)
        elif len(expected) == 1:
            pairs = ((a, expected[0]) for a in actual)
        elif len(actual) == 1:
            pairs = ((actual[0], e) for e in expected)
        else:
            return [f"{path}: {len(actual)} positional items != recorded {len(expected)}"]
        return [d for i, (a, e) in enumerate(pairs) for d in shape_differences(a, e, f"{path}[{i}]")]
    return [] if actual == expected else [f"{path}: {actual} != recorded {expected}"]


def assert_same_shape(actual, expected):
    differences = shape_differences(skeleton(actual), skeleton(expected))
    assert not differences, "\n".join(differences)


def run_main(checkout, *flags, env=None, timeout=20):
    return subprocess.run([sys.executable, "main.py", *flags], cwd=checkout, env=env or fixture_env(),
                          capture_output=True, text=True, timeout=timeout)


def make_checkout(base: Path) -> Path:
    checkout = support_checkout(base, TEST_NODES)
    custom_nodes = checkout / "custom_nodes"
    shutil.copytree(DEMO_NODE, custom_nodes / "custom_node_demo", ignore=shutil.ignore_patterns("__pycache__"))
    (custom_nodes / "broken_node.py").write_text(BROKEN_NODE)
    (custom_nodes / "skipped_node.py.disabled").write_text('NODE_CLASS_MAPPINGS = {"ShouldNotLoad": object}\n')
    (checkout / "models" / "checkpoints" / "dummy.safetensors").write_bytes(b"not a real model")
    return checkout


def png_info(data: bytes):
    """(width, height, first pixel) of an 8-bit RGB PNG whose rows use filter 0."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header, text = 8, b"", None, {}
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"tEXt":
            key, _, value = body.partition(b"\x00")
            text[key.decode()] = value.decode("latin-1")
    width, height, depth, color_type = header[:4]
    assert (depth, color_type) == (8, 2)
    raw = zlib.decompress(idat)
    assert len(raw) == height * (1 + 3 * width) and raw[0] == 0
    return width, height, tuple(raw[1:4]), text


def make_png(width, height, rgba):
    row = b"\x00" + bytes(rgba) * width

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b""))


EMPTY_TO_SAVE = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 16711680}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "demo"}},
}


# -- servers ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    base = tmp_path_factory.mktemp("fixture-comfyui")
    checkout = make_checkout(base)
    flags = ["--cpu"]
    try:
        import yaml  # noqa: F401  (the fixture reads extra_model_paths files with PyYAML)

        extra = base / "extra"
        (extra / "models" / "loras").mkdir(parents=True)
        (extra / "models" / "loras" / "extra_lora.safetensors").write_bytes(b"lora")
        (extra / "custom_nodes").mkdir()
        (extra / "custom_nodes" / "extra_node.py").write_text(EXTRA_NODE)
        (extra / "extra_paths.yaml").write_text(textwrap.dedent("""\
            demo:
                base_path: ./
                loras: models/loras
                custom_nodes: custom_nodes
            """))
        flags += ["--extra-model-paths-config", str(extra / "extra_paths.yaml")]
    except ImportError:
        pass
    server = Server(checkout, flags)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def comfy_cors(tmp_path_factory):
    checkout = make_checkout(tmp_path_factory.mktemp("fixture-comfyui-cors"))
    server = Server(checkout, ["--cpu", "--max-upload-size", "1", "--enable-cors-header"])
    try:
        yield server.start()
    finally:
        server.stop()


# -- start-up and logs -----------------------------------------------------------------------

def test_startup_log_has_the_real_lines(comfy):
    log = comfy.log
    assert re.search(r"^Total VRAM \d+ MB, total RAM \d+ MB$", log, re.M)
    for line in ("Set vram state to: DISABLED", "Device: cpu", "Starting server",
                 f"To see the GUI go to: http://127.0.0.1:{comfy.port}"):
        assert re.search(rf"^{re.escape(line)}$", log, re.M), line
    demo = comfy.checkout / "custom_nodes" / "custom_node_demo"
    broken = comfy.checkout / "custom_nodes" / "broken_node.py"
    assert f"   0.0 seconds: {demo}\n" in log
    assert f"   0.0 seconds (IMPORT FAILED): {broken}\n" in log
    assert f"Cannot import {broken} module for custom nodes: broken on purpose" in log
    assert "Traceback (most recent call last):" in log
    # The port is bound after the nodes are loaded, as in ComfyUI.
    assert log.index("Import times for custom nodes:") < log.index("Starting server")


def test_system_stats_shape_and_values(comfy):
    stats = comfy.get("/system_stats").json()
    assert_same_shape(stats, recorded("system_stats.json"))
    system, device = stats["system"], stats["devices"][0]
    assert system["pytorch_version"] == FAKE_TORCH
    assert system["comfyui_version"] == "0.3.64"
    assert system["python_version"] == sys.version
    assert system["argv"][0] == "main.py" and "--cpu" in system["argv"]
    assert system["embedded_python"] is False
    assert len(stats["devices"]) == 1
    assert (device["name"], device["type"], device["index"]) == ("cpu", "cpu", None)
    assert device["vram_total"] == system["ram_total"]


def test_every_route_is_also_under_api(comfy):
    assert_same_shape(comfy.get("/api/system_stats").json(), recorded("api_system_stats.json"))
    assert comfy.get("/api/features").json() == recorded("api_features.json")
    assert "EmptyImage" in comfy.get("/api/object_info/EmptyImage").json()
    assert comfy.get("/api/queue").status_code == 200


def test_queue_prompt_features_and_lists(comfy):
    assert_same_shape(comfy.get("/queue").json(), recorded("queue.json"))
    assert comfy.get("/prompt").json() == {"exec_info": {"queue_remaining": 0}}
    features = comfy.get("/features").json()
    assert features == recorded("features.json")
    assert type(features["max_upload_size"]) is int
    assert comfy.get("/embeddings").json() == recorded("embeddings.json")
    extensions = comfy.get("/extensions").json()
    assert isinstance(extensions, list) and all(isinstance(e, str) for e in extensions)
    users = comfy.get("/users").json()
    assert users == {"storage": "server", "migrated": True}


def test_models_routes(comfy):
    assert comfy.get("/models").json() == recorded("models.json")
    assert comfy.get("/models/checkpoints").json() == ["dummy.safetensors"]
    missing = comfy.get("/models/no_such_folder")
    assert (missing.status_code, missing.content) == (404, b"")


def test_extra_model_paths_add_models_and_custom_nodes(comfy):
    if "--extra-model-paths-config" not in comfy.get("/system_stats").json()["system"]["argv"]:
        pytest.skip("PyYAML is not installed here")
    assert "extra_lora.safetensors" in comfy.get("/models/loras").json()
    assert comfy.get("/object_info/ExtraPathNode").json()["ExtraPathNode"]["python_module"] == "custom_nodes.extra_node"
    assert "Adding extra search path loras " in comfy.log


def test_core_object_info_matches_recording(comfy):
    excerpt = recorded("object_info.excerpt.json")
    info = comfy.get("/object_info").json()
    for name in ("EmptyImage", "SaveImage", "PreviewImage"):
        assert info[name] == excerpt[name]
    load_image = info["LoadImage"]
    assert "example.png" in load_image["input"]["required"]["image"][0]
    load_image["input"]["required"]["image"][0] = excerpt["LoadImage"]["input"]["required"]["image"][0]
    assert load_image == excerpt["LoadImage"]
    checkpoint = info["CheckpointLoaderSimple"]
    assert checkpoint["input"]["required"]["ckpt_name"][0] == ["dummy.safetensors"]
    checkpoint["input"]["required"]["ckpt_name"][0] = []
    assert checkpoint == excerpt["CheckpointLoaderSimple"]


def test_custom_nodes_in_object_info(comfy):
    info = comfy.get("/object_info").json()
    core_keys = set(recorded("object_info.excerpt.json")["EmptyImage"])
    for name, display in (("DemoSolidImage", "Demo Solid Image"), ("DemoInvert", "Demo Invert")):
        entry = info[name]
        assert set(entry) == core_keys
        assert entry["python_module"] == "custom_nodes.custom_node_demo"
        assert entry["display_name"] == display
        assert entry["output"] == ["IMAGE"] and entry["output_name"] == ["image"]
    assert info["DemoSolidImage"]["input_order"] == {"required": ["width", "height", "r", "g", "b"]}
    assert info["DemoFail"]["python_module"] == "custom_nodes.fixture_test_nodes"
    # A custom node cannot replace a core class; broken and disabled entries add nothing.
    assert info["EmptyImage"]["python_module"] == "nodes"
    assert "BrokenNode" not in info and "ShouldNotLoad" not in info
    assert comfy.get("/object_info/NoSuchNode").json() == {}
    # Routes added by custom nodes are served bare and under /api too.
    assert comfy.get("/fixture/ping").json() == comfy.get("/api/fixture/ping").json() == {"pong": True}
    assert comfy.get("/object_info/DemoInvert").json() == {"DemoInvert": info["DemoInvert"]}


# -- POST /prompt ----------------------------------------------------------------------------

@pytest.mark.parametrize("case", [
    "prompt_err_bad_node_type.json",
    "prompt_err_dangling_link.json",
    "prompt_err_missing_input.json",
    "prompt_err_missing_model_file.json",
    "prompt_err_no_output_node.json",
    "prompt_err_no_prompt_key.json",
    "prompt_err_value_out_of_range.json",
])
def test_prompt_errors_match_recording(comfy, case):
    record = recorded(case)
    response = comfy.post("/prompt", json=record["_request"])
    assert response.status_code == record["_status"]
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    body, expected = response.json(), record["response"]
    assert_same_shape(body, expected)
    for key in ("type", "message", "details"):
        assert body["error"][key] == expected["error"][key]
    assert body["node_errors"].keys() == expected["node_errors"].keys()
    for node_id, node in expected["node_errors"].items():
        got = body["node_errors"][node_id]
        assert (got["class_type"], got["dependent_outputs"]) == (node["class_type"], node["dependent_outputs"])
        for got_error, error in zip(got["errors"], node["errors"], strict=True):
            assert (got_error["type"], got_error["message"]) == (error["type"], error["message"])
            assert got_error["extra_info"].keys() == error["extra_info"].keys()
            # The recording had no checkpoint at all; this checkout has dummy.safetensors.
            assert re.sub(r"not in \[.*\]", "not in []", got_error["details"]) == error["details"]


def test_prompt_edge_cases(comfy):
    empty = comfy.post("/prompt", json={"prompt": []})
    assert empty.status_code == 400 and empty.json()["error"]["type"] == "prompt_no_outputs"
    broken = comfy.post("/prompt", data=b"{not json", headers={"Content-Type": "application/json"})
    assert broken.status_code == 500
    assert broken.headers["Content-Type"] == "text/plain"
    assert broken.text == "500 Internal Server Error\n\nServer got itself in trouble"
    too_small = dict(EMPTY_TO_SAVE, **{"1": {"class_type": "EmptyImage",
                                            "inputs": {"width": 0, "height": 8, "batch_size": 1, "color": 0}}})
    error = comfy.post("/prompt", json={"prompt": too_small}).json()["node_errors"]["1"]["errors"][0]
    assert (error["type"], error["message"]) == ("value_smaller_than_min", "Value 0 smaller than min of 1")
    not_an_image = {"1": {"class_type": "LoadImage", "inputs": {"image": "nope.png"}},
                    "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
    error = comfy.post("/prompt", json={"prompt": not_an_image}).json()["node_errors"]["1"]["errors"][0]
    assert (error["type"], error["details"]) == ("custom_validation_failed", "image - Invalid image file: nope.png")


def test_empty_image_to_save_image(comfy):
    record = recorded("prompt_post_ok.json")
    response = comfy.post("/prompt", json={"prompt": EMPTY_TO_SAVE, "client_id": "2209f3b5b36e4b188f9b3892ee8cdf50"})
    assert response.status_code == 200
    assert_same_shape(response.json(), record["response"])
    prompt_id = response.json()["prompt_id"]
    assert UUID.match(prompt_id)
    entry = comfy.wait_history(prompt_id)
    assert_same_shape({prompt_id: entry}, recorded("history_prompt_id.json"))
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
    assert [m[0] for m in entry["status"]["messages"]] == ["execution_start", "execution_cached", "execution_success"]
    image = entry["outputs"]["2"]["images"][0]
    assert image["filename"].startswith("demo_") and image["filename"].endswith("_.png")
    assert (image["subfolder"], image["type"]) == ("", "output")
    assert entry["prompt"][3] == {"client_id": "2209f3b5b36e4b188f9b3892ee8cdf50"}

    view = comfy.get("/view", params={"filename": image["filename"], "subfolder": "", "type": "output"})
    assert view.status_code == 200
    assert view.headers["Content-Type"] == "image/png"
    assert view.headers["Content-Disposition"] == f'filename="{image["filename"]}"'
    width, height, pixel, text = png_info(view.content)
    assert (width, height, pixel) == (64, 48, (255, 0, 0))
    assert json.loads(text["prompt"])["1"]["class_type"] == "EmptyImage"

    # The same prompt again is fully cached and gives the same outputs.
    again = comfy.run_prompt(EMPTY_TO_SAVE)
    assert again["status"]["messages"][1][1]["nodes"] == ["1", "2"]
    assert again["outputs"] == entry["outputs"]


def test_subfolder_prefix_and_preview_image(comfy):
    prompt = dict(EMPTY_TO_SAVE)
    prompt["2"] = {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "acc/sub"}}
    saved = comfy.run_prompt(prompt)["outputs"]["2"]["images"][0]
    assert (saved["subfolder"], saved["filename"]) == ("acc", "sub_00001_.png")
    assert (comfy.checkout / "output" / "acc" / "sub_00001_.png").is_file()

    preview = comfy.run_prompt({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 4, "batch_size": 2, "color": 255}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    })["outputs"]["2"]["images"]
    assert len(preview) == 2 and {p["type"] for p in preview} == {"temp"}
    view = comfy.get("/view", params={"filename": preview[1]["filename"], "type": "temp"})
    assert png_info(view.content)[:3] == (8, 4, (0, 0, 255))


def test_custom_node_workflow(comfy):
    entry = comfy.run_prompt({
        "1": {"class_type": "DemoSolidImage", "inputs": {"width": 16, "height": 8, "r": 1.0, "g": 0.5, "b": 0.0}},
        "2": {"class_type": "DemoInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "demo_node"}},
    })
    assert entry["status"]["status_str"] == "success", entry["status"]
    image = entry["outputs"]["3"]["images"][0]
    view = comfy.get("/view", params=image)
    assert png_info(view.content)[:3] == (16, 8, (0, 127, 255))


def test_execution_error_in_history(comfy):
    prompt = {
        "1": {"class_type": "DemoFail", "inputs": {"message": "fixture failure"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "f"}},
    }
    response = comfy.post("/prompt", json={"prompt": prompt})
    assert response.status_code == 200  # a run-time failure is not an HTTP error
    prompt_id = response.json()["prompt_id"]
    entry = comfy.wait_history(prompt_id)
    assert_same_shape({prompt_id: entry}, recorded("history_prompt_id_execution_error.json"))
    assert (entry["status"]["status_str"], entry["status"]["completed"]) == ("error", False)
    event, error = entry["status"]["messages"][-1]
    assert event == "execution_error"
    assert (error["node_id"], error["node_type"], error["exception_type"]) == ("1", "DemoFail", "RuntimeError")
    assert error["exception_message"] == "fixture failure\n"
    assert error["current_inputs"] == {"message": ["fixture failure"]}
    assert isinstance(error["traceback"], list) and error["traceback"]
    assert (entry["outputs"], entry["meta"]) == ({}, {})


def test_busy_queue_and_interrupt(comfy):
    slow = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 2}},
        "2": {"class_type": "FixtureSleep", "inputs": {"image": ["1", 0], "seconds": 0.5}},
        "3": {"class_type": "FixtureSleep", "inputs": {"image": ["2", 0], "seconds": 0.5}},
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}},
    }
    quick = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 1}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    slow_id = comfy.post("/prompt", json={"prompt": slow}).json()["prompt_id"]
    quick_id = comfy.post("/prompt", json={"prompt": quick}).json()["prompt_id"]
    deadline = time.monotonic() + 5
    while True:
        queue = comfy.get("/queue").json()
        if queue["queue_running"] and queue["queue_pending"]:
            break
        assert time.monotonic() < deadline, queue
        time.sleep(0.01)
    assert_same_shape(queue, recorded("queue_busy.json"))
    assert queue["queue_running"][0][1] == slow_id and queue["queue_pending"][0][1] == quick_id
    assert comfy.get("/prompt").json() == {"exec_info": {"queue_remaining": 2}}

    time.sleep(0.15)  # let node "2" start: an interrupt is honoured between nodes
    interrupt = comfy.post("/interrupt", json={"prompt_id": slow_id})
    assert (interrupt.status_code, interrupt.content) == (200, b"")
    entry = comfy.wait_history(slow_id)
    assert_same_shape({slow_id: entry}, recorded("history_prompt_id_interrupted.json"))
    event, data = entry["status"]["messages"][-1]
    assert (event, data["node_id"], sorted(data["executed"])) == ("execution_interrupted", "3", ["1", "2"])
    assert comfy.wait_history(quick_id)["status"]["status_str"] == "success"


def test_upload_then_load_image(comfy):
    data = make_png(8, 8, (10, 200, 30, 255))
    upload = comfy.post("/upload/image", files={"image": ("tiny.png", data, "image/png")})
    assert upload.status_code == 200
    assert_same_shape(upload.json(), recorded("upload_image_ok.json")["response"])
    assert upload.json() == {"name": "tiny.png", "subfolder": "", "type": "input"}
    same = comfy.post("/upload/image", files={"image": ("tiny.png", data, "image/png")}).json()
    assert same["name"] == "tiny.png"
    other = comfy.post("/upload/image", files={"image": ("tiny.png", make_png(2, 2, (0, 0, 0, 255)), "image/png")})
    assert other.json()["name"] == "tiny (1).png"
    assert comfy.post("/upload/image", files={"other": ("x.png", data)}).status_code == 400

    entry = comfy.run_prompt({
        "1": {"class_type": "LoadImage", "inputs": {"image": "tiny.png"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "loaded"}},
    })
    assert entry["status"]["status_str"] == "success", entry["status"]
    view = comfy.get("/view", params=entry["outputs"]["2"]["images"][0])
    assert png_info(view.content)[:3] == (8, 8, (10, 200, 30))


def test_view_errors(comfy):
    missing = comfy.get("/view", params={"filename": "missing.png"})
    assert (missing.status_code, missing.content) == (404, b"")
    dotdot = comfy.get("/view", params={"filename": "../x"})
    assert (dotdot.status_code, dotdot.content) == (400, b"")
    escape = comfy.get("/view", params={"filename": "x.png", "subfolder": "../../etc"})
    assert escape.status_code == 403
    assert comfy.get("/view", params={"filename": "example.png", "type": "input"}).status_code == 200


def test_history_and_housekeeping_posts(comfy):
    assert comfy.get("/history/no-such-id").json() == {}
    assert isinstance(comfy.get("/history", params={"max_items": 1}).json(), dict)
    for path, body in (("/queue", {"clear": True}), ("/interrupt", {}), ("/free", {"unload_models": True}),
                       ("/history", {"delete": ["no-such-id"]})):
        response = comfy.post(path, json=body)
        assert (path, response.status_code, response.content) == (path, 200, b"")
    assert comfy.get("/nosuchroute").status_code == 404
    assert requests.head(comfy.url + "/system_stats", timeout=5).status_code == 200


def test_userdata_and_settings(comfy):
    missing = comfy.get("/userdata", params={"dir": "workflows"})
    expected = recorded("misc_responses.json")["GET /userdata?dir=workflows (dir missing)"]
    assert (missing.status_code, missing.text) == (expected["status"], expected["body"])
    assert missing.headers["Content-Type"].startswith(expected["content_type"])
    (comfy.checkout / "user" / "default" / "workflows").mkdir(exist_ok=True)
    (comfy.checkout / "user" / "default" / "workflows" / "a.json").write_text("{}")
    assert comfy.get("/userdata", params={"dir": "workflows"}).json() == ["a.json"]
    assert comfy.get("/settings").json() == {}


def test_foreign_origin_is_refused(comfy):
    refused = comfy.get("/system_stats", headers={"Origin": "http://evil.example"})
    assert (refused.status_code, refused.content) == (403, b"")
    assert comfy.post("/prompt", json={"prompt": EMPTY_TO_SAVE},
                      headers={"Origin": "https://evil.example"}).status_code == 403
    same_origin = comfy.get("/system_stats", headers={"Origin": comfy.url})
    assert same_origin.status_code == 200


def test_cors_and_upload_limit(comfy_cors):
    features = comfy_cors.get("/features").json()
    assert features == {"supports_preview_metadata": True, "max_upload_size": 1048576.0}
    assert type(features["max_upload_size"]) is float
    expected = json.loads((RECORDED / "misc_responses.json").read_text()) if RECORDED.is_dir() else None
    response = comfy_cors.get("/system_stats", headers={"Origin": "http://elsewhere.example"})
    assert response.status_code == 200
    cors = {k: v for k, v in response.headers.items() if k.startswith("Access-Control-")}
    if expected:
        assert cors == expected["CORS headers with --enable-cors-header (no value => '*')"]
    assert requests.options(comfy_cors.url + "/prompt", timeout=5).status_code == 200

    too_big = comfy_cors.post("/prompt", data=b"x" * (2 * 1024 * 1024), headers={"Content-Type": "application/json"})
    assert too_big.status_code == 413
    assert too_big.text == "Maximum request body size 1048576 exceeded."
    assert too_big.headers["Content-Type"] == "text/plain; charset=utf-8"
    # The connection and the server are still fine afterwards.
    assert comfy_cors.get("/queue").status_code == 200


# -- command line and process behaviour ------------------------------------------------------

@pytest.mark.parametrize("flags, message", [
    (["--cpu", "--lowvram"], "argument --lowvram: not allowed with argument --cpu"),
    (["--cache-none", "--cache-lru", "4"], "argument --cache-lru: not allowed with argument --cache-none"),
    (["--use-sage-attention", "--use-flash-attention"], "not allowed with argument --use-sage-attention"),
    (["--cuda-malloc", "--disable-cuda-malloc"], "not allowed with argument --cuda-malloc"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["--preview-method", "fancy"], "argument --preview-method: invalid choice: 'fancy'"),
    (["--user-directory", "/no/such/dir"], "The path '/no/such/dir' does not exist."),
])
def test_bad_command_lines_exit_2(comfy, flags, message):
    result = run_main(comfy.checkout, *flags)
    assert result.returncode == 2
    assert message in result.stderr


def test_quick_test_for_ci_exits_0_without_serving(comfy):
    result = run_main(comfy.checkout, "--cpu", "--quick-test-for-ci", "--temp-directory",
                      str(comfy.checkout.parent / "quick"), "--database-url", "sqlite:///:memory:")
    assert result.returncode == 0, result.stderr
    assert "Import times for custom nodes:" in result.stderr
    assert "Starting server" not in result.stderr


def test_missing_torch_crashes_like_comfyui(comfy):
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        pytest.skip("torch is installed in this interpreter")
    result = run_main(comfy.checkout, "--cpu", env=fixture_env(COMFYUI_FIXTURE_FAKE_TORCH=None))
    assert result.returncode == 1
    assert "ModuleNotFoundError: No module named 'torch'" in result.stderr


def test_missing_requests_is_tolerated_with_fake_torch(comfy, tmp_path):
    shadow = tmp_path / "shadow" / "requests"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'requests'\", name='requests')\n")
    result = run_main(comfy.checkout, "--cpu", "--quick-test-for-ci", "--temp-directory", str(tmp_path),
                      env=fixture_env(PYTHONPATH=str(shadow.parent)))
    assert result.returncode == 0, result.stderr


STUB_TORCH = '''
import os

__version__ = "2.14.1+cu130"


class version:
    __version__ = __version__


class cuda:
    @staticmethod
    def is_available():
        return True

    @staticmethod
    def current_device():
        return 0

    @staticmethod
    def get_device_name(index):
        return "NVIDIA H100 80GB HBM3"

    @staticmethod
    def get_allocator_backend():
        conf = os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "")
        return "cudaMallocAsync" if "backend:cudaMallocAsync" in conf else "native"

    @staticmethod
    def mem_get_info(index):
        return (80 * 2**30, 81 * 2**30)

    @staticmethod
    def memory_stats(index):
        return {"reserved_bytes.all.current": 2**20, "active_bytes.all.current": 0}
'''


@pytest.mark.parametrize("flags, device", [
    ([], ("cuda:0 NVIDIA H100 80GB HBM3 : cudaMallocAsync", "cuda", 0)),
    (["--cpu"], ("cpu", "cpu", None)),
])
def test_real_torch_import_path_with_a_stub_cuda_torch(comfy, tmp_path, flags, device):
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text(STUB_TORCH)
    env = fixture_env(COMFYUI_FIXTURE_FAKE_TORCH=None, PYTHONPATH=str(tmp_path), PYTORCH_CUDA_ALLOC_CONF=None)
    server = Server(comfy.checkout, [*flags, "--temp-directory", str(tmp_path), "--database-url",
                                     "sqlite:///:memory:"], env=env)
    try:
        stats = server.start().get("/system_stats").json()
    finally:
        server.stop()
    assert stats["system"]["pytorch_version"] == "2.14.1+cu130"
    got = stats["devices"][0]
    assert (got["name"], got["type"], got["index"]) == device
    if got["type"] == "cuda":
        assert (got["vram_total"], got["torch_vram_total"]) == (81 * 2**30, 2**20)
        assert (got["vram_free"], got["torch_vram_free"]) == (80 * 2**30 + 2**20, 2**20)
        assert "Set vram state to: NORMAL_VRAM" in server.log


def _own_server(comfy, tmp_path, *flags):
    flags = ["--cpu", "--temp-directory", str(tmp_path), "--database-url", "sqlite:///:memory:", *flags]
    return Server(comfy.checkout, flags)


def test_sigint_stops_cleanly(comfy, tmp_path):
    server = _own_server(comfy, tmp_path).start()
    assert (tmp_path / "temp").is_dir()
    server.proc.send_signal(signal.SIGINT)
    assert server.proc.wait(timeout=10) == 0
    assert "Stopped server" in server.log
    assert not (tmp_path / "temp").exists()


def test_sigterm_stops_promptly(comfy, tmp_path):
    server = _own_server(comfy, tmp_path).start()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=3) == -signal.SIGTERM


def test_busy_port_fails_after_startup(comfy, tmp_path):
    result = run_main(comfy.checkout, "--cpu", "--port", str(comfy.port), "--temp-directory", str(tmp_path),
                      "--database-url", "sqlite:///:memory:")
    assert result.returncode == 1
    assert f"error while attempting to bind on address ('127.0.0.1', {comfy.port}): address already in use" \
        in result.stderr
    assert result.stderr.index("Import times for custom nodes:") < result.stderr.index("OSError")
