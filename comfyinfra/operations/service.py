"""The running service: supervisord and its programs, the secrets env file, and the health wait
that ends every deploy."""

from __future__ import annotations

import json

from pyinfra import host
from pyinfra.api import FactBase, operation

from comfyinfra.operations.common import SYSTEM_PATH, changed, fail_command, q
from comfyinfra.operations.snapshot import observe


class SystemStats(FactBase):
    """ComfyUI's /system_stats as a dict (curl on the host, so loopback-bound services count); None if it doesn't answer."""

    def command(self, url: str) -> str:
        return f"curl -s -f -m 5 {q(url)} || true"

    def process(self, output):
        try:
            return json.loads("".join(output))
        except ValueError:
            return None


def device_type(stats) -> str | None:
    """devices[0].type of a /system_stats answer ("cuda", "cpu"); None when the answer has no such field,
    whatever its shape (not ComfyUI, or a ComfyUI that misbehaves): the wait then fails this host only."""
    try:
        device = stats["devices"][0]["type"]
    except (TypeError, KeyError, IndexError):
        return None
    return device if isinstance(device, str) else None


@operation()
def wait_healthy(url: str, timeout_s: int, log_command: str, expect_device: str, what: str = "ComfyUI",
                 after: tuple = ()):
    """
    Wait until `url` (/system_stats) answers, then check ComfyUI runs on the expected device.

    + url: health endpoint
    + timeout_s: give up after this many seconds, showing the service's last log lines
    + log_command: prints the service's last 30 log lines
    + expect_device: "cuda" on GPU hosts, "cpu" otherwise (devices[0].type)
    + after: the operations that (re)start the service: when one of them changes, the wait always
      runs (a dry run predicts it; the live answer right after a restart may still be the old process)
    """
    if not changed(*after):
        stats = observe(SystemStats, url=url)
        if stats is not None:
            got = device_type(stats)
            if got == expect_device:
                host.noop(f"{what} healthy at {url} on {got}")
            elif got is None:
                yield fail_command(f"{url} answered without devices[0].type, which ComfyUI's /system_stats has: "
                                   "is another program on this port?")
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
    yield f"curl -s -f -m 5 {q(url)} | python3 -c {q(device_check(url, expect_device, what))}"


def device_check(url: str, expect_device: str, what: str) -> str:
    """Python (run on the host, /system_stats on stdin) that fails with a message unless devices[0].type is
    `expect_device`; an answer of another shape fails the same way, not with a traceback."""
    wrong = (f"comfyinfra: {what} runs on %r, expected {expect_device!r}: check the torch build, the driver "
             "and CUDA_VISIBLE_DEVICES")
    shapeless = f"comfyinfra: {url} answered without devices[0].type, which ComfyUI's /system_stats has"
    return ("import json,sys\n"
            "try:\n    t=json.load(sys.stdin)['devices'][0]['type']\n"
            f"except Exception:\n    sys.exit({shapeless!r})\n"
            f"sys.exit(0 if t == {expect_device!r} else {wrong!r} % (t,))")


# --- secrets file -----------------------------------------------------------------------------


class SameAsStdin(FactBase):
    """Whether the file already holds exactly what the operation sends on stdin (compared on the host,
    so no secret, nor a hash of one, comes back)."""

    @staticmethod
    def default() -> bool:
        return False

    def command(self, path: str) -> str:
        return f"cmp -s - {q(path)} && echo same || echo different"

    def process(self, output) -> bool:
        return "".join(output).strip() == "same"


@operation()
def secret_file(path: str, group: str):
    """
    Write the operation's stdin to `path`, root's, mode 0640 for `group`, unless it already holds exactly that.

    + path: destination (e.g. the service's env file), in a directory only root can write
    + group: the group that may read it (the service's: supervisord's program sources it as the service user)

    Pass the content as the operation's `_stdin`: it never appears in argv, logs or --diff. Written beside
    the destination and renamed over it: no link is followed, no reader sees half a file.
    """
    if host.get_fact(SameAsStdin, path=path):
        host.noop(f"{path} up to date")
        return
    tmp = q(path + ".tmp")
    yield (f"umask 077 && rm -f {tmp} && cat > {tmp} && chown -h root:{q(group)} {tmp} && chmod 640 {tmp} "
           f"&& mv -fT {tmp} {q(path)}")


