"""Per-host plan: everything the roles need, computed from the spec and the host's facts.

Pure functions, no I/O: `make_plan(spec, platform, gpu_probe)` is what the roles turn into
operations and what the offline review renders. Errors are `PlanError`s a user can act on.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, replace

from comfyinfra.hostinfo import GpuProbe, HostPlatform
from comfyinfra.quoting import cron_command
from comfyinfra.spec import HostKind, HostSpec, RefKind, classify_ref, tag_name
from comfyinfra.torch_matrix import Gpu, TorchChoice, TorchChoiceError, choose_torch

# Service manager per host kind when the spec says "auto" and the host's facts don't decide it.
CONTAINER_KINDS = {HostKind.runpod}


class PlanError(ValueError):
    """This host cannot be deployed as declared; the message says why and what to change."""


@dataclass(frozen=True)
class Paths:
    """The host's tree. The service user is the security boundary (ComfyUI runs custom-node code, without
    authentication): root owns everything root writes, reads or runs — the tree's root, the checkout with its
    nodes, the venv, comfyinfra's state, the models and the logs — and the service writes only `service_writable`."""

    root: str
    app: str  # the ComfyUI checkout
    venv: str
    custom_nodes: str
    models: str
    input: str
    output: str
    temp: str
    user: str
    logs: str
    state: str  # comfyinfra's own bookkeeping on the host (constraints, stamps)
    model_blobs: str  # one file per sha256, hard-linked into models/<folder>/
    home: str  # the service's HOME (caches of pip, Hugging Face, nodes)

    @property
    def extra_model_paths(self) -> str:
        return f"{self.state}/extra_model_paths.yaml"

    @property
    def model_logs(self) -> str:
        return f"{self.logs}/models"

    @property
    def workflows(self) -> str:
        return f"{self.root}/workflows"

    @property
    def gpu_monitor_helper(self) -> str:
        return f"{self.state}/bin/gpu_monitor.py"

    @property
    def gpu_monitor_dir(self) -> str:
        return f"{self.logs}/gpu"

    @property
    def model_sync_helper(self) -> str:
        return f"{self.state}/bin/model_sync.py"

    @property
    def python(self) -> str:
        return f"{self.venv}/bin/python"

    @property
    def secrets_env(self) -> str:
        return f"{self.state}/secrets.env"

    @property
    def constraints(self) -> str:
        return f"{self.state}/constraints.txt"

    @property
    def pip_conf(self) -> str:
        # pip reads <venv>/pip.conf for every pip run inside the venv, ComfyUI-Manager's included.
        return f"{self.venv}/pip.conf"

    def service_writable(self) -> tuple[str, ...]:
        """What ComfyUI writes: its uploads, results, scratch space, settings and caches (owned by the service)."""
        return (self.input, self.output, self.temp, self.user, self.home)

    def read_only(self) -> tuple[str, ...]:
        """Root-owned trees the service reads and must not change (systemd ReadOnlyPaths= on top of ownership)."""
        return (self.app, self.venv, self.state, self.models)


@dataclass(frozen=True)
class GitPin:
    repo: str
    ref: str
    kind: RefKind
    tag: str | None = None  # the tag this commit was resolved from (comfyinfra.tag_pins), for people to read

    @property
    def label(self) -> str:
        if self.tag:
            return f"{self.tag} ({self.ref[:12]})"
        return self.ref[:12] if self.kind is RefKind.commit else self.ref


@dataclass(frozen=True)
class NodePlan:
    name: str
    path: str
    pin: GitPin
    install_requirements: bool


@dataclass(frozen=True)
class ModelPlan:
    name: str
    url: str
    sha256: str
    size: int | None
    dest: str
    token_env: str | None


@dataclass(frozen=True)
class CronJob:
    name: str  # pyinfra's cron_name marker: one entry per rule, found again on the next deploy
    schedule: str
    command: str  # the crontab line's command field, as written: a shell command with % escaped (cron_command)

    @property
    def fields(self) -> dict[str, str]:
        minute, hour, day_of_month, month, day_of_week = self.schedule.split()
        return {"minute": minute, "hour": hour, "day_of_month": day_of_month, "month": month, "day_of_week": day_of_week}


