"""The host's system state: OS packages, the service user, directories, managed files, crontab
entries, systemd units, the venv.

pyinfra's operations for these (apt.packages, server.user, files.directory/put/template,
crontab.crontab, systemd.service, pip.venv) each ask their own facts: two to four round trips per
file or directory, every run. These read the state from the host's snapshot
(comfyinfra.operations.snapshot: one round trip for the whole deploy) and do nothing when it matches;
when it doesn't, crontab and systemd hand over to pyinfra's own operation. Files are written here: pyinfra's
files.put opens the destination itself (through a link, as root) and chowns it after; managed_file uploads
beside it and renames (pyinfra's `--diff` display kept).
"""

from __future__ import annotations

import hashlib
import io
import posixpath
from dataclasses import dataclass

from pyinfra import host, logger, state
from pyinfra.api import FactBase, FileUploadCommand, operation
from pyinfra.api.output import format_text
from pyinfra.api.util import try_int
from pyinfra.facts.crontab import Crontab
from pyinfra.facts.files import FileContents
from pyinfra.operations import crontab, systemd
from pyinfra.operations.util.files import generate_color_diff  # pyinfra's own --diff rendering

from comfyinfra.operations.common import SYSTEM_PATH, fail_command, q
from comfyinfra.operations.snapshot import observe


@dataclass(frozen=True)
class PathInfo:
    type: str  # file | directory | link | other
    mode: str  # octal, e.g. "755"
    user: str
    group: str
    sha256: str = ""  # files only


class PathStates(FactBase):
    """PathState for many paths in one stat and one sha256sum (the snapshot asks every path this way):
    {(("path", p),): PathInfo} for each path that exists."""

    KINDS = {"symbolic link": "link", "directory": "directory", "regular file": "file", "regular empty file": "file"}

    @staticmethod
    def default() -> dict:
        return {}

    def command(self, keys: tuple) -> str:
        paths = " ".join(q(dict(kwargs)["path"]) for kwargs in keys)
        return (f"stat -c '%F|%a|%U|%G|%n' -- {paths} 2>/dev/null; echo @@sha256; set --; "
                f"for p in {paths}; do if [ -f \"$p\" ] && [ ! -L \"$p\" ]; then set -- \"$@\" \"$p\"; fi; done; "
                "if [ $# -gt 0 ]; then sha256sum -- \"$@\"; fi; true")

    def process(self, output) -> dict:
        lines = list(output)
        split = lines.index("@@sha256") if "@@sha256" in lines else len(lines)
        sums = {}
        for line in lines[split + 1:]:
            digest, _, name = line.partition("  ")
            if name:
                sums[name] = digest
        found = {}
        for line in lines[:split]:
            parts = line.split("|", 4)
            if len(parts) != 5:
                continue
            kind, mode, user, group, name = parts
            kind = self.KINDS.get(kind, "other")
            found[(("path", name),)] = PathInfo(kind, mode, user, group, sums.get(name, "") if kind == "file" else "")
        return found


class PathState(FactBase):
    """Type, mode, owner and (for files) sha256 of a path, not following links; None when absent."""

    many = PathStates  # in a snapshot: one stat and one sha256sum for all of them

    def command(self, path: str) -> str:
        p = q(path)
        return (f"if [ -L {p} ]; then echo link; elif [ -d {p} ]; then echo directory; elif [ -f {p} ]; then echo file; "
                f"elif [ -e {p} ]; then echo other; else exit 0; fi; stat -c '%a %U %G' {p}; "
                f"[ -f {p} ] && [ ! -L {p} ] && sha256sum {p} | cut -d' ' -f1; true")

    def process(self, output) -> PathInfo | None:
        lines = [line.strip() for line in output if line.strip()]
        if len(lines) < 2:
            return None
        mode, user, group = lines[1].split()
        return PathInfo(lines[0], mode, user, group, lines[2] if len(lines) > 2 else "")


def _same(info: PathInfo | None, kind: str, user: str, group: str, mode: str | None, sha256: str = "") -> bool:
    return (info is not None and info.type == kind and (info.user, info.group) == (user, group)
            and (mode is None or info.mode == mode.lstrip("0")) and info.sha256 == sha256)