# --- supervisord (hosts without systemd) ----------------------------------------------------


# supervisord's programs inherit its environment: started from the deploy's SSH session, ComfyUI carried
# SSH_CLIENT, SSH_CONNECTION and whatever else the session had. It gets exactly this (and its program's
# environment= lines) instead.
SUPERVISORD_ENV = (("PATH", SYSTEM_PATH), ("LANG", "C.UTF-8"))


def clean_supervisord(conf: str) -> str:
    """The command that starts supervisord with SUPERVISORD_ENV only."""
    return f"env -i {' '.join(f'{key}={q(value)}' for key, value in SUPERVISORD_ENV)} supervisord -c {q(conf)}"


def from_ssh_session(pid: str) -> str:
    """A test: the process's environment holds an SSH session's variables (it was started from one)."""
    return f"tr '\\0' '\\n' < /proc/{pid}/environ 2>/dev/null | grep -q '^SSH_'"


class SupervisorStatus(FactBase):
    """Whether supervisord answers on `conf`'s socket, whether it was started from an SSH session
    (environment=ssh), and the state of every program (RUNNING, STOPPED, ...)."""

    @staticmethod
    def default() -> dict[str, str]:
        return {}

    def command(self, conf: str) -> str:
        ctl = f"supervisorctl -c {q(conf)}"
        return (f"if {ctl} pid >/dev/null 2>&1; then echo supervisord=up; "
                f"{from_ssh_session('$(' + ctl + ' pid)')} && echo environment=ssh; {ctl} status 2>/dev/null "
                "| awk '{print $1 \"=\" $2}'; else echo supervisord=down; fi")

    def process(self, output) -> dict[str, str]:
        return dict(line.strip().split("=", 1) for line in output if "=" in line)


@operation()
def supervisord_running(conf: str):
    """
    Start supervisord when it is not running (containers have no init to start it), with a clean, declared
    environment (SUPERVISORD_ENV); one started from an SSH session (by hand, by the package's install, by an
    older comfyinfra) is shut down and started so.

    + conf: supervisord's main config file
    """
    status = observe(SupervisorStatus, conf=conf)
    if status.get("supervisord") == "up" and status.get("environment") != "ssh":
        host.noop("supervisord already running")
        return
    ctl = f"supervisorctl -c {q(conf)}"
    yield (  # safe when it started meanwhile (installing the package starts it on some hosts, from this session)
        f"if pid=$({ctl} pid 2>/dev/null) && {from_ssh_session('$pid')}; then {ctl} shutdown >/dev/null; i=0; "
        "while kill -0 \"$pid\" 2>/dev/null && ! grep -q '^State:.*zombie' /proc/\"$pid\"/status 2>/dev/null; do "
        "i=$((i+1)); "
        "[ $i -gt 60 ] && { echo 'comfyinfra: supervisord did not stop' >&2; exit 1; }; sleep 1; done; fi; "
        f"{ctl} pid >/dev/null 2>&1 || {clean_supervisord(conf)} && i=0; until {ctl} pid >/dev/null 2>&1; do "
        "i=$((i+1)); [ $i -gt 30 ] && { echo 'comfyinfra: supervisord did not come up' >&2; exit 1; }; sleep 1; done"
    )


@operation()
def supervisor_programs_running(conf: str, programs: tuple[str, ...], start_command: str | None = None,
                                after: tuple = ()):
    """
    Start supervisord programs unless they are RUNNING or STARTING (e.g. stopped by hand).

    + conf: supervisord's main config file
    + programs: names from their [program:x] sections
    + start_command: how to start them (default: supervisorctl start), e.g. wrapped to show logs on failure
    + after: operations that (re)start them anyway (a reload or restart): when one changes, nothing to do
    """
    if changed(*after):
        host.noop(f"{', '.join(programs)} (re)started by this deploy")
        return
    status = observe(SupervisorStatus, conf=conf)
    down = [p for p in programs if status.get(p) not in ("RUNNING", "STARTING")]
    if not down:
        host.noop(f"{', '.join(programs)} running")
        return
    ctl = f"supervisorctl -c {q(conf)}"
    yield start_command or " && ".join(  # safe if one started meanwhile (supervisord itself started by this run)
        f"{{ {ctl} status {q(p)} | grep -qE 'RUNNING|STARTING' || {ctl} start {q(p)}; }}" for p in down)
