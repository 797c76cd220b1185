"""comfyinfra.workflows: the offline validator, the workflow templates and the CLI.

Checks run against the /object_info excerpt recorded from real ComfyUI 0.3.64 (skipped when
../shared/reference/comfyui-api is absent), hand-written entries for the SDXL nodes the excerpt
lacks, and the fixture ComfyUI's live /object_info.
"""

import copy
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from comfyinfra import workflows
from comfyinfra.workflows import Problem, validate, with_seed
from tests.support.fixture_comfyui import Server, free_port, make_checkout

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "workflows"
RECORDED = Path(__file__).resolve().parents[3] / "shared/reference/comfyui-api"

SAMPLERS = ["euler", "euler_ancestral", "heun", "dpmpp_2m", "dpmpp_2m_sde", "uni_pc"]
SCHEDULERS = ["simple", "sgm_uniform", "karras", "exponential", "normal", "beta"]

# Entries as ComfyUI 0.3.64's nodes.py declares them (INPUT_TYPES / RETURN_TYPES / OUTPUT_NODE),
# trimmed to what the validator reads. The recorded excerpt has only the first five classes'
# real bodies (SaveImage, PreviewImage, LoadImage, EmptyImage, CheckpointLoaderSimple).
SDXL_OBJECT_INFO = {
    "CheckpointLoaderSimple": {
        "input": {"required": {"ckpt_name": [["sd_xl_base_1.0.safetensors"], {"tooltip": "checkpoint"}]}},
        "output": ["MODEL", "CLIP", "VAE"], "output_node": False},
    "CLIPTextEncode": {
        "input": {"required": {"text": ["STRING", {"multiline": True, "dynamicPrompts": True}],
                               "clip": ["CLIP", {}]}},
        "output": ["CONDITIONING"], "output_node": False},
    "EmptyLatentImage": {
        "input": {"required": {"width": ["INT", {"default": 512, "min": 16, "max": 16384, "step": 8}],
                               "height": ["INT", {"default": 512, "min": 16, "max": 16384, "step": 8}],
                               "batch_size": ["INT", {"default": 1, "min": 1, "max": 4096}]}},
        "output": ["LATENT"], "output_node": False},
    "KSampler": {
        "input": {"required": {
            "model": ["MODEL", {}],
            "seed": ["INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True}],
            "steps": ["INT", {"default": 20, "min": 1, "max": 10000}],
            "cfg": ["FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}],
            "sampler_name": [SAMPLERS, {}],
            # the V3 spelling of an enum, to cover both forms in one workflow
            "scheduler": ["COMBO", {"options": SCHEDULERS}],
            "positive": ["CONDITIONING", {}],
            "negative": ["CONDITIONING", {}],
            "latent_image": ["LATENT", {}],
            "denoise": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}]}},
        "output": ["LATENT"], "output_node": False},
    "VAEDecode": {
        "input": {"required": {"samples": ["LATENT", {}], "vae": ["VAE", {}]}},
        "output": ["IMAGE"], "output_node": False},
    "VAEEncode": {
        "input": {"required": {"pixels": ["IMAGE"], "vae": ["VAE"]}},
        "output": ["LATENT"], "output_node": False},
    "LoadImage": {
        "input": {"required": {"image": [["example.png"], {"image_upload": True}]}},
        "output": ["IMAGE", "MASK"], "output_node": False},
    "SaveImage": {
        "input": {"required": {"images": ["IMAGE", {}], "filename_prefix": ["STRING", {"default": "ComfyUI"}]},
                  "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}},
        "output": [], "output_node": True},
    "ImageInvert": {
        "input": {"required": {"image": ["IMAGE"]}},
        "output": ["IMAGE"], "output_node": False},
    # for the optional-input, "*" and union checks
    "AnyPassthrough": {
        "input": {"required": {"value": ["*", {}]}, "optional": {"mask": ["MASK,IMAGE", {}],
                                                               "flag": ["BOOLEAN", {"default": False}]}},
        "output": ["*"], "output_node": False},
}

SMOKE = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 16711680}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
}


def recorded_object_info():
    path = RECORDED / "object_info.excerpt.json"
    if not path.is_file():
        pytest.skip(f"recorded /object_info excerpt {path} is not available")
    return json.loads(path.read_text())


@pytest.fixture
def real():
    return recorded_object_info()


def template(name):
    return workflows.load(TEMPLATES / name)


def fields(problems):
    return [(p.node_id, p.field) for p in problems]


# -- Problem -------------------------------------------------------------------------------------

