"""Custom pyinfra operations: pinned git checkouts, stamped pip installs, health waits.

Each reads facts first and yields commands only for drift; otherwise `host.noop(...)` says what
is already in place (shared/reference/pyinfra-testinfra.md §3.4, §4.3 for why the stock
`git.repo` and `pip.packages(requirements=...)` can't be used: no commit pinning, never idempotent).
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from dataclasses import dataclass

from pyinfra import host, logger
from pyinfra.api import FactBase, operation

from comfyinfra.spec import RefKind

q = shlex.quote


# --- pinned git checkout -------------------------------------------------------------------


@dataclass(frozen=True)
class CheckoutState:
    state: str  # absent | notgit | present
    head: str = ""
    origin: str = ""
    dirty: bool = False
    target: str = ""  # the commit the ref names, when known locally ("" if not)


class GitCheckout(FactBase):
    """State of a checkout: HEAD, origin URL, local changes, and the commit `ref` resolves to locally."""

    def command(self, path: str, ref: str, kind: str) -> str:
        if kind == RefKind.commit.value:
            target = f"git cat-file -e {q(ref + '^{commit}')} 2>/dev/null && echo target={q(ref)}"
        elif kind == RefKind.tag.value:
            target = f"echo target=$(git rev-parse -q --verify {q('refs/tags/' + ref + '^{commit}')})"
        else:  # a branch (only with allow_branch): ask the remote, branches move
            target = f"echo target=$(timeout 60 git ls-remote origin {q('refs/heads/' + ref)} | cut -f1)"
        return (
            f"if [ ! -e {q(path)} ]; then echo state=absent; "
            f"elif [ ! -e {q(path + '/.git')} ]; then echo state=notgit; "
            f"else cd {q(path)} && echo state=present && echo head=$(git rev-parse -q --verify HEAD) "
            "&& echo origin=$(git config --get remote.origin.url) "
            "&& echo dirty=$(git status --porcelain --untracked-files=no | head -c1 | wc -c) "
            f"&& {{ {target} || true; }}; fi"
        )

    def process(self, output) -> CheckoutState:
        values = dict(line.split("=", 1) for line in output if "=" in line)
        return CheckoutState(
            state=values.get("state", "absent"),
            head=values.get("head", ""),
            origin=values.get("origin", ""),
            dirty=values.get("dirty", "0").strip() not in ("", "0"),
            target=values.get("target", ""),
        )


def _reachable_or_explain(repo: str, hint: str) -> str:
    """Fail fast, naming the override, when the host can't reach the repository."""
    return (
        f"err=$(timeout 60 git ls-remote -q {q(repo)} 2>&1 >/dev/null) || {{ "
        f"printf 'comfyinfra: cannot reach %s from this host (%s). %s\\n' {q(repo)} \"$err\" {q(hint)} >&2; exit 1; }}"
    )


def pin_args(pin) -> dict:
    """pinned_checkout's repo/ref/kind arguments from a plan.GitPin."""
    return {"repo": pin.repo, "ref": pin.ref, "kind": pin.kind.value}


def _checkout_target(ref: str, kind: str) -> str:
    return {"commit": ref, "tag": f"refs/tags/{ref}"}.get(kind, f"origin/{ref}")


@operation()
def pinned_checkout(repo: str, dest: str, ref: str, kind: str, unreachable_hint: str = ""):
    """
    Keep a git checkout at a pinned commit or tag; correct and report any drift.

    + repo: URL or path of the repository (origin is re-pointed when it changes)
    + dest: checkout directory
    + ref: 40-hex commit, tag name, or branch (when the spec allowed it)
    + kind: "commit", "tag" or "branch" (comfyinfra.spec.classify_ref)
    + unreachable_hint: appended to the error when the repository can't be reached on first clone

    Drift means another HEAD or modified tracked files; untracked files (custom_nodes/*) are kept.

    **Example:**

    .. code:: python

        pinned_checkout(name="ComfyUI @ v0.3.64", repo="https://github.com/comfyanonymous/ComfyUI.git",
                        dest="/opt/comfyui/ComfyUI", ref="v0.3.64", kind="tag")
    """
    current = host.get_fact(GitCheckout, path=dest, ref=ref, kind=kind)
    target = _checkout_target(ref, kind)
    git = f"git -C {q(dest)}"
    if current.state == "notgit":
        yield fail_command(f"{dest} exists but is not a git checkout; move it away and deploy again")
        return
    if current.state == "absent":
        yield _reachable_or_explain(repo, unreachable_hint)
        yield f"git clone -q --no-checkout {q(repo)} {q(dest)}"
        if kind == "commit":
            yield f"{git} cat-file -e {q(ref + '^{commit}')} 2>/dev/null || {git} fetch -q origin {q(ref)}"
        yield f"{git} checkout -q --detach {q(target)}"
        return

    if current.origin != repo:
        yield f"{git} remote set-url origin {q(repo)}"
    if current.target and current.head == current.target and not current.dirty:
        if current.origin == repo:
            host.noop(f"{dest} already at {ref[:12] if kind == 'commit' else ref}")
        return
    was = f"{current.head[:12] or 'no commit'}{' with local changes' if current.dirty else ''}"
    logger.warning(f"{host.print_prefix}{dest}: drift corrected: was at {was}, now {ref}")
    if not current.target:
        yield f"{git} fetch -q --tags origin"
        if kind == "commit":
            yield f"{git} cat-file -e {q(ref + '^{commit}')} 2>/dev/null || {git} fetch -q origin {q(ref)}"
    yield f"{git} checkout -q -f --detach {q(target)}"