def cleanup_jobs(spec: HostSpec, paths: Paths) -> tuple[CronJob, ...]:
    dirs = {"output": paths.output, "input": paths.input, "temp": paths.temp}
    return tuple(
        CronJob(f"comfyinfra cleanup {rule.directory} ({spec.port})", rule.schedule, cron_command(
                f"find {shlex.quote(dirs[rule.directory])} -xdev -type f -mmin +{rule.older_than_minutes} -delete"))
        for rule in spec.cleanup
    )


@dataclass(frozen=True)
class HostPlan:
    spec: HostSpec
    paths: Paths
    comfyui: GitPin
    nodes: tuple[NodePlan, ...]
    gpus: tuple[Gpu, ...]  # the GPUs ComfyUI runs on: none when cpu_only or the torch build is cpu
    torch: TorchChoice
    constraints: tuple[str, ...]
    pip_config: tuple[tuple[str, str], ...]  # (key, value) lines of [global] in the venv's pip.conf
    service_manager: str  # systemd | supervisor | compose (a container section)
    launch_args: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    models: tuple[ModelPlan, ...] = ()
    cron: tuple[CronJob, ...] = ()
    hardware_gpus: tuple[Gpu, ...] = ()  # the host's GPUs, used or not: what the GPU monitor samples

    @property
    def gpu_monitor(self) -> bool:
        return bool(self.hardware_gpus) and self.spec.gpu_monitor

    @property
    def supervisor_command(self) -> str:
        """supervisord has no EnvironmentFile: a shell loads the secrets file, then execs ComfyUI."""
        if not self.spec.service_secrets:
            return self.command_line
        inner = f"set -a; . {shlex.quote(self.paths.secrets_env)}; exec {self.command_line}"
        return f"/bin/sh -c {shlex.quote(inner)}"

    @property
    def writable_paths(self) -> tuple[str, ...]:
        """What ComfyUI may write under ProtectSystem=strict: exactly the directories it owns (the GPU monitor's
        unit has its own)."""
        return self.paths.service_writable()

    @property
    def protect_home(self) -> str:
        # ProtectHome=yes makes /home, /root and /run/user inaccessible, which ReadWritePaths can't undo.
        seen = (*self.writable_paths, *self.paths.read_only())
        under_home = any(p == h or p.startswith(h + "/") for p in seen for h in ("/home", "/root", "/run/user"))
        return "read-only" if under_home else "yes"

    @property
    def service_log(self) -> str:
        """Where ComfyUI's own output goes, for hints: the journal under systemd, a file under supervisord."""
        if self.service_manager == "compose":
            return f"{self.spec.container.engine} logs comfyui"
        return "journalctl -u comfyui" if self.service_manager == "systemd" else f"{self.paths.logs}/comfyui.log"

    @property
    def torch_source(self) -> str | None:
        """The index pip gets the torch set from: the variant's (or overridden) index, else pip's own;
        None with no_index (find_links only)."""
        if self.spec.pip_sources.no_index:
            return None
        return self.torch.index_url or self.spec.pip_sources.index_url or "https://pypi.org/simple"

    @property
    def expected_device(self) -> str:
        return "cuda" if self.gpus else "cpu"

    @property
    def argv(self) -> tuple[str, ...]:
        """ComfyUI's command as words; each template quotes them for its format (systemd_exec, supervisor_command)."""
        return (self.paths.python, "main.py", *self.launch_args)

    @property
    def command_line(self) -> str:
        return shlex.join(self.argv)

    @property
    def health_url(self) -> str:
        host = self.spec.listen.split(",")[0].strip()
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        return f"http://{f'[{host}]' if ':' in host else host}:{self.spec.port}/system_stats"


def make_paths(root: str, models_dir: str | None = None) -> Paths:
    models = models_dir or f"{root}/models"
    return Paths(
        root=root,
        app=f"{root}/ComfyUI",
        venv=f"{root}/venv",
        custom_nodes=f"{root}/ComfyUI/custom_nodes",
        models=models,
        input=f"{root}/input",
        output=f"{root}/output",
        temp=f"{root}/temp",
        user=f"{root}/user",
        logs=f"{root}/logs",
        state=f"{root}/.comfyinfra",
        model_blobs=f"{models}/.blobs",
        home=f"{root}/home",
    )