def test_problem_is_frozen_and_reads_as_a_sentence():
    problem = Problem("3", "KSampler", "steps", "value 0 is smaller than the minimum 1")
    assert str(problem) == "node 3 (KSampler), input 'steps': value 0 is smaller than the minimum 1"
    with pytest.raises(AttributeError):
        problem.message = "x"  # type: ignore[misc]
    assert str(Problem(None, None, None, "the workflow has no output node")) == "the workflow has no output node"


# -- each check, failing and passing, against the recorded excerpt ----------------------------------

def test_valid_weight_free_workflow_passes(real):
    assert validate(SMOKE, real) == []


def test_unknown_class_type(real):
    workflow = {**SMOKE, "9": {"class_type": "NoSuchNode", "inputs": {}}}
    problems = validate(workflow, real)
    assert fields(problems) == [("9", None)]
    assert "NoSuchNode" in str(problems[0]) and "does not exist" in str(problems[0])


def test_missing_required_input(real):
    # the recorded prompt_err_missing_input.json case: color and filename_prefix missing
    workflow = copy.deepcopy(SMOKE)
    del workflow["1"]["inputs"]["color"]
    del workflow["2"]["inputs"]["filename_prefix"]
    problems = validate(workflow, real)
    assert sorted(fields(problems)) == [("1", "color"), ("2", "filename_prefix")]
    assert all("required input is missing" in p.message for p in problems)


def test_unknown_input(real):
    workflow = copy.deepcopy(SMOKE)
    workflow["1"]["inputs"]["colour"] = 0
    problems = validate(workflow, real)
    assert fields(problems) == [("1", "colour")]
    assert "color" in problems[0].message  # lists the known inputs


def test_hidden_and_optional_inputs_are_known(real):
    workflow = copy.deepcopy(SMOKE)
    workflow["2"]["inputs"]["prompt"] = {}  # hidden on SaveImage
    assert validate(workflow, real) == []
    wf = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
          "2": {"class_type": "AnyPassthrough", "inputs": {"value": ["1", 0], "mask": ["1", 0], "flag": True}},
          "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}}}
    info = {**real, "AnyPassthrough": SDXL_OBJECT_INFO["AnyPassthrough"]}
    assert validate(wf, info) == []
    wf["2"]["inputs"]["flag"] = "yes"
    assert fields(validate(wf, info)) == [("2", "flag")]


def test_link_to_missing_node(real):
    # the recorded prompt_err_dangling_link.json case
    workflow = copy.deepcopy(SMOKE)
    workflow["2"]["inputs"]["images"] = ["9", 0]
    problems = validate(workflow, real)
    assert fields(problems) == [("2", "images")]
    assert "node 9" in problems[0].message and "not in the workflow" in problems[0].message


def test_link_output_index_out_of_range(real):
    workflow = copy.deepcopy(SMOKE)
    workflow["2"]["inputs"]["images"] = ["1", 1]  # EmptyImage has one output
    problems = validate(workflow, real)
    assert fields(problems) == [("2", "images")]
    assert "1 output(s)" in problems[0].message
    workflow["2"]["inputs"]["images"] = ["1", 0]
    assert validate(workflow, real) == []


def test_malformed_link(real):
    workflow = copy.deepcopy(SMOKE)
    workflow["2"]["inputs"]["images"] = ["1", 0, 2]
    assert "must be [node_id, output_index]" in validate(workflow, real)[0].message
    workflow["2"]["inputs"]["images"] = [1, 0]  # integer node ids are accepted, as ComfyUI does
    assert validate(workflow, real) == []


