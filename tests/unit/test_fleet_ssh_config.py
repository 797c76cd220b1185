"""The ssh_config the smoke suite and the load test write resolves every inventory host as the user's own
ssh_config does (aliases, jump hosts, StrictHostKeyChecking), checked with the real `ssh -G`."""

import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from comfyinfra.fleet import FleetHost, ssh_config
from comfyinfra.spec import HostSpec

pytestmark = pytest.mark.skipif(shutil.which("ssh") is None, reason="needs OpenSSH's ssh (ssh -G)")

USER_CONFIG = """\
    Host *
        StrictHostKeyChecking yes
    Host gpu-a
        HostName 10.1.1.1
        User alice
    Host gpu-b
        HostName 10.1.1.2
        ProxyJump bastion
    Host gpu-c
        HostName 10.1.1.3
    Host bastion
        HostName 10.9.9.9
"""


def host(name: str, **data) -> FleetHost:
    return FleetHost(name, HostSpec.model_construct(), data)  # the ssh_config needs no spec


def resolved(config: str, alias: str) -> dict[str, str]:
    """What ssh itself would use for alias (`ssh -G` prints it without connecting)."""
    out = subprocess.run(["ssh", "-G", "-F", config, alias], capture_output=True, text=True, check=True,
                         stdin=subprocess.DEVNULL, timeout=30).stdout
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def write(path: Path, text: str) -> str:
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_every_host_resolves_through_the_users_config_and_its_host_key_policy_wins(tmp_path):
    user = write(tmp_path / "config", USER_CONFIG)
    hosts = [host("gpu-a", ssh_config_file=user), host("gpu-b", ssh_config_file=user),
             host("gpu-c", ssh_config_file=user, ssh_port=2222, ssh_user="ops")]
    with ssh_config(hosts) as config:
        seen = {h.name: resolved(config, h.name) for h in hosts}
        bastion = resolved(config, "bastion")  # ssh -J reads the same -F file for the jump host
    assert {name: s["hostname"] for name, s in seen.items()} == {"gpu-a": "10.1.1.1", "gpu-b": "10.1.1.2",
                                                                 "gpu-c": "10.1.1.3"}
    assert {s["stricthostkeychecking"] for s in seen.values()} == {"true"}  # the user's `yes`, not accept-new
    assert seen["gpu-a"]["user"] == "alice" and seen["gpu-b"]["proxyjump"] == "bastion"
    assert (seen["gpu-c"]["port"], seen["gpu-c"]["user"]) == ("2222", "ops")  # inventory data where the file is silent
    assert bastion["hostname"] == "10.9.9.9"


def test_without_a_policy_in_the_users_config_hosts_get_accept_new(tmp_path, monkeypatch):
    write(tmp_path / "config", "Host gpu-a\n    HostName 10.1.1.1\n")
    monkeypatch.chdir(tmp_path)  # a relative ssh_config_file is the working directory's, as pyinfra reads it
    hosts = [host("gpu-a", ssh_config_file="config"), host("gpu-b", ssh_config_file="config"),
             host("gpu-c", ssh_config_file="config", ssh_strict_host_key_checking="yes")]
    with ssh_config(hosts) as config:
        seen = {h.name: resolved(config, h.name) for h in hosts}
    assert seen["gpu-a"]["hostname"] == "10.1.1.1" and seen["gpu-b"]["hostname"] == "gpu-b"
    assert [seen[n]["stricthostkeychecking"] for n in ("gpu-a", "gpu-b", "gpu-c")] == ["accept-new", "accept-new", "true"]


def test_a_config_file_only_some_hosts_name_applies_to_those_only(tmp_path):
    fleet = write(tmp_path / "fleet", USER_CONFIG)
    other = write(tmp_path / "other config", "Host *\n    User pod\n    StrictHostKeyChecking no\n")
    hosts = [host("gpu-a", ssh_config_file=fleet), host("gpu-b", ssh_config_file=fleet),
             host("gpu-c", ssh_config_file=other)]
    with ssh_config(hosts) as config:
        seen = {h.name: resolved(config, h.name) for h in hosts}
    assert (seen["gpu-a"]["user"], seen["gpu-a"]["stricthostkeychecking"]) == ("alice", "true")
    assert seen["gpu-b"]["user"] != "pod"
    assert (seen["gpu-c"]["user"], seen["gpu-c"]["stricthostkeychecking"]) == ("pod", "false")
