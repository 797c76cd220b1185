"""Real Linux hosts for the test suite: Debian 12 containers with systemd as PID 1, reachable over SSH.

Podman (root, runc, cgroupfs) runs them; no image registry is needed: the image is built here once with
debootstrap from Debian's mirror and `podman import`, and cached in podman's store under a tag that hashes
its recipe. Each host gets its own throwaway client key, its own ssh host keys (made at first boot) and a
known_hosts file, so a deploy reaches it with strict host key checking, exactly like the loopback sshd of
tests/e2e/harness.py.

    with systemd_hosts(2, tmp_path) as hosts:
        inventory = {f"host{i}": h.connection_data() for i, h in enumerate(hosts)}
        hosts[0].exec("systemctl", "is-active", "comfyui")

Every podman call reads tests/support/containers.conf through CONTAINERS_CONF (runc, cgroupfs, no default
ulimits: what this machine kind needs), so nothing under /etc is touched. Containers are named
`comfyinfra-host-<pid>-<random>-<i>` and labelled `comfyinfra-test=1`; `remove_stale()` removes those whose
creating process is gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tests.support.fixture_comfyui import free_port
from tests.support.ssh_target import ssh_connection_data

CONTAINERS_CONF = Path(__file__).resolve().with_name("containers.conf")
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# Bump when ensure_image's recipe changes in a way the package list doesn't show (the rootfs tweaks below).
IMAGE_RECIPE_VERSION = "2"
# systemd + sshd to be a host at all, and everything roles/base.py's "OS packages" step would apt-get install
# (APT_PACKAGES for a systemd host), so that step finds them present and changes nothing.
PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "openssh-server", "sudo", "procps", "iproute2",
    "python3", "python3-venv", "python3-dev", "build-essential", "git", "ca-certificates", "curl", "cron",
    "logrotate",
)
IMAGE_REPO = "localhost/comfyinfra-host"
LOCK_FILE = Path("/var/tmp/comfyinfra-host-image.lock")
NAME_PREFIX = "comfyinfra-host-"
LABEL = "comfyinfra-test=1"
OWNER_LABEL = "comfyinfra-test.owner"  # "<pid>:<process start time>" of the process that made the container
BOOT_TIMEOUT_S = 60.0

# Written into the rootfs before import.
SSHD_DROPIN = "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
# Host keys are removed from the image (debootstrap's postinst made one set for every container); each
# container makes its own before sshd starts. `ExecStartPre=` clears the list so `sshd -t` runs after keygen.
SSH_KEYGEN_DROPIN = ("[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\n"
                     "ExecStartPre=/usr/sbin/sshd -t\n")


def log(message: str) -> None:
    print(f"[systemd_hosts] {message}", file=sys.stderr, flush=True)


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(*args: str, check: bool = True, timeout: float | None = 120, **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    proc = subprocess.run(["podman", *args], check=False, env=podman_env(), timeout=timeout, **kwargs)
    if check and proc.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} failed ({proc.returncode}): {(proc.stderr or '').strip()}")
    return proc


# --- image ---------------------------------------------------------------------------------------------------

def image_tag() -> str:
    recipe = json.dumps({"suite": SUITE, "packages": sorted(PACKAGES), "version": IMAGE_RECIPE_VERSION},
                        sort_keys=True)
    return f"{IMAGE_REPO}:{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"


def _image_exists(tag: str) -> bool:
    return podman("image", "exists", tag, check=False).returncode == 0


def ensure_image() -> str:
    """The host image's tag, built now (debootstrap + podman import, a few minutes) unless podman has it."""
    tag = image_tag()
    if _image_exists(tag):
        return tag
    for tool in ("debootstrap", "podman", "tar"):
        if not shutil.which(tool):
            raise RuntimeError(f"{tool} not found: apt-get install -y debootstrap podman runc")
    with open(LOCK_FILE, "a") as lock:
        log(f"waiting for the image build lock {LOCK_FILE}")
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if _image_exists(tag):  # another process built it while we waited
                return tag
            _build_image(tag)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return tag