def test_link_type_mismatch(real):
    # LoadImage output 1 is MASK; SaveImage.images wants IMAGE
    workflow = {"1": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
                "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 1], "filename_prefix": "x"}}}
    problems = validate(workflow, real)
    assert fields(problems) == [("2", "images")]
    assert "expects IMAGE" in problems[0].message and "is MASK" in problems[0].message
    workflow["2"]["inputs"]["images"] = ["1", 0]
    assert validate(workflow, real) == []


def test_link_type_wildcard_and_union():
    info = SDXL_OBJECT_INFO
    # MASK into "*" and into "MASK,IMAGE"; then "*" into IMAGE
    wf = {"1": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
          "2": {"class_type": "AnyPassthrough", "inputs": {"value": ["1", 1], "mask": ["1", 1]}},
          "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}}}
    assert validate(wf, info) == []
    wf["4"] = {"class_type": "AnyPassthrough", "inputs": {"value": ["1", 0], "mask": ["5", 0]}}
    wf["5"] = {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}}
    problems = validate(wf, info)
    assert fields(problems) == [("4", "mask")] and "LATENT" in problems[0].message


def test_literal_where_a_link_is_needed(real):
    workflow = copy.deepcopy(SMOKE)
    workflow["2"]["inputs"]["images"] = "picture.png"
    problems = validate(workflow, real)
    assert fields(problems) == [("2", "images")] and "expects a link" in problems[0].message


def test_enum_value_not_in_list(real):
    # the recorded excerpt's LoadImage lists ["example.png"]
    workflow = {"1": {"class_type": "LoadImage", "inputs": {"image": "other.png"}},
                "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}
    problems = validate(workflow, real)
    assert fields(problems) == [("1", "image")]
    assert "'example.png'" in problems[0].message and "upload" in problems[0].message
    workflow["1"]["inputs"]["image"] = "example.png"
    assert validate(workflow, real) == []


def test_missing_model_file_shows_as_ckpt_name(real):
    # the recorded prompt_err_missing_model_file.json case: CheckpointLoaderSimple lists no files
    assert real["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] == []
    workflow = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "missing.safetensors"}},
                "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 2], "filename_prefix": "x"}}}
    problems = [p for p in validate(workflow, real) if p.field == "ckpt_name"]
    assert len(problems) == 1
    assert "models/checkpoints" in problems[0].message and "missing.safetensors" in problems[0].message


def test_combo_v3_form():
    info = {"Pick": {"input": {"required": {"mode": ["COMBO", {"options": ["a", "b"]}]}},
                     "output": [], "output_node": True}}
    assert validate({"1": {"class_type": "Pick", "inputs": {"mode": "b"}}}, info) == []
    problems = validate({"1": {"class_type": "Pick", "inputs": {"mode": "c"}}}, info)
    assert fields(problems) == [("1", "mode")] and "['a', 'b']" in problems[0].message


def test_enum_accepts_a_combo_link_only():
    info = {"Choices": {"input": {"required": {}}, "output": [["a", "b"]], "output_node": False},
            "Pick": {"input": {"required": {"mode": [["a", "b"], {}]}}, "output": [], "output_node": True},
            "Img": {"input": {"required": {}}, "output": ["IMAGE"], "output_node": False}}
    ok = {"1": {"class_type": "Choices", "inputs": {}}, "2": {"class_type": "Pick", "inputs": {"mode": ["1", 0]}}}
    assert validate(ok, info) == []
    bad = {"1": {"class_type": "Img", "inputs": {}}, "2": {"class_type": "Pick", "inputs": {"mode": ["1", 0]}}}
    assert fields(validate(bad, info)) == [("2", "mode")]


@pytest.mark.parametrize("value, expected", [
    (999999, "bigger than the maximum 16384"),  # the recorded prompt_err_value_out_of_range.json case
    (0, "smaller than the minimum 1"),
    ("64", "expects a number"),
    (True, "expects a number"),
    (64.5, "expects an integer"),
])
def test_int_literal_range_and_type(real, value, expected):
    workflow = copy.deepcopy(SMOKE)
    workflow["1"]["inputs"]["width"] = value
    problems = validate(workflow, real)
    assert fields(problems) == [("1", "width")]
    assert expected in problems[0].message


def test_int_literal_bounds_are_inclusive(real):
    workflow = copy.deepcopy(SMOKE)
    workflow["1"]["inputs"].update(width=16384, height=1, color=0xFFFFFF)
    assert validate(workflow, real) == []


def test_float_literal_range_and_type():
    workflow = template("sdxl_txt2img.json")
    workflow["5"]["inputs"]["denoise"] = 1.5
    workflow["5"]["inputs"]["cfg"] = "7"
    problems = validate(workflow, SDXL_OBJECT_INFO)
    assert sorted(fields(problems)) == [("5", "cfg"), ("5", "denoise")]
    workflow["5"]["inputs"].update(denoise=1, cfg=0.0)  # an int is a valid FLOAT
    assert validate(workflow, SDXL_OBJECT_INFO) == []


def test_string_literal_type(real):
    workflow = copy.deepcopy(SMOKE)
    workflow["2"]["inputs"]["filename_prefix"] = 5
    assert fields(validate(workflow, real)) == [("2", "filename_prefix")]


def test_no_output_node(real):
    # the recorded prompt_err_no_output_node.json case
    workflow = {"1": SMOKE["1"]}
    problems = validate(workflow, real)
    assert len(problems) == 1 and problems[0].node_id is None
    assert "no output node" in str(problems[0])
    assert validate({**workflow, "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}, real) == []


def test_malformed_workflows(real):
    assert "JSON object" in str(validate([], real)[0])
    assert "no nodes" in str(validate({}, real)[0])
    problems = validate({**SMOKE, "3": {"inputs": {}}, "4": {"class_type": "EmptyImage", "inputs": []}}, real)
    assert sorted(fields(problems)) == [("3", None), ("4", None)]


def test_recorded_excerpt_keys_that_are_not_classes_are_ignored(real):
    assert "_note" in real
    assert validate({**SMOKE, "3": {"class_type": "_note", "inputs": {}}}, real)[0].node_id == "3"


# -- templates -----------------------------------------------------------------------------------

SDXL_TEMPLATES = ["sdxl_txt2img.json", "sdxl_img2img.json", "sdxl_batch.json"]


@pytest.mark.parametrize("name", SDXL_TEMPLATES)
def test_sdxl_templates_validate(name):
    assert validate(template(name), SDXL_OBJECT_INFO) == []


@pytest.mark.parametrize("name", SDXL_TEMPLATES)
def test_sdxl_templates_fail_on_ckpt_name_when_no_models(name):
    info = copy.deepcopy(SDXL_OBJECT_INFO)
    info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] = []
    problems = validate(template(name), info)
    assert [(p.class_type, p.field) for p in problems] == [("CheckpointLoaderSimple", "ckpt_name")]
    assert "sd_xl_base_1.0.safetensors" in problems[0].message


def test_template_defaults():
    txt = template("sdxl_txt2img.json")
    by_class = {node["class_type"]: node["inputs"] for node in txt.values()}
    assert by_class["CheckpointLoaderSimple"] == {"ckpt_name": "sd_xl_base_1.0.safetensors"}
    assert by_class["EmptyLatentImage"] == {"width": 1024, "height": 1024, "batch_size": 1}
    sampler = by_class["KSampler"]
    assert {k: sampler[k] for k in ("seed", "steps", "cfg", "sampler_name", "scheduler", "denoise")} == {
        "seed": 42, "steps": 20, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}
    assert by_class["SaveImage"]["filename_prefix"] == "comfyinfra/txt2img"
    batch = {n["class_type"]: n["inputs"] for n in template("sdxl_batch.json").values()}
    assert batch["EmptyLatentImage"]["batch_size"] == 4
    img = {n["class_type"]: n["inputs"] for n in template("sdxl_img2img.json").values()}
    assert img["LoadImage"] == {"image": "example.png"} and img["KSampler"]["denoise"] == 0.6
    smoke = {n["class_type"]: n["inputs"] for n in template("cpu_smoke.json").values()}
    assert smoke["EmptyImage"] == {"width": 64, "height": 48, "batch_size": 1, "color": 16711680}
    assert smoke["SaveImage"]["filename_prefix"] == "comfyinfra/smoke"


def test_template_classes_exist_in_real_comfyui(real):
    names = set(real["_node_class_names_sorted"])
    for path in sorted(TEMPLATES.glob("*.json")):
        for node in workflows.load(path).values():
            assert node["class_type"] in names, (path.name, node["class_type"])


def test_template_nodes_the_excerpt_has_use_its_input_names(real):
    for path in sorted(TEMPLATES.glob("*.json")):
        for node_id, node in workflows.load(path).items():
            info = real.get(node["class_type"])
            if isinstance(info, dict):
                required = set(info["input"]["required"])
                assert set(node["inputs"]) == required, (path.name, node_id)


def test_hand_written_entries_agree_with_the_excerpt(real):
    for cls in ("LoadImage", "SaveImage", "CheckpointLoaderSimple"):
        assert set(SDXL_OBJECT_INFO[cls]["input"]["required"]) == set(real[cls]["input"]["required"])
        assert SDXL_OBJECT_INFO[cls]["output"] == real[cls]["output"]
        assert SDXL_OBJECT_INFO[cls]["output_node"] == real[cls]["output_node"]


# -- with_seed and load --------------------------------------------------------------------------

def test_with_seed_sets_every_seed_and_copies():
    workflow = template("sdxl_txt2img.json")
    workflow["9"] = {"class_type": "KSamplerAdvanced", "inputs": {"noise_seed": 1}}
    workflow["10"] = {"class_type": "KSampler", "inputs": {"seed": ["11", 0]}}
    seeded = with_seed(workflow, 7)
    assert seeded["5"]["inputs"]["seed"] == 7 and seeded["9"]["inputs"]["noise_seed"] == 7
    assert seeded["10"]["inputs"]["seed"] == ["11", 0]  # a linked seed stays linked
    assert workflow["5"]["inputs"]["seed"] == 42 and workflow["9"]["inputs"]["noise_seed"] == 1
    assert seeded["1"] == workflow["1"] and seeded["1"] is not workflow["1"]
    assert validate(with_seed(template("sdxl_txt2img.json"), 2**64 - 1), SDXL_OBJECT_INFO) == []


@pytest.mark.parametrize("seed", [-1, 2**64, 1.5, True, "3"])
def test_with_seed_rejects_bad_seeds(seed):
    with pytest.raises(ValueError):
        with_seed(template("sdxl_txt2img.json"), seed)


def test_load_unwraps_prompt_bodies_and_refuses_ui_format(tmp_path):
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"prompt": SMOKE, "client_id": "x"}))
    assert workflows.load(body) == SMOKE
    ui = tmp_path / "ui.json"
    ui.write_text(json.dumps({"nodes": [], "links": [], "version": 0.4}))
    with pytest.raises(ValueError, match="Export \\(API\\)"):
        workflows.load(ui)


