"""Is this ComfyUI host what the inventory says? One check per test, each failure says what to do."""

from __future__ import annotations

import json
import os
import re
import shlex

import pytest

from comfyinfra.container.plan import CONTAINER_NAME, make_container_plan

SUPERVISORCTL = "supervisorctl -c /etc/supervisor/supervisord.conf"

# Reads a .safetensors header on the host: 8-byte little-endian length, JSON header, and the largest
# tensor end offset must match the file size (catches truncated and HTML-error downloads, no hashing).
SAFETENSORS_CHECK = r"""
import json, os, struct, sys
path, size = sys.argv[1], os.stat(sys.argv[1]).st_size
with open(path, "rb") as f:
    (n,) = struct.unpack("<Q", f.read(8))
    if n > 100 * 2**20: sys.exit("header length %d is implausible" % n)
    header = json.loads(f.read(n))
end = max([t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"] or [0])
sys.exit(0 if 8 + n + end == size else "header says %d bytes, file has %d" % (8 + n + end, size))
"""


def get_json(host, plan, route: str):
    url = plan.health_url.rsplit("/", 1)[0] + route
    out = host.run(f"curl -s -f -m 15 {shlex.quote(url)}")
    assert out.rc == 0, f"{url} did not answer on the host (curl rc {out.rc}): is ComfyUI running? {out.stderr}"
    return json.loads(out.stdout)


def test_service_is_running(host, target):
    if target.service_manager == "compose":  # the service is the container
        container = make_container_plan(target)
        engine = container.spec.engine
        state = host.run(f"{engine} inspect --format '{{{{.State.Status}}}}' {CONTAINER_NAME}")
        assert state.stdout.strip() == "running", f"container {CONTAINER_NAME}: {state.stdout.strip() or state.stderr!r}; see {container.logs_command}"
        health = host.run(f"{engine} healthcheck run {CONTAINER_NAME}" if engine == "podman" else
                           f"docker inspect --format '{{{{.State.Health.Status}}}}' {CONTAINER_NAME} | grep -qx healthy")
        assert health.rc == 0, f"container {CONTAINER_NAME} is not healthy; see {container.logs_command}"
    elif target.service_manager == "supervisor":
        status = host.run(f"{SUPERVISORCTL} status comfyui").stdout
        assert "RUNNING" in status, f"supervisord reports: {status.strip()!r}; see {target.paths.logs}/comfyui.log"
    else:
        service = host.service("comfyui")
        assert service.is_running, "comfyui.service is not active: journalctl -u comfyui -n 50"
        assert service.is_enabled, "comfyui.service is not enabled at boot: systemctl enable comfyui"


def test_listens_only_where_configured(host, target):
    wanted = {address.strip() for address in target.spec.listen.split(",")}
    for address in wanted:
        assert host.socket(f"tcp://{address}:{target.spec.port}").is_listening, f"nothing listens on {address}:{target.spec.port}"
    bound = {s.split("://", 1)[1].rsplit(":", 1)[0] for s in host.socket.get_listening_sockets()
             if s.startswith("tcp") and s.rsplit(":", 1)[1] == str(target.spec.port)}
    extra = bound - wanted
    assert not extra, f"port {target.spec.port} is also bound on {sorted(extra)}; ComfyUI has no auth: keep listen={target.spec.listen!r}"


def pinned_version(host, target) -> str:
    """`__version__` of the pinned commit's comfyui_version.py, read from git's objects and parsed here: nothing
    from the host's install tree is run by the SSH user (root)."""
    pin = target.comfyui
    rev = {"commit": pin.ref, "tag": f"refs/tags/{pin.ref}^{{commit}}"}.get(pin.kind.value, f"origin/{pin.ref}")
    shown = host.run(f"env GIT_NO_REPLACE_OBJECTS=1 git -C {shlex.quote(target.paths.app)} show "
                     f"{shlex.quote(rev + ':comfyui_version.py')}")
    assert shown.rc == 0, f"cannot read comfyui_version.py at {rev} in {target.paths.app}: {shown.stderr.strip()}"
    found = re.search(r"""^__version__\s*=\s*["']([^"']+)["']""", shown.stdout, re.M)
    assert found, f"no __version__ in comfyui_version.py at {rev}"
    return found.group(1)


def test_system_stats_matches_the_pins(host, target):
    stats = get_json(host, target, "/system_stats")
    system, device = stats["system"], stats["devices"][0]
    assert system["comfyui_version"] == pinned_version(host, target), \
        "ComfyUI reports another version than the pinned commit"
    torch_pin = target.torch.requirements[0].split("==", 1)[1]
    assert system["pytorch_version"] == torch_pin or (
        "+" not in torch_pin and system["pytorch_version"].split("+")[0] == torch_pin
    ), f"PyTorch {system['pytorch_version']} runs, the plan pins {torch_pin}"
    assert device["type"] == target.expected_device, f"ComfyUI runs on {device['type']}, expected {target.expected_device}"
    if target.gpus:
        gpu = target.gpus[0]
        assert gpu.name.replace("NVIDIA ", "") in device["name"], f"device {device['name']!r}, expected {gpu.name!r}"
        assert device["vram_total"] >= 0.9 * gpu.vram_mib * 2**20, f"vram_total {device['vram_total']} < {gpu.vram_mib} MiB"
    argv = " ".join(system["argv"])
    missing = [flag for flag in target.launch_args if flag.startswith("--") and flag not in system["argv"]]
    assert not missing, f"ComfyUI was started without {missing} (argv: {argv}); redeploy to restart it"