class GitSourceReachable(FactBase):
    """'present' when dest is already a checkout, 'no-git' before git is installed, else 'ok' or the error git printed."""

    def command(self, repo: str, dest: str) -> str:
        return (
            f"if [ -e {q(dest + '/.git')} ]; then echo present; "
            "elif ! command -v git >/dev/null 2>&1; then echo no-git; "
            f"else err=$(timeout 60 git ls-remote -q {q(repo)} 2>&1 >/dev/null) && echo ok || echo \"$err\" | tail -n 3; fi"
        )

    def process(self, output) -> str:
        return " ".join(line.strip() for line in output if line.strip())


@operation()
def sources_reachable(sources: tuple[tuple[str, str, str], ...]):
    """
    Fail fast, before anything is installed, when a repository to clone can't be reached.

    + sources: (repo, dest, hint) per checkout; hint names the setting that overrides the repo
    """
    for repo, dest, hint in sources:
        status = host.get_fact(GitSourceReachable, repo=repo, dest=dest)
        if status not in ("present", "no-git", "ok"):
            yield fail_command(f"cannot reach {repo} from this host ({status}). {hint}")
            return
    host.noop("every source is checked out or reachable")


# --- stamped pip install --------------------------------------------------------------------


class FilesDigest(FactBase):
    """sha256 over the given files' contents (missing files count as empty) and the stamp file's content."""

    def command(self, stamp: str, files: tuple[str, ...]) -> str:
        names = " ".join(q(f) for f in files)
        return (
            f"echo digest=$(for f in {names}; do echo \"== $f\"; cat \"$f\" 2>/dev/null; done | sha256sum | cut -d' ' -f1); "
            f"echo stamp=$(cat {q(stamp)} 2>/dev/null)"
        )

    def process(self, output) -> dict[str, str]:
        return dict(line.split("=", 1) for line in output if "=" in line)


def stamp_value(files_digest: str, packages: tuple[str, ...]) -> str:
    return hashlib.sha256(("\n".join([files_digest, *packages])).encode()).hexdigest()


@operation()
def pip_install_stamped(python: str, stamp: str, inputs: tuple[str, ...], requirement_files: tuple[str, ...] = (),
                        packages: tuple[str, ...] = (), owner_label: str = "", protected: tuple[str, ...] = ()):
    """
    Install requirements once per distinct input: skipped while the stamp matches.

    + python: the venv's interpreter
    + stamp: file recording what was installed (written only after pip succeeded)
    + inputs: files whose content decides whether to reinstall (requirements, constraints, pip.conf)
    + requirement_files: passed to pip as -r (missing files are skipped)
    + packages: extra requirement strings
    + owner_label: who asked for these requirements, for the error message (e.g. "custom node 'x'")
    + protected: pins that a conflict is reported against (the torch set)

    The venv's pip.conf carries the constraints file, so nothing installed here can replace torch;
    a conflict fails the operation with a message naming the owner.
    """
    facts = host.get_fact(FilesDigest, stamp=stamp, files=tuple(inputs))
    wanted = stamp_value(facts.get("digest", ""), tuple(packages))
    if facts.get("stamp") == wanted:
        host.noop(f"{owner_label or 'requirements'} already installed")
        return
    # Requirement files that don't exist (a node without requirements.txt) are skipped on the host.
    collect = "".join(f"[ -f {q(f)} ] && set -- \"$@\" -r {q(f)}; " for f in requirement_files)
    collect += "".join(f"set -- \"$@\" {q(p)}; " for p in packages)
    pins = ", ".join(protected)
    refusal = (f"comfyinfra: {owner_label} needs packages that conflict with the pinned torch set ({pins}); "
               "nothing was replaced. Pin a compatible commit of it, or change the fleet's torch pins.")
    yield (
        f"set --; {collect}[ $# -eq 0 ] && exit 0; "
        f"out=$({q(python)} -m pip install --no-input --progress-bar off \"$@\" 2>&1); rc=$?; "
        "printf '%s\\n' \"$out\" | tail -n 25; "
        "if [ $rc -ne 0 ]; then "
        "printf '%s' \"$out\" | grep -qiE '\\(constraint\\) torch|depends on torch|torch(vision|audio)?[=<>!~]' "
        f"&& echo {q(refusal)} >&2; exit $rc; fi"
    )
    yield f"mkdir -p $(dirname {q(stamp)}) && echo {q(wanted)} > {q(stamp)}"