def pin(repo: str, ref: str, tags: dict[tuple[str, str], str] | None = None) -> GitPin:
    """A tag resolved once for the whole run (`tags`, from comfyinfra.tag_pins) becomes that commit."""
    kind = classify_ref(ref)
    if kind is not RefKind.tag:
        return GitPin(repo=repo, ref=ref, kind=kind)
    tag = tag_name(ref)
    commit = (tags or {}).get((repo, tag))
    if commit:
        return GitPin(repo=repo, ref=commit, kind=RefKind.commit, tag=tag)
    return GitPin(repo=repo, ref=tag, kind=kind)


def tagged_refs(spec: HostSpec) -> set[tuple[str, str]]:
    """The (repo, tag) pairs this host pins by tag."""
    refs = [(spec.comfyui_repo, spec.comfyui_ref), *((node.repo, node.ref) for node in spec.custom_nodes)]
    return {(repo, tag_name(ref)) for repo, ref in refs if classify_ref(ref) is RefKind.tag}


def effective_gpus(spec: HostSpec, probe: GpuProbe) -> tuple[Gpu, ...]:
    """The host's GPUs: detected ones win; a declaration that contradicts them is an error; without nvidia-smi the
    declaration stands. Whether ComfyUI uses them is the torch choice's business (cpu_only, a cpu build)."""
    if probe.error:
        raise PlanError(f"nvidia-smi ({probe.nvidia_smi}) failed: {probe.error!r}. If the driver was just updated, reboot the host.")
    declared = spec.gpu
    if probe.nvidia_smi is None:
        if declared is None:
            return ()
        return (Gpu(declared.name, declared.vram_mib, declared.compute_capability, declared.driver_version),)
    detected = probe.gpus
    if declared is not None and detected:
        first = detected[0]
        mismatches = []
        if declared.name.lower() not in first.name.lower():
            mismatches.append(f"name {declared.name!r} but nvidia-smi reports {first.name!r}")
        if first.compute_capability and declared.compute_capability != first.compute_capability:
            mismatches.append(f"compute capability {declared.compute_capability} but detected {first.compute_capability}")
        if abs(declared.vram_mib - first.vram_mib) > 0.05 * first.vram_mib:
            mismatches.append(f"vram_mib {declared.vram_mib} but detected {first.vram_mib}")
        if declared.driver_version and first.driver_version and declared.driver_version != first.driver_version:
            mismatches.append(f"driver {declared.driver_version} but detected {first.driver_version}")
        if mismatches:
            raise PlanError("declared gpu does not match the host: " + "; ".join(mismatches) + ". Fix or remove field gpu.")
    return detected


def effective_platform(spec: HostSpec, platform: HostPlatform) -> HostPlatform:
    """The host's platform: its facts win; a declaration (platform_*) that contradicts them is an error."""
    mismatches = []
    if spec.platform_arch is not None and spec.platform_arch != platform.arch:
        mismatches.append(f"platform_arch {spec.platform_arch!r} but the host is {platform.arch!r}")
    if spec.platform_wsl is not None and spec.platform_wsl != platform.wsl:
        mismatches.append(f"platform_wsl {spec.platform_wsl} but the host {'is' if platform.wsl else 'is not'} WSL")
    if spec.platform_init is not None and (spec.platform_init == "systemd") != platform.systemd:
        actual = "systemd" if platform.systemd else "other (systemd is not PID 1)"
        mismatches.append(f"platform_init {spec.platform_init!r} but the host's init is {actual}")
    if mismatches:
        raise PlanError("declared platform does not match the host: " + "; ".join(mismatches) +
                        ". Fix or remove those fields (the host's group_data/<kind>.py or inventory entry).")
    return platform


def declared_platform(spec: HostSpec) -> HostPlatform:
    """The platform a plan made without the host assumes (comfyinfra.render): what the spec declares."""
    missing = [name for name in ("platform_arch", "platform_init") if getattr(spec, name) is None]
    if missing:
        raise PlanError(f"{' and '.join(missing)} not declared, so this host can't be planned without connecting; "
                        "declare them in group_data/<kind>.py or the host's inventory entry, e.g. "
                        "platform_arch = 'x86_64', platform_init = 'systemd'")
    wsl = spec.platform_wsl if spec.platform_wsl is not None else spec.host_kind is HostKind.wsl
    return HostPlatform(arch=spec.platform_arch, wsl=wsl, systemd=spec.platform_init == "systemd", mem_total_mib=0)