@operation()
def directory(path: str, user: str, group: str, mode: str = "755", keep: tuple[str, ...] = (), recursive: bool = True):
    """
    A directory with this owner and mode.

    + path: the directory
    + user, group: its owner
    + mode: octal, e.g. "750"
    + keep: subdirectories managed on their own, left alone when the directory changes hands
    + recursive: False for a directory whose entries are each managed on their own (the tree's root)

    When an existing directory changes owner (an install from before the service user lost its write access),
    everything below it changes too, links not followed, and when root takes it over, the links inside are
    deleted: whatever the previous owner left there must not redirect root's writes (`keep` excepted).
    """
    info = observe(PathState, path=path)
    if _same(info, "directory", user, group, mode):
        host.noop(f"{path} in place")
        return
    if info is not None and info.type != "directory":
        yield fail_command(f"{path} exists and is not a directory ({info.type}); move it away and deploy again")
        return
    if info is None:
        yield f"mkdir -p {q(path)} && chown {q(user)}:{q(group)} {q(path)} && chmod {mode} {q(path)}"
        return
    if info.user != user and recursive:
        prune = "".join(f"-path {q(k)} -prune -o " for k in keep)
        if user == "root":
            yield f"find {q(path)} -xdev -mindepth 1 {prune}-type l -print -delete"
        yield f"find {q(path)} -xdev {prune}-exec chown -h {q(user)}:{q(group)} {{}} +"
    elif info.group != group:
        yield f"chown -h {q(user)}:{q(group)} {q(path)}"
    yield f"chmod {mode} {q(path)}"


@operation()
def managed_file(dest: str, content: bytes, user: str = "root", group: str = "root", mode: str = "644"):
    """
    A file with exactly this content, owner and mode: uploaded to a new name in the destination's directory, owned
    and moded there, then renamed over the destination. Nothing is opened through a link at the destination (a
    link there is replaced, its target untouched), and readers see the old file or the new one, never a part.

    + dest: path on the host, in a directory only root can write
    + content: the bytes it must hold (a rendered template, a helper program)
    + user, group, mode: its owner and octal mode
    """
    info = observe(PathState, path=dest)
    digest = hashlib.sha256(content).hexdigest()
    if _same(info, "file", user, group, mode, digest):
        host.noop(f"{dest} up to date")
        return
    if info is not None and info.type == "directory":
        yield fail_command(f"{dest} is a directory; move it away and deploy again")
        return
    if state.config.DIFF:
        _log_diff(dest, info, content)
    parent, name = posixpath.split(dest)
    temp = posixpath.join(parent, f".{name}.comfyinfra-{digest[:16]}")
    yield f"rm -f {q(temp)}"  # never upload through a leftover
    yield FileUploadCommand(io.BytesIO(content), temp, remote_temp_filename=host.get_temp_filename(temp))
    yield f"chown -h {q(user)}:{q(group)} {q(temp)} && chmod {mode} {q(temp)} && mv -fT {q(temp)} {q(dest)}"


def _log_diff(dest: str, info: PathInfo | None, content: bytes) -> None:
    """pyinfra's --diff display for a file about to change (the current content read only from a regular file)."""
    current = []
    if info is not None and info.type == "file":
        current = [line + "\n" for line in (host.get_fact(FileContents, path=dest) or [])]
    host.log(f"Will {'modify' if current else 'create'} {format_text(dest, bold=True)}", logger.info)
    try:
        desired = content.decode().splitlines(keepends=True)
    except UnicodeDecodeError:
        logger.info("Binary file uploaded")
        return
    for line in generate_color_diff(current, desired):
        logger.info("  %s", line)
    logger.info("")


@operation()
def absent_file(path: str):
    """
    No file at `path`.

    + path: the file that must not exist
    """
    if observe(PathState, path=path) is None:
        host.noop(f"{path} absent")
        return
    yield f"rm -f {q(path)}"


@operation()
def venv(path: str, python: str):
    """
    A root-owned Python venv at `path` (made with `<python> -m venv` when its interpreter is missing). One owned by
    anyone else is made again: root runs its pip, and whoever could write it could have planted code there
    (a `.pth` file runs at every interpreter start).

    + path: the venv directory
    + python: the host's interpreter that makes it
    """
    tree = observe(PathState, path=path)
    if tree is not None and tree.user != "root":
        logger.warning(f"{host.print_prefix}{path} is owned by {tree.user}, not root: made again")
        yield f"rm -rf {q(path)}"
    elif observe(PathState, path=f"{path}/bin/python") is not None:
        host.noop(f"venv {path} exists")
        return
    # the system's interpreter, not one from root's own PATH (pyenv under /root): the service user must run it
    yield f"env PATH={SYSTEM_PATH} {q(python)} -m venv {q(path)}"


class DebStatus(FactBase):
    """Which of these Debian packages are installed; None where there is no dpkg (not a Debian host)."""

    @staticmethod
    def default() -> frozenset[str]:
        return frozenset()  # unknown: install them all (apt-get says so loudly if it can't)

    def command(self, packages: tuple[str, ...]) -> str:
        names = " ".join(q(p) for p in packages)
        return (f"command -v dpkg-query >/dev/null 2>&1 || {{ echo no-dpkg; exit 0; }}; echo dpkg; "
                f"dpkg-query -W -f='${{Package}} ${{db:Status-Abbrev}}\\n' {names} 2>/dev/null; true")

    def process(self, output) -> frozenset[str] | None:
        lines = [line.split() for line in output if line.strip()]
        if ["no-dpkg"] in lines:
            return None
        return frozenset(fields[0] for fields in lines if len(fields) > 1 and fields[1] == "ii")