# --- exact pins (torch set) ----------------------------------------------------------------


class PipFreeze(FactBase):
    """Installed distributions of a venv as {normalized name: version}, local labels kept (2.9.1+cu128).

    pyinfra's PipPackages regex drops versions with a local label, so a pinned torch+cuXYZ would
    look missing on every run.
    """

    def command(self, python: str) -> str:
        return f"[ -x {q(python)} ] && {q(python)} -m pip freeze --all 2>/dev/null || true"

    def process(self, output) -> dict[str, str]:
        installed = {}
        for line in output:
            name, sep, version = line.strip().partition("==")
            if sep:
                installed[_normalize(name)] = version
        return installed


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@operation()
def pip_pinned(python: str, requirements: tuple[str, ...], index_url: str | None = None):
    """
    Install exact `name==version` pins (local labels included) unless exactly those are installed.

    + python: the venv's interpreter
    + requirements: e.g. ("torch==2.9.1+cu128", "torchvision==0.24.1+cu128")
    + index_url: the only index to use for them (the PyTorch variant index); None: pip's configuration
    """
    installed = host.get_fact(PipFreeze, python=python)
    missing = [r for r in requirements if installed.get(_normalize(r.split("==")[0])) != r.split("==")[1]]
    if not missing:
        host.noop(f"{', '.join(requirements)} already installed")
        return
    index = f"--index-url {q(index_url)} " if index_url else ""
    yield f"{q(python)} -m pip install --no-input --progress-bar off {index}{' '.join(q(r) for r in requirements)}"


# --- models ---------------------------------------------------------------------------------


class ModelStates(FactBase):
    """Each model's state from stat() and its verification marker only ({} before the helper exists)."""

    def command(self, python: str, helper: str, manifest: str) -> str:
        return f"if [ -f {q(helper)} ]; then {q(python)} {q(helper)} check {q(manifest)}; else echo '{{}}'; fi"

    def process(self, output) -> dict[str, str]:
        return json.loads("".join(output) or "{}")


class ModelProgress(FactBase):
    """Last line of each per-model progress log on the host (what is downloading, how fast, ETA)."""

    def command(self, logs: str) -> str:
        return f"for f in {q(logs)}/*.log; do [ -f \"$f\" ] && tail -n 1 \"$f\"; done; true"

    def process(self, output) -> list[str]:
        return [line for line in output if line.strip()]


@operation()
def models_synced(python: str, helper: str, manifest: dict):
    """
    Make every declared model present and verified, without reading files that are already verified.

    + python: interpreter on the host that runs the helper (stdlib only)
    + helper: path of comfyinfra/host_helpers/model_sync.py on the host
    + manifest: host, blobs, logs, parallel and models (name, url, sha256, size, dests) -- no tokens

    The command reads the manifest *with tokens* on stdin: pass it as the operation's `_stdin`, so no
    secret reaches argv (`ps`), files or logs.
    """
    states = host.get_fact(ModelStates, python=python, helper=helper, manifest=json.dumps(manifest, sort_keys=True))
    pending = [model["name"] for model in manifest["models"] if states.get(model["name"]) != "ok"]
    if not pending:
        host.noop(f"{len(manifest['models'])} models verified by their markers (stat only, no file read)")
        return
    logger.info(f"{host.print_prefix}models to sync: {', '.join(pending)} (progress: {manifest['logs']}/<name>.log)")
    yield f"{q(python)} {q(helper)} sync"


# --- health ---------------------------------------------------------------------------------


class SystemStats(FactBase):
    """ComfyUI's /system_stats as a dict (curl on the host, so loopback-bound services count); None if it doesn't answer."""

    def command(self, url: str) -> str:
        return f"curl -s -f -m 5 {q(url)} || true"

    def process(self, output):
        try:
            return json.loads("".join(output))
        except ValueError:
            return None


def device_type(stats) -> str:
    return ((stats or {}).get("devices") or [{}])[0].get("type", "?")