def plan_without_host(spec: HostSpec, tags: dict[tuple[str, str], str] | None = None) -> HostPlan:
    """The plan from declarations only: declared platform, declared GPU (as when the host has no nvidia-smi)."""
    return make_plan(spec, declared_platform(spec), GpuProbe(), tags)


# systemd gives the unit a private /tmp and /var/tmp (PrivateTmp=yes): a tree under them is invisible to
# the service (status=226/NAMESPACE), so a plan that puts one there is refused.
PRIVATE_TMP = ("/tmp", "/var/tmp")


def check_private_tmp(spec: HostSpec, paths: Paths, service_manager: str) -> None:
    if service_manager != "systemd":
        return
    for field, path in (("install_root", paths.root), ("models_dir", paths.models)):
        hidden = next((t for t in PRIVATE_TMP if path == t or path.startswith(t + "/")), None)
        if hidden:
            raise PlanError(f"{field} {path} is under {hidden}, which the systemd unit's PrivateTmp=yes hides from "
                            f"ComfyUI (it could never start); allowed: a path outside /tmp and /var/tmp, e.g. /opt/comfyui")


def choose_service_manager(spec: HostSpec, platform: HostPlatform) -> str:
    if spec.container is not None:
        if spec.service_manager != "auto":
            raise PlanError(f"service_manager is {spec.service_manager!r} but this host runs ComfyUI in a container, "
                            "which compose runs; allowed with a container section: 'auto'")
        return "compose"
    if spec.service_manager != "auto":
        if spec.service_manager == "systemd" and not platform.systemd:
            raise PlanError("service_manager is 'systemd' but systemd is not running as init on this host; "
                            "allowed here: 'supervisor' or 'auto'")
        return spec.service_manager
    if spec.host_kind in CONTAINER_KINDS or not platform.systemd:
        return "supervisor"
    return "systemd"


# GPUs of a WSL2 host also drive the Windows desktop: keep some VRAM for it (torch-models-nodes.md §3).
WSL_RESERVE_VRAM_GB = 1.0


def launch_args(spec: HostSpec, paths: Paths, gpus: tuple[Gpu, ...]) -> tuple[str, ...]:
    """ComfyUI's command-line flags for this host: the launch policy, one rule per line."""
    args = ["--listen", spec.listen, "--port", str(spec.port),
            "--output-directory", paths.output, "--input-directory", paths.input,
            # ComfyUI uses <X>/temp for --temp-directory X (comfyui-real-cpu.md §5)
            "--temp-directory", paths.root, "--user-directory", paths.user,
            # its default is <checkout>/user/comfyui.db, whatever --user-directory says; the checkout is read-only
            "--database-url", f"sqlite:///{paths.user}/comfyui.db",
            "--extra-model-paths-config", paths.extra_model_paths,
            "--max-upload-size", f"{spec.max_upload_size_mb:g}",
            "--disable-auto-launch"]
    if spec.preview_method != "none":
        args += ["--preview-method", spec.preview_method]
    if not gpus:
        if spec.vram_mode != "default":
            raise PlanError(f"vram_mode is {spec.vram_mode!r} but this host runs on the CPU (no NVIDIA GPU, or cpu_only); "
                            "allowed here: 'default'")
        args.append("--cpu")
    else:
        if spec.vram_mode != "default":
            args.append(f"--{spec.vram_mode}")
        reserve = spec.reserve_vram_gb if spec.reserve_vram_gb is not None else (
            WSL_RESERVE_VRAM_GB if spec.host_kind is HostKind.wsl else None)
        if reserve is not None:
            args += ["--reserve-vram", f"{reserve:g}"]
        if spec.disable_cuda_malloc:
            args.append("--disable-cuda-malloc")
    return tuple(args + spec.extra_args)


def service_env(spec: HostSpec, paths: Paths, gpus: tuple[Gpu, ...]) -> tuple[tuple[str, str], ...]:
    """Environment of the ComfyUI process. CUDA numbers GPUs fastest-first unless told PCI_BUS_ID, which is
    nvidia-smi's order; selecting by UUID makes the choice independent of any numbering."""
    env = [("HOME", paths.home), ("PYTHONUNBUFFERED", "1"), ("CUDA_DEVICE_ORDER", "PCI_BUS_ID")]
    if spec.gpu_select is not None:
        env.append(("CUDA_VISIBLE_DEVICES", select_gpu(spec.gpu_select, gpus)))
    return tuple(env)


