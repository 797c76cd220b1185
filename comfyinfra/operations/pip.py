"""Python packages in the venv: the torch set at exact pins, requirements installed once per distinct
input, and the reachability of the torch source checked before anything is installed.

Why not pyinfra's `pip.packages`: its PipPackages regex drops versions with a local label, so a
pinned torch+cu128 looks missing on every run, and `requirements=` runs pip every time
(shared/reference/pyinfra-testinfra.md §4.3).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from pyinfra import host
from pyinfra.api import FactBase, operation

from comfyinfra.operations.common import as_user, changed, fail_command, q
from comfyinfra.operations.snapshot import observe

# Sent inline, and only by a run that installs something: nothing to upload or keep in step beforehand.
PIP_GUARD = (Path(__file__).resolve().parent.parent / "host_helpers" / "pip_guard.py").read_text()


def pip_guard(python: str, *args: str) -> str:
    """The host-side guard (comfyinfra/host_helpers/pip_guard.py) run by the venv's interpreter: -S so that no
    .pth file a package dropped into the venv runs as root here, -I so that no PYTHON* variable steers it."""
    return f"{q(python)} -I -S -c {q(PIP_GUARD)} {' '.join(q(a) for a in args)}"


class Stamp(FactBase):
    """The content of a stamp file ('' when it, the venv or the service user does not exist yet)."""

    @staticmethod
    def default() -> str:
        return ""

    def command(self, path: str) -> str:
        return f"cat {q(path)} 2>/dev/null || true"

    def process(self, output) -> str:
        return "".join(output).strip()


def stamp_value(inputs: tuple[str, ...]) -> str:
    return hashlib.sha256("\n".join(inputs).encode()).hexdigest()


@operation()
def pip_install_stamped(python: str, stamp: str, inputs: tuple[str, ...], requirement_files: tuple[str, ...] = (),
                        packages: tuple[str, ...] = (), owner_label: str = "", protected: tuple[str, ...] = (),
                        refuse_options_unless: str = "", after: tuple = ()):
    """
    Install requirements once per distinct input: skipped while the stamp matches.

    + python: the venv's interpreter
    + stamp: file recording what was installed (written only after pip succeeded)
    + inputs: what decides the result, as known before the run: the pin of the checkout holding the
      requirement files, the torch constraints, pip's sources. Values from the plan, not files read on
      the host, so that `--dry` predicts exactly (a file the same run rewrites would be read stale).
    + requirement_files: passed to pip as -r (missing files are skipped)
    + packages: extra requirement strings
    + owner_label: who asked for these requirements, for the error message (e.g. "custom node 'x'")
    + protected: pins that a conflict is reported against (the torch set)
    + refuse_options_unless: the spec field that allows option lines (e.g. custom_nodes[0].allow_requirement_options);
      when given, requirement files with pip option lines, URL or path requirements are refused before pip runs
      (they fetch packages from outside pip_sources), with a message naming the file, the line and this field
    + after: operations whose change means reinstalling: the venv (re)created, the checkout moved

    The venv's pip.conf carries the constraints file, so nothing installed here can replace torch;
    a conflict fails the operation with a message naming the owner.
    """
    wanted = stamp_value((*inputs, *packages))
    if observe(Stamp, path=stamp) == wanted and not changed(*after):
        host.noop(f"{owner_label or 'requirements'} already installed")
        return
    # Read on the host at execution: the checkout may move earlier in this same run.
    guard = ""
    if refuse_options_unless and requirement_files:
        check = pip_guard(python, "check-requirements", "--owner", owner_label or "requirements",
                          "--opt-in", refuse_options_unless, *requirement_files)
        guard = f"{check} || exit 1; "
    # Requirement files that don't exist (a node without requirements.txt) are skipped on the host.
    collect = "".join(f"[ -f {q(f)} ] && set -- \"$@\" -r {q(f)}; " for f in requirement_files)
    collect += "".join(f"set -- \"$@\" {q(p)}; " for p in packages)
    pins = ", ".join(protected)
    refusal = (f"comfyinfra: {owner_label} needs packages that conflict with the pinned torch set ({pins}); "
               "nothing was replaced. Pin a compatible commit of it, or change the fleet's torch pins.")
    yield (
        f"{guard}set --; {collect}if [ $# -gt 0 ]; then "
        f"out=$({q(python)} -m pip install --no-input --progress-bar off \"$@\" 2>&1); rc=$?; "
        "printf '%s\\n' \"$out\" | tail -n 25; "
        "if [ $rc -ne 0 ]; then "
        "printf '%s' \"$out\" | grep -qiE '\\(constraint\\) torch|depends on torch|torch(vision|audio)?[=<>!~]' "
        f"&& echo {q(refusal)} >&2; exit $rc; fi; fi; "
        f"mkdir -p $(dirname {q(stamp)}) && echo {q(wanted)} > {q(stamp)}"
    )


class InstalledDistributions(FactBase):
    """Installed distributions of a venv as {normalized name: version}, local labels kept (2.9.1+cu128).

    Read from the dist-info directory names (what `pip freeze` reports, without starting pip: a
    second instead of milliseconds in a venv the size of ComfyUI's). {} when there is no venv yet.
    """

    @staticmethod
    def default() -> dict[str, str]:
        return {}

    def command(self, python: str) -> str:
        venv = python.rsplit("/bin/", 1)[0]
        return f"ls -1d {q(venv)}/lib/python3*/site-packages/*.dist-info 2>/dev/null || true"

    def process(self, output) -> dict[str, str]:
        installed = {}
        for line in output:
            name, sep, version = line.strip().rsplit("/", 1)[-1].removesuffix(".dist-info").partition("-")
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
    installed = observe(InstalledDistributions, python=python)
    missing = [r for r in requirements if installed.get(_normalize(r.split("==")[0])) != r.split("==")[1]]
    if not missing:
        host.noop(f"{', '.join(requirements)} already installed")
        return
    index = f"--index-url {q(index_url)} " if index_url else ""
    yield f"{q(python)} -m pip install --no-input --progress-bar off {index}{' '.join(q(r) for r in requirements)}"


@operation()
def torch_files_intact(python: str, requirements: tuple[str, ...], after: tuple = (), invalidate: tuple[str, ...] = ()):
    """
    After requirements were installed: fail the host when a file of the torch set no longer matches the sha256
    in its dist-info/RECORD, or another package lists one of its files (pip overwrites another package's files
    silently, and `pip show torch` still reports the pin).

    + python: the venv's interpreter
    + requirements: the exact pins to verify, e.g. ("torch==2.9.1+cu128", "torchvision==0.24.1+cu128")
    + after: the operations that install packages; verified only when one of them changes something, so a
      deploy that installs nothing stays a no-op (hashing torch reads gigabytes)
    + invalidate: stamps removed on failure, so that the next deploy installs and verifies again instead of
      taking the altered venv for done
    """
    if not changed(*after):
        host.noop("nothing was installed, torch's files unchanged")
        return
    venv = python.rsplit("/bin/", 1)[0]
    forget = f"rm -f {' '.join(q(stamp) for stamp in invalidate)}; " if invalidate else ""
    yield f"{pip_guard(python, 'verify-records', '--venv', venv, *requirements)} || {{ {forget}exit 1; }}"


class TorchSource(FactBase):
    """Whether the torch set can be installed from its source, checked as the user who installs it:
    'present' (already installed), 'ok', or what failed."""

    @staticmethod
    def default() -> str:
        return ""

    def command(self, python: str, requirement: str, index_url: str | None, find_links: tuple[str, ...],
                user: str) -> str:
        name, version = requirement.split("==")
        venv = python.rsplit("/bin/", 1)[0]
        wheel = f"{name}-{version}-*.whl"
        in_links = " || ".join(f"ls {q(link.removeprefix('file://'))}/{wheel} >/dev/null 2>&1" for link in find_links
                               if not link.startswith(("http://", "https://")))
        if index_url and index_url.startswith(("http://", "https://")):
            probe = f"curl -fsS -m 20 -o /dev/null {q(index_url.rstrip('/') + '/' + name + '/')}"
        elif index_url:
            probe = f"ls -d {q(index_url.removeprefix('file://').rstrip('/') + '/' + name)} >/dev/null"
        else:
            probe = "false"
        check = as_user(user, f"{{ {in_links or 'false'}; }} || {probe}")
        installed = f"{q(venv)}/lib/python3*/site-packages/{q(f'{name}-{version}.dist-info')}"
        return (
            f"if ls -d {installed} >/dev/null 2>&1; then echo present; "
            f"else err=$( {{ {check}; }} 2>&1 >/dev/null) && echo ok || echo \"failed: $err\" | tail -n 2; fi"
        )

    def process(self, output) -> str:
        return " ".join(line.strip() for line in output if line.strip())


@operation()
def torch_source_reachable(python: str, requirement: str, index_url: str | None, find_links: tuple[str, ...],
                           user: str, hint: str):
    """
    Fail fast, before anything is installed, when the torch wheel can be found neither in a find-links
    directory nor on its index.

    + python: the venv's interpreter (torch already installed there: nothing to check)
    + requirement: torch's exact pin, e.g. torch==2.9.1+cu128
    + index_url: the index pip will use for it (None: no index, find-links only)
    + find_links: wheelhouse directories (pip --find-links)
    + user: who runs pip
    + hint: the settings that override the source
    """
    status = observe(TorchSource, python=python, requirement=requirement, index_url=index_url,
                           find_links=tuple(find_links), user=user)
    if status in ("present", "ok"):
        host.noop(f"{requirement} installed or available")
        return
    where = " or ".join([*(f"find-links {link}" for link in find_links), *([index_url] if index_url else [])])
    yield fail_command(f"cannot get {requirement} from {where or 'anywhere'} on this host "
                       f"({status.removeprefix('failed: ') or 'no answer'}). {hint}")