@operation()
def wait_healthy(url: str, timeout_s: int, log_command: str, expect_device: str, what: str = "ComfyUI"):
    """
    Wait until `url` (/system_stats) answers, then check ComfyUI runs on the expected device.

    + url: health endpoint
    + timeout_s: give up after this many seconds, showing the service's last log lines
    + log_command: prints the service's last 30 log lines
    + expect_device: "cuda" on GPU hosts, "cpu" otherwise (devices[0].type)
    """
    stats = host.get_fact(SystemStats, url=url)
    if stats is not None:
        got = device_type(stats)
        if got == expect_device:
            host.noop(f"{what} healthy at {url} on {got}")
        else:
            yield fail_command(f"{what} runs on {got!r}, expected {expect_device!r}: check the torch build "
                               "(+cuXYZ, not +cpu), the driver, and CUDA_VISIBLE_DEVICES")
        return
    yield (
        f"i=0; until curl -s -f -o /dev/null -m 5 {q(url)}; do "
        f"i=$((i+1)); if [ $i -gt {int(timeout_s)} ]; then "
        f"echo {q(f'comfyinfra: {what} did not answer {url} within {int(timeout_s)} s; its last 30 log lines:')} >&2; "
        f"{log_command} >&2; exit 1; fi; sleep 1; done"
    )
    message = (f"comfyinfra: {what} runs on %r, expected {expect_device!r}: check the torch build, the driver "
               "and CUDA_VISIBLE_DEVICES")
    check = f"import json,sys; t=json.load(sys.stdin)['devices'][0]['type']; sys.exit(0 if t == {expect_device!r} else {message!r} % t)"
    yield f"curl -s -f -m 5 {q(url)} | python3 -c {q(check)}"


# --- secrets file -----------------------------------------------------------------------------


class SameAsStdin(FactBase):
    """Whether the file already holds exactly what the operation sends on stdin (compared on the host,
    so no secret, nor a hash of one, comes back)."""

    def command(self, path: str) -> str:
        return f"cmp -s - {q(path)} && echo same || echo different"

    def process(self, output) -> bool:
        return "".join(output).strip() == "same"


@operation()
def secret_file(path: str, owner: str):
    """
    Write the operation's stdin to `path`, mode 0600, owned by `owner`, unless it already holds exactly that.

    + path: destination (e.g. the service's env file)
    + owner: user (and group) owning the file

    Pass the content as the operation's `_stdin`: it never appears in argv, logs or --diff.
    """
    if host.get_fact(SameAsStdin, path=path):
        host.noop(f"{path} up to date")
        return
    tmp = q(path + ".tmp")
    yield f"umask 077 && cat > {tmp} && chown {q(owner)}: {tmp} && chmod 600 {tmp} && mv {tmp} {q(path)}"


# --- supervisord (hosts without systemd) ----------------------------------------------------


class SupervisorStatus(FactBase):
    """Whether supervisord answers on `conf`'s socket, and the state of `program` (RUNNING, STOPPED, ...)."""

    def command(self, conf: str, program: str) -> str:
        ctl = f"supervisorctl -c {q(conf)}"
        return (
            f"if {ctl} pid >/dev/null 2>&1; then echo daemon=up; "
            f"{ctl} status {q(program)} 2>/dev/null | awk '{{print \"program=\" $2}}'; else echo daemon=down; fi"
        )

    def process(self, output) -> dict[str, str]:
        return dict(line.split("=", 1) for line in output if "=" in line)


@operation()
def supervisord_running(conf: str):
    """
    Start supervisord when it is not running (containers have no init to start it).

    + conf: supervisord's main config file
    """
    if host.get_fact(SupervisorStatus, conf=conf, program="-").get("daemon") == "up":
        host.noop("supervisord already running")
        return
    yield (
        f"supervisord -c {q(conf)} && i=0; until supervisorctl -c {q(conf)} pid >/dev/null 2>&1; do "
        "i=$((i+1)); [ $i -gt 30 ] && { echo 'comfyinfra: supervisord did not come up' >&2; exit 1; }; sleep 1; done"
    )


@operation()
def supervisor_program_running(conf: str, program: str, start_command: str | None = None):
    """
    Start a supervisord program unless it is already RUNNING or STARTING.

    + conf: supervisord's main config file
    + program: program name from its [program:x] section
    + start_command: how to start it (default: supervisorctl start), e.g. wrapped to show logs on failure
    """
    status = host.get_fact(SupervisorStatus, conf=conf, program=program).get("program", "")
    if status in ("RUNNING", "STARTING"):
        host.noop(f"{program} already {status.lower()}")
        return
    yield start_command or f"supervisorctl -c {q(conf)} start {q(program)}"


def fail_command(message: str) -> str:
    """A command that prints the message and fails: pyinfra then fails this host only and goes on
    with the others (an exception raised inside an operation would abort the whole run)."""
    return f"echo {q('comfyinfra: ' + message)} >&2; exit 1"


@operation()
def refuse(message: str):
    """Fail this host (only) with a message, e.g. when its plan cannot be made."""
    yield fail_command(message)