def select_gpu(choice: int | str, gpus: tuple[Gpu, ...]) -> str:
    if not gpus:
        raise PlanError(f"gpu_select is {choice!r} but this host has no NVIDIA GPU")
    if isinstance(choice, int) or str(choice).isdigit():
        matches = [g for g in gpus if g.index == int(choice)]
    else:
        matches = [g for g in gpus if g.uuid and g.uuid.startswith(str(choice))]
    if len(matches) != 1:
        known = ", ".join(f"{g.index}: {g.name} {g.uuid or '(uuid unknown)'}" for g in gpus)
        raise PlanError(f"gpu_select {choice!r} matches {len(matches)} GPUs; allowed: one of {known}")
    return matches[0].uuid or str(matches[0].index)


def pip_config(spec: HostSpec, paths: Paths) -> tuple[tuple[str, str], ...]:
    sources = spec.pip_sources
    lines = [("constraint", paths.constraints)]
    if sources.index_url:
        lines.append(("index-url", sources.index_url))
    if sources.extra_index_urls:
        lines.append(("extra-index-url", " ".join(sources.extra_index_urls)))
    if sources.find_links:
        lines.append(("find-links", " ".join(sources.find_links)))
    if sources.no_index:
        lines.append(("no-index", "true"))
    return tuple(lines)


def make_plan(spec: HostSpec, platform: HostPlatform | None, probe: GpuProbe | None,
              tags: dict[tuple[str, str], str] | None = None) -> HostPlan:
    """None for platform or probe: that fact's command failed or printed nothing on the host."""
    if platform is None or probe is None:
        what = "the platform probe (uname -m, /proc/meminfo)" if platform is None else "the GPU probe (nvidia-smi)"
        raise PlanError(f"{what} failed or printed nothing, so this host can't be planned; check that the SSH "
                        "user gets a POSIX shell and can read /proc")
    platform = effective_platform(spec, platform)
    paths = make_paths(spec.install_root, spec.models_dir)
    hardware = effective_gpus(spec, probe)
    pins = spec.torch
    if spec.cpu_only and pins.variant is None:
        pins = pins.model_copy(update={"variant": "cpu"})
    try:
        torch = choose_torch(pins, platform.arch, [] if spec.cpu_only else list(hardware),
                             windows_driver=spec.host_kind is HostKind.wsl)
    except TorchChoiceError as error:
        raise PlanError(str(error)) from None
    # a cpu build can't reach a GPU: ComfyUI then needs --cpu (else "Torch not compiled with CUDA enabled")
    gpus = () if spec.cpu_only or torch.variant == "cpu" else hardware
    if spec.pip_sources.torch_index_url:
        torch = TorchChoice(torch.variant, spec.pip_sources.torch_index_url, torch.requirements,
                            torch.reason + ", index overridden")
    elif spec.pip_sources.no_index:
        torch = TorchChoice(torch.variant, None, torch.requirements, torch.reason + ", from find_links only (no_index)")
    service_manager = choose_service_manager(spec, platform)
    if spec.container is not None:  # ComfyUI and its nodes are checked out into the image's build context
        paths = replace(paths, app=f"{paths.root}/build/ComfyUI", custom_nodes=f"{paths.root}/build/ComfyUI/custom_nodes")
    check_private_tmp(spec, paths, service_manager)
    nodes = tuple(
        NodePlan(node.name, f"{paths.custom_nodes}/{node.name}", pin(node.repo, node.ref, tags), node.install_requirements)
        for node in spec.custom_nodes
    )
    return HostPlan(
        spec=spec,
        paths=paths,
        comfyui=pin(spec.comfyui_repo, spec.comfyui_ref, tags),
        nodes=nodes,
        gpus=gpus,
        torch=torch,
        constraints=torch.requirements,
        pip_config=pip_config(spec, paths),
        service_manager=service_manager,
        launch_args=launch_args(spec, paths, gpus),
        env=service_env(spec, paths, gpus),
        cron=cleanup_jobs(spec, paths),
        hardware_gpus=hardware,
        models=tuple(
            ModelPlan(name, m.url, m.sha256, m.size, f"{paths.models}/{m.folder}/{m.filename}", m.token_env)
            for name in spec.models
            for m in [spec.model_catalog[name]]
        ),
    )