def _build_image(tag: str) -> None:
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="comfyinfra-host-rootfs-", dir="/var/tmp"))
    rootfs = tmp / "rootfs"
    try:
        log(f"building {tag}: debootstrap {SUITE} from {MIRROR} ({len(PACKAGES)} packages, a few minutes)")
        proc = subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE,
                               str(rootfs), MIRROR], check=False, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            debootstrap_log = rootfs / "debootstrap" / "debootstrap.log"
            tail = debootstrap_log.read_text(errors="replace")[-3000:] if debootstrap_log.exists() else ""
            raise RuntimeError(f"debootstrap failed ({proc.returncode}):\n{proc.stderr[-3000:]}\n{tail}")
        log(f"debootstrap done in {time.monotonic() - started:.0f} s")
        _prepare_rootfs(rootfs)
        log("importing the rootfs into podman")
        tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        try:
            imported = subprocess.run(["podman", "import", "--change", 'CMD ["/lib/systemd/systemd"]', "-", tag],
                                      check=False, stdin=tar.stdout, capture_output=True, text=True,
                                      env=podman_env(), timeout=900)
        finally:
            tar.stdout.close()
            tar_rc = tar.wait()
        if imported.returncode != 0 or tar_rc != 0:
            raise RuntimeError(f"podman import failed (tar {tar_rc}, podman {imported.returncode}): {imported.stderr}")
        size = podman("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip()
        log(f"built {tag} in {time.monotonic() - started:.0f} s, {int(size) / 1e6:.0f} MB")
    finally:
        _unmount_under(tmp)  # a failed debootstrap can leave /proc, /sys mounted in the rootfs
        shutil.rmtree(tmp, ignore_errors=True)


def _prepare_rootfs(rootfs: Path) -> None:
    # An empty machine-id: systemd gives each container its own at boot (from podman's container uuid) instead
    # of every host sharing the one debootstrap made.
    (rootfs / "etc" / "machine-id").write_text("")
    dbus_id = rootfs / "var" / "lib" / "dbus" / "machine-id"
    if dbus_id.exists() and not dbus_id.is_symlink():
        dbus_id.unlink()
    if not dbus_id.exists():
        dbus_id.parent.mkdir(parents=True, exist_ok=True)
        dbus_id.symlink_to("/etc/machine-id")
    for key in (rootfs / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()
    (rootfs / "etc" / "ssh" / "sshd_config.d" / "comfyinfra-test.conf").write_text(SSHD_DROPIN)
    dropin_dir = rootfs / "etc" / "systemd" / "system" / "ssh.service.d"
    dropin_dir.mkdir(parents=True, exist_ok=True)
    (dropin_dir / "host-keys.conf").write_text(SSH_KEYGEN_DROPIN)
    root_ssh = rootfs / "root" / ".ssh"
    root_ssh.mkdir(mode=0o700, exist_ok=True)
    # No hardware, no consoles, nothing to mount from fstab: units that only fail or idle in a container; and
    # apt's daily timers, which could take the dpkg lock under a deploy's apt-get.
    for unit in ("apt-daily.timer", "apt-daily-upgrade.timer", "getty@tty1.service", "console-getty.service",
                 "serial-getty@.service", "systemd-remount-fs.service", "sys-kernel-config.mount", "sys-kernel-debug.mount",
                 "sys-kernel-tracing.mount", "systemd-firstboot.service"):
        mask = rootfs / "etc" / "systemd" / "system" / unit
        if not mask.exists():
            mask.symlink_to("/dev/null")
    # Package downloads are not needed in the image.
    for deb in (rootfs / "var" / "cache" / "apt" / "archives").glob("*.deb"):
        deb.unlink()


def _unmount_under(path: Path) -> None:
    prefix = str(path.resolve()) + "/"
    with open("/proc/mounts") as mounts:
        targets = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for target in sorted(targets, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)


# --- hosts ---------------------------------------------------------------------------------------------------

@dataclass
class SystemdHost:
    name: str  # the container's name
    port: int  # its sshd, published on 127.0.0.1
    key: Path  # the client's private key (root's authorized key inside)
    known_hosts: Path  # "[127.0.0.1]:<port> <its ed25519 host key>"

    def connection_data(self) -> dict:
        """pyinfra host data, the same shape as the loopback sshd's (tests/e2e/harness.py Sshd)."""
        return ssh_connection_data(self.port, self.key, self.known_hosts)

    def exec(self, *cmd: str, check: bool = False, input: str | None = None,
             timeout: float | None = 120) -> subprocess.CompletedProcess:
        """`podman exec <name> cmd...` as root (text output captured), to inspect the host behind the deploy."""
        return podman("exec", *(["-i"] if input is not None else []), self.name, *cmd,
                      check=check, input=input, timeout=timeout)

    def ssh_command(self, command: str) -> list[str]:
        """argv for `ssh root@host command` with this host's key and known_hosts (strict checking)."""
        return ["ssh", "-i", str(self.key), "-p", str(self.port), "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", "root@127.0.0.1", command]

    def ssh(self, command: str, check: bool = False, timeout: float | None = 120) -> subprocess.CompletedProcess:
        return subprocess.run(self.ssh_command(command), capture_output=True, text=True, check=check,
                              timeout=timeout, stdin=subprocess.DEVNULL)


def _proc_start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, starttime


def _owner() -> str:
    return f"{os.getpid()}:{_proc_start_time(os.getpid())}"


def _owner_alive(owner: str) -> bool:
    pid, _, start = owner.partition(":")
    return pid.isdigit() and _proc_start_time(int(pid)) == start


def remove_stale() -> list[str]:
    """Remove containers labelled comfyinfra-test=1 whose creating process is gone (a crashed or killed run).

    The owner is the "<pid>:<start time>" label (the pid is also in the name); containers of live processes,
    other engineers' runs included, are left alone. Returns the names removed."""
    listed = podman("ps", "-a", "--filter", f"label={LABEL}", "--format", "json").stdout
    stale = []
    for container in json.loads(listed or "[]"):
        names = container.get("Names") or []
        name = names[0] if names else container["Id"]
        owner = (container.get("Labels") or {}).get(OWNER_LABEL)
        if owner is None:  # no owner label: fall back to the pid embedded in the name
            parts = name[len(NAME_PREFIX):].split("-") if name.startswith(NAME_PREFIX) else []
            alive = bool(parts) and parts[0].isdigit() and Path(f"/proc/{parts[0]}").exists()
        else:
            alive = _owner_alive(owner)
        if not alive:
            stale.append(name)
    if stale:
        log(f"removing stale containers of dead processes: {' '.join(stale)}")
        podman("rm", "-f", "-i", "-t", "0", *stale, check=False, timeout=300)
    return stale


def stop_hosts(hosts: Iterable[SystemdHost | str]) -> None:
    """Remove the hosts' containers (killed at once: they are throwaway)."""
    names = [h if isinstance(h, str) else h.name for h in hosts]
    if names:
        podman("rm", "-f", "-i", "-t", "0", *names, check=False, timeout=300)


def start_hosts(n: int, workdir: Path, volumes: Sequence[tuple[str, str]] = (),
                image: str | None = None) -> list[SystemdHost]:
    """Start n hosts (in parallel) and return them once each runs systemd and answers ssh as root.

    Keys and known_hosts live under workdir/<container name>/. `volumes` are (host path, container path)
    pairs, mounted read-only in every host. `image`: another image to boot (e.g. one committed from a
    deployed host; it must make its own ssh host keys at boot as ensure_image's does), else ensure_image().
    On any failure (or interrupt) the hosts started are removed."""
    image = image or ensure_image()
    remove_stale()
    workdir = Path(workdir)
    run_id = f"{os.getpid()}-{secrets.token_hex(3)}"
    names = [f"{NAME_PREFIX}{run_id}-{i}" for i in range(n)]
    cancel = threading.Event()
    pool = ThreadPoolExecutor(max_workers=max(1, min(n, 8)), thread_name_prefix="systemd-host")
    try:
        futures = [pool.submit(_start_one, name, f"host{i}", image, workdir, volumes, cancel)
                   for i, name in enumerate(names)]
        errors, hosts = [], []
        for future in futures:
            try:
                hosts.append(future.result())
            except Exception as exc:  # noqa: BLE001 - collected, raised below with the others
                errors.append(exc)
        if errors:
            raise RuntimeError("\n\n".join(str(e) for e in errors))
        return hosts
    except BaseException:
        cancel.set()  # the other workers give up at their next step
        stop_hosts(names)
        pool.shutdown(wait=True, cancel_futures=True)
        stop_hosts(names)  # one a worker was creating while the first removal ran
        raise
    finally:
        pool.shutdown(wait=False)


@contextlib.contextmanager
def systemd_hosts(n: int, workdir: Path, volumes: Sequence[tuple[str, str]] = (),
                  image: str | None = None) -> Iterator[list[SystemdHost]]:
    """start_hosts(n, ...) for the `with` block; the containers are removed however it exits."""
    hosts = start_hosts(n, workdir, volumes, image)
    try:
        yield hosts
    finally:
        stop_hosts(hosts)


class _Cancelled(Exception):
    pass


def _start_one(name: str, hostname: str, image: str, workdir: Path, volumes: Sequence[tuple[str, str]],
               cancel: threading.Event) -> SystemdHost:
    d = workdir / name
    d.mkdir(parents=True, exist_ok=True)
    key = d / "client_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)],
                   check=True, capture_output=True)
    mounts = [arg for host_path, path in volumes for arg in ("-v", f"{host_path}:{path}:ro")]
    for attempt in range(5):  # free_port() can race with another process taking the port
        if cancel.is_set():
            raise _Cancelled(name)
        port = free_port()
        proc = podman("run", "-d", "--name", name, "--label", LABEL, "--label", f"{OWNER_LABEL}={_owner()}",
                      "--hostname", hostname, "--systemd=always", "--cap-add", "SYS_ADMIN",
                      "-p", f"127.0.0.1:{port}:22", *mounts, image, "/lib/systemd/systemd", check=False)
        if proc.returncode == 0:
            break
        podman("rm", "-f", "-i", "-t", "0", name, check=False)
        if "address already in use" not in proc.stderr.lower() or attempt == 4:
            raise RuntimeError(f"podman run {name} failed: {proc.stderr.strip()}")
    host = SystemdHost(name, port, key, d / "known_hosts")
    installed = host.exec("sh", "-c", "install -d -o root -g root -m 700 /root/.ssh && "
                          "cat > /root/.ssh/authorized_keys && chown root:root /root/.ssh/authorized_keys && "
                          "chmod 600 /root/.ssh/authorized_keys", input=(d / "client_key.pub").read_text())
    if installed.returncode != 0:
        raise RuntimeError(f"{name}: installing authorized_keys failed: {installed.stderr.strip()}")
    _wait_until_ready(host, cancel)
    return host


def _wait_until_ready(host: SystemdHost, cancel: threading.Event | None = None,
                      timeout: float = BOOT_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    state = ssh_error = ""
    while time.monotonic() < deadline:
        if cancel is not None and cancel.is_set():
            raise _Cancelled(host.name)
        running = podman("inspect", "--format", "{{.State.Running}}", host.name, check=False).stdout.strip()
        if running != "true":
            raise RuntimeError(f"{host.name} stopped while booting\n{_diagnostics(host)}")
        state = host.exec("systemctl", "is-system-running", timeout=20).stdout.strip()
        if state in ("running", "degraded"):
            if not host.known_hosts.exists():
                pub = host.exec("cat", "/etc/ssh/ssh_host_ed25519_key.pub", timeout=20)
                if pub.returncode == 0 and pub.stdout.strip():
                    key_type, key = pub.stdout.split()[:2]
                    host.known_hosts.write_text(f"[127.0.0.1]:{host.port} {key_type} {key}\n")
            if host.known_hosts.exists():
                proc = host.ssh("true", timeout=20)
                if proc.returncode == 0:
                    return
                ssh_error = proc.stderr.strip()
        time.sleep(0.3)
    raise RuntimeError(f"{host.name} (ssh port {host.port}) not ready after {timeout:g} s: "
                       f"is-system-running={state!r}, last ssh error={ssh_error!r}\n{_diagnostics(host)}")


def _diagnostics(host: SystemdHost) -> str:
    """podman logs (empty for a systemd container unless it died early: systemd logs to its journal), the
    failed units and the journal's tail."""
    logs = podman("logs", "--tail", "40", host.name, check=False)
    failed = host.exec("systemctl", "--failed", "--no-pager", "--plain", timeout=20)
    journal = host.exec("journalctl", "-b", "--no-pager", "-n", "40", timeout=20)
    return (f"--- podman logs --tail 40 {host.name}\n{logs.stdout}{logs.stderr}"
            f"--- systemctl --failed\n{failed.stdout}{failed.stderr}"
            f"--- journalctl -b -n 40\n{journal.stdout}{journal.stderr}")