# -- the fixture ComfyUI's live /object_info ----------------------------------------------------------

@pytest.fixture(scope="module")
def fixture_server(tmp_path_factory):
    server = Server(make_checkout(tmp_path_factory.mktemp("workflows"))).start()
    try:
        yield server.url
    finally:
        server.stop()


def test_cpu_smoke_validates_against_the_fixture(fixture_server):
    object_info = requests.get(fixture_server + "/object_info", timeout=30).json()
    assert validate(template("cpu_smoke.json"), object_info) == []


def test_cpu_smoke_is_accepted_and_run_by_the_fixture(fixture_server):
    response = requests.post(fixture_server + "/prompt", json={"prompt": template("cpu_smoke.json")}, timeout=10)
    assert response.status_code == 200, response.text
    prompt_id = response.json()["prompt_id"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        history = requests.get(f"{fixture_server}/history/{prompt_id}", timeout=10).json()
        if prompt_id in history:
            break
        time.sleep(0.05)
    assert history[prompt_id]["status"]["status_str"] == "success"
    images = history[prompt_id]["outputs"]["3"]["images"]
    assert images[0]["subfolder"] == "comfyinfra" and images[0]["filename"].startswith("smoke_")


def test_sdxl_template_reports_missing_model_on_the_fixture(fixture_server):
    # the fixture has no KSampler/CLIPTextEncode/VAEEncode and no checkpoints
    object_info = requests.get(fixture_server + "/object_info", timeout=30).json()
    problems = validate(template("sdxl_txt2img.json"), object_info)
    assert ("1", "ckpt_name") in fields(problems)
    assert {p.class_type for p in problems if p.field is None} == {"CLIPTextEncode", "KSampler"}


# -- CLI -----------------------------------------------------------------------------------------

def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "comfyinfra.workflows", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def sdxl_info_file(tmp_path):
    path = tmp_path / "object_info.json"
    path.write_text(json.dumps(SDXL_OBJECT_INFO))
    return path


def test_cli_valid_exits_0(sdxl_info_file):
    result = run_cli("validate", TEMPLATES / "sdxl_txt2img.json", "--object-info", sdxl_info_file)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


def test_cli_problems_exit_1_one_line_each(sdxl_info_file, tmp_path):
    workflow = template("sdxl_txt2img.json")
    workflow["5"]["inputs"]["steps"] = 0
    workflow["1"]["inputs"]["ckpt_name"] = "nope.safetensors"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(workflow))
    result = run_cli("validate", path, "--object-info", sdxl_info_file)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2
    assert any("ckpt_name" in line for line in lines) and any("steps" in line for line in lines)


def test_cli_against_a_live_server(fixture_server):
    assert main_in_process("validate", TEMPLATES / "cpu_smoke.json", "--server", fixture_server) == 0
    assert main_in_process("validate", TEMPLATES / "sdxl_txt2img.json", "--server", fixture_server + "/") == 1


def main_in_process(*args):
    return workflows.main([str(a) for a in args])


@pytest.mark.parametrize("args, message", [
    ((), "usage"),
    (("validate", "wf.json"), "one of the arguments --server --object-info is required"),
    (("validate", "missing.json", "--object-info", "x.json"), "cannot read workflow"),
])
def test_cli_usage_errors_exit_2(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr


def test_cli_bad_object_info_exits_2(tmp_path):
    bad = tmp_path / "info.json"
    bad.write_text("not json")
    result = run_cli("validate", TEMPLATES / "cpu_smoke.json", "--object-info", bad)
    assert result.returncode == 2 and "cannot read object info" in result.stderr


def test_cli_connection_error_exits_2():
    result = run_cli("validate", TEMPLATES / "cpu_smoke.json", "--server", f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 2
    assert "cannot get" in result.stderr and "/object_info" in result.stderr