def test_custom_node_loaded(host, target, node_name):
    nodes = {n.name: n for n in target.spec.custom_nodes}
    if node_name not in nodes:
        pytest.skip(f"{node_name} is not declared for this host")
    info = get_json(host, target, "/object_info")
    from_node = sorted(cls for cls, entry in info.items() if entry.get("python_module") == f"custom_nodes.{node_name}")
    declared = nodes[node_name].node_classes
    missing = [cls for cls in declared if cls not in info]
    assert from_node and not missing, (
        f"custom node {node_name!r} did not load ({'missing ' + ', '.join(missing) if missing else 'no class from it'}): "
        f"look for 'IMPORT FAILED' / 'Cannot import' in {target.service_log}")


def test_model_present(host, target, model_name):
    models = {m.name: m for m in target.models}
    if model_name not in models:
        pytest.skip(f"{model_name} is not declared for this host")
    model = models[model_name]
    file = host.file(model.dest)
    assert file.exists, f"{model.dest} is missing: redeploy (the model sync will fetch it)"
    if model.size:
        assert file.size == model.size, f"{model.dest} has {file.size} bytes, declared {model.size}"
    if model.dest.endswith(".safetensors"):
        check = host.run(f"python3 -c {shlex.quote(SAFETENSORS_CHECK)} {shlex.quote(model.dest)}")
        assert check.rc == 0, f"{model.dest} is not a valid safetensors file: {check.stderr.strip()}"


def test_workflow_template_valid(host, target, workflow_name):
    from comfyinfra.workflows import validate

    if workflow_name not in target.spec.smoke_workflows:
        pytest.skip(f"{workflow_name} is not a smoke workflow of this host")
    deployed = host.file(f"{target.paths.workflows}/{workflow_name}")
    assert deployed.exists, f"{deployed.path} is missing: redeploy"
    problems = validate(json.loads(deployed.content_string), get_json(host, target, "/object_info"))
    assert not problems, f"{workflow_name} cannot run on this host:\n" + "\n".join(f"  - {p}" for p in problems)


def test_generation(host, target, comfy):
    from comfyinfra.client import png_ok
    from comfyinfra.loadtest import vary_workflow

    name = target.spec.smoke_generate
    if not name:
        pytest.skip("generation smoke is opt-in: set smoke_generate for this host")
    template = json.loads(host.file(f"{target.paths.workflows}/{name}").content_string)
    workflow = vary_workflow(template, job=0, seed_base=int.from_bytes(os.urandom(4), "little"))  # no cache hit
    result = comfy.run(workflow, timeout_s=600)
    images = [image.data for image in result.images]
    min_bytes = 1024 if target.gpus else 64  # a weight-free CPU smoke image is a few hundred bytes
    assert images and all(png_ok(data, min_bytes=min_bytes) for data in images), f"{name} produced no valid PNG"


def test_queue_answers(host, target):
    queue = get_json(host, target, "/queue")
    assert set(queue) >= {"queue_running", "queue_pending"}


def test_cleanup_crons_installed(host, target):
    crontab = host.run(f"crontab -l -u {shlex.quote(target.spec.service_user)}").stdout
    missing = [job.name for job in target.cron if f"# pyinfra-name={job.name}" not in crontab]
    assert not missing, f"cron entries missing: {missing}; redeploy"


def test_cron_daemon_running(host, target):
    """The cleanup entries fire only while a cron daemon runs: supervised in containers (run_cron_daemon)."""
    if target.spec.run_cron_daemon:
        status = host.run(f"{SUPERVISORCTL} status comfyui-cron").stdout
        assert "RUNNING" in status, f"supervisord reports: {status.strip()!r}; redeploy (it starts it again)"
    elif target.service_manager == "systemd":
        assert host.service("cron").is_running, "cron.service is not running: the cleanup entries never fire"
    else:
        assert host.run("pgrep -x cron || pgrep -x crond").rc == 0, \
            "no cron daemon runs, so the cleanup entries never fire; set run_cron_daemon = True (containers)"


def test_gpu_monitor_installed(host, target):
    if not target.gpu_monitor:
        pytest.skip("no GPU (or gpu_monitor off): nothing to monitor")
    if target.service_manager == "supervisor":
        assert "RUNNING" in host.run(f"{SUPERVISORCTL} status comfyui-gpu-monitor").stdout
    else:
        assert host.service("comfyui-gpu-monitor.timer").is_enabled
