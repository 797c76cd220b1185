"""pyinfra host data for a test SSH target: key auth only, its host key pinned in its own known_hosts."""

from __future__ import annotations

from pathlib import Path


def ssh_connection_data(port: int, key: Path, known_hosts: Path) -> dict:
    return {
        "ssh_hostname": "127.0.0.1",
        "ssh_port": port,
        "ssh_user": "root",
        "ssh_key": str(key),
        "ssh_known_hosts_file": str(known_hosts),
        "ssh_strict_host_key_checking": "yes",
        "ssh_look_for_keys": False,
        "ssh_allow_agent": False,
    }
