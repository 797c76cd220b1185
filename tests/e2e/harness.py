"""End-to-end harness: a real sshd on loopback, real git repos, and the real pyinfra CLI.

Everything lives under one world-traversable work dir (the service user must read the fixture
repos over file paths), made at test time with throwaway keys.
"""

from __future__ import annotations

import json
import pprint
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.fixture_comfyui import free_port  # re-exported for the e2e tests
from tests.support.ssh_target import ssh_connection_data

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "tests" / "fixtures"


def run(cmd, **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("check", True)
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    return subprocess.run(cmd, **kwargs)


@dataclass
class Sshd:
    port: int
    key: Path
    known_hosts: Path
    process: subprocess.Popen

    def connection_data(self) -> dict:
        return ssh_connection_data(self.port, self.key, self.known_hosts)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def start_sshd(workdir: Path) -> Sshd:
    """OpenSSH server on 127.0.0.1:<free port>, key auth only, keys generated now."""
    sshd_bin = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(sshd_bin).exists():
        raise RuntimeError("sshd not found: install openssh-server (.ci/run does)")
    d = workdir / "sshd"
    d.mkdir(parents=True)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "host_key")])
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "client_key")])
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    port = free_port()
    key_type, key = (d / "host_key.pub").read_text().split()[:2]
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {key_type} {key}\n")
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\nPidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        "Subsystem sftp internal-sftp\n"
        # this machine's podman needs its settings (tests/support/containers.conf), as a real host has them in
        # /etc/containers/containers.conf: the container host's deploy runs podman over this SSH
        f"SetEnv CONTAINERS_CONF={REPO_ROOT / 'tests' / 'support' / 'containers.conf'}\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
    process = subprocess.Popen([sshd_bin, "-D", "-e", "-f", str(d / "sshd_config")],
                               stdout=subprocess.DEVNULL, stderr=open(d / "sshd.log", "w"))
    _wait_for_port(port, "sshd")
    return Sshd(port, d / "client_key", d / "known_hosts", process)


GIT_ENV = {"GIT_AUTHOR_NAME": "fixture", "GIT_AUTHOR_EMAIL": "fixture@example.invalid",
           "GIT_COMMITTER_NAME": "fixture", "GIT_COMMITTER_EMAIL": "fixture@example.invalid",
           "GIT_AUTHOR_DATE": "2025-10-12T00:00:00+00:00", "GIT_COMMITTER_DATE": "2025-10-12T00:00:00+00:00"}


def git(repo: Path, *args: str) -> str:
    return run(["git", "-C", str(repo), *args], env={**os.environ, **GIT_ENV}).stdout.strip()


@dataclass
class FixtureRepo:
    """A fixture repository: a working copy we commit in, pushed to a bare repo served by git daemon."""

    work: Path
    url: str
    commit: str

    def commit_change(self, path: str, text: str, message: str) -> str:
        (self.work / path).write_text(text)
        git(self.work, "add", "-A")
        git(self.work, "commit", "-q", "-m", message)
        git(self.work, "push", "-q", "origin", "HEAD:master", "--tags")
        self.commit = git(self.work, "rev-parse", "HEAD")
        return self.commit


@dataclass
class GitDaemon:
    """`git daemon` on loopback: a real git server for the fixture repos (git://127.0.0.1:PORT/NAME.git).

    The service user clones over the network as it would from a mirror; local paths owned by root
    would be refused by git's safe.directory check anyway.
    """

    base: Path
    port: int
    process: subprocess.Popen

    def repo(self, src: Path, name: str, tag: str | None = None) -> FixtureRepo:
        work = self.base.parent / "work" / name
        shutil.copytree(src, work, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        run(["git", "init", "-q", "-b", "master", str(work)])
        git(work, "add", "-A")
        git(work, "commit", "-q", "-m", f"fixture {src.name}")
        if tag:
            git(work, "tag", tag)
        run(["git", "clone", "-q", "--bare", str(work), str(self.base / f"{name}.git")])
        git(work, "remote", "add", "origin", str(self.base / f"{name}.git"))
        return FixtureRepo(work, f"git://127.0.0.1:{self.port}/{name}.git", git(work, "rev-parse", "HEAD"))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def start_git_daemon(workdir: Path) -> GitDaemon:
    base = workdir / "repos"
    base.mkdir(parents=True)
    port = free_port()
    process = subprocess.Popen(["git", "daemon", "--reuseaddr", "--export-all", "--listen=127.0.0.1", f"--port={port}",
                                f"--base-path={base}", str(base)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_port(port, "git daemon")
    return GitDaemon(base, port, process)


def _wait_for_port(port: int, what: str) -> None:
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not start on port {port}")


def wheelhouse() -> list[str]:
    """This machine's offline wheel directory (torch 2.13.0+cpu lives there), as find-links."""
    links = os.environ.get("PIP_FIND_LINKS", "").split()
    return [link for link in links + ["/opt/wheels"] if Path(link).is_dir()][:1]


@dataclass
class DeployResult:
    rc: int
    stdout: str
    stderr: str
    data: dict | None = None
    changed: dict[str, list[str]] = field(default_factory=dict)  # host -> names of ops that changed
    failed: dict[str, list[str]] = field(default_factory=dict)

    def changes(self, host: str) -> list[str]:
        return self.changed.get(host, [])


def write_inventory(path: Path, hosts: dict[str, dict], group: str = "linux") -> Path:
    path.write_text(f"{group} = {pprint.pformat(list(hosts.items()))}\n")
    return path


def pyinfra_command(inventory: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "pyinfra", str(inventory), "deploy.py", *args]


def pyinfra(inventory: Path, *args: str, timeout: int = 1200, env: dict | None = None) -> DeployResult:
    """Run the real CLI from the repo root (config.py, group_data/ and deploy.py as a user would)."""
    cmd = pyinfra_command(inventory, *args)
    env = {**os.environ, "PYINFRA_PROGRESS": "off", **(env or {})}
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    result = DeployResult(proc.returncode, proc.stdout, proc.stderr)
    if "--json" in args and proc.stdout.strip().startswith("{"):
        result.data = json.loads(proc.stdout)
        for op in (result.data.get("results") or {}).get("operations", []):
            for host in op.get("success", []):
                result.changed.setdefault(host, []).append(op["name"])
            for host in op.get("error", []):
                result.failed.setdefault(host, []).append(op["name"])
    return result


def export_tree(repo: str, ref: str, dest: Path) -> list[str]:
    """Write the files of `ref` from any git repo (bare included) into dest; returns paths whose blobs
    the copy lacks (they are left empty: e.g. one tokenizer.json in some ComfyUI mirrors)."""
    missing = []
    listing = run(["git", "--git-dir", _git_dir(repo), "ls-tree", "-r", "-z", ref]).stdout
    for entry in filter(None, listing.split("\0")):
        meta, path = entry.split("\t", 1)
        mode, kind, sha = meta.split()
        if kind != "blob":
            continue
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        blob = subprocess.run(["git", "--git-dir", _git_dir(repo), "cat-file", "blob", sha], capture_output=True)
        if blob.returncode != 0:
            missing.append(path)
        target.write_bytes(blob.stdout if blob.returncode == 0 else b"")
        if mode == "100755":
            target.chmod(0o755)
    return missing


def _git_dir(repo: str) -> str:
    return run(["git", "-C", repo, "rev-parse", "--absolute-git-dir"]).stdout.strip()