@operation()
def os_packages(packages: tuple[str, ...]):
    """
    Debian packages installed (apt-get update only when one is missing: a no-op run leaves apt alone).

    + packages: names
    """
    installed = observe(DebStatus, packages=tuple(packages))
    if installed is None:
        host.noop("not a Debian host: OS packages are the image's business")
        return
    missing = [p for p in packages if p not in installed]
    if not missing:
        host.noop(f"{len(packages)} packages installed")
        return
    names = " ".join(q(p) for p in missing)
    yield (f"apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
           f"-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold {names}")


class Passwd(FactBase):
    """A user's passwd entry as {uid, home, shell}; None when there is no such user."""

    def command(self, user: str) -> str:
        return f"getent passwd {q(user)} || true"

    def process(self, output) -> dict | None:
        fields = "".join(output).strip().split(":")
        return {"uid": fields[2], "home": fields[5], "shell": fields[6]} if len(fields) == 7 else None


@operation()
def service_user(user: str, home: str, shell: str = "/usr/sbin/nologin", uid: int | None = None):
    """
    A system user (and its group) to run the service.

    + user: name
    + home: its home, set at creation only (moving an existing user's home fails while its processes run)
    + shell: login shell
    + uid: its uid and gid when it must have these (a container's user); an existing user with another is refused
    """
    entry = observe(Passwd, user=user)
    if entry is None and uid is not None:
        yield (f"getent group {q(user)} >/dev/null || groupadd --system --gid {uid} {q(user)}; "
               f"id -u {q(user)} >/dev/null 2>&1 || useradd --system --uid {uid} --gid {q(user)} --no-create-home "
               f"--home-dir {q(home)} --shell {q(shell)} {q(user)}")
    elif entry is None:
        yield (f"id -u {q(user)} >/dev/null 2>&1 || useradd --system --user-group --no-create-home "
               f"--home-dir {q(home)} --shell {q(shell)} {q(user)}")
    elif uid is not None and entry.get("uid") != str(uid):
        yield fail_command(f"comfyinfra: the service user {user} exists with uid {entry.get('uid')}, but the container's "
                           f"user is {uid} (what ComfyUI writes on the host's volumes must be that user's); set "
                           "service_user to a name not in use on this host")
    elif entry["shell"] != shell:
        yield f"usermod --shell {q(shell)} {q(user)}"
    else:
        host.noop(f"user {user} exists")


@operation()
def cron_entry(user: str, cron_name: str, command: str, minute: str, hour: str, day_of_month: str, month: str,
               day_of_week: str):
    """
    One named entry in a user's crontab (pyinfra's format, `# pyinfra-name=<cron_name>` above the line).

    + user: whose crontab
    + cron_name: the entry's name, which finds it again
    + command, minute, hour, day_of_month, month, day_of_week: the entry
    """
    fields = {"minute": minute, "hour": hour, "day_of_month": day_of_month, "month": month, "day_of_week": day_of_week}
    existing = (observe(Crontab, user=user) or Crontab().default()).get_command(name=cron_name)
    if existing and f"# pyinfra-name={cron_name}" in existing.get("comments", []) \
            and existing.get("command") == command and all(try_int(v) == existing.get(k) for k, v in fields.items()):
        host.noop(f"cron entry {cron_name!r} in place")
        return
    yield from crontab.crontab._inner(command=command, user=user, cron_name=cron_name, **fields)


class SystemdUnit(FactBase):
    """`systemctl is-active` and `is-enabled` of a unit, e.g. {'active': 'active', 'enabled': 'enabled'}."""

    def command(self, unit: str) -> str:
        return (f"echo active=$(systemctl is-active {q(unit)} 2>/dev/null); "
                f"echo enabled=$(systemctl is-enabled {q(unit)} 2>/dev/null)")

    def process(self, output) -> dict[str, str]:
        return dict(line.strip().split("=", 1) for line in output if "=" in line)


@operation()
def unit_running(unit: str):
    """
    A systemd unit enabled and active.

    + unit: e.g. comfyui.service
    """
    state = observe(SystemdUnit, unit=unit) or {}
    if state.get("active") == "active" and state.get("enabled") == "enabled":
        host.noop(f"{unit} enabled and running")
        return
    if state.get("active") != "active":  # a unit that hit its start limit refuses to start until reset
        yield f"systemctl reset-failed {q(unit)} 2>/dev/null || true"
    yield from systemd.service._inner(service=unit, running=True, enabled=True)
