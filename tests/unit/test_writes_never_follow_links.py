"""Root's writes replace a link planted at the destination, never write through it (issue 10, finding 1: pyinfra's
files.put opened the destination itself and chowned it after, so a link there made root overwrite, and give to
the service user, whatever it pointed at). Run for real with pyinfra's @local connector."""

import os

import pytest
from pyinfra.api import Config, Inventory, State
from pyinfra.api.connect import connect_all
from pyinfra.api.operation import add_op
from pyinfra.api.operations import run_ops

from comfyinfra.operations.service import secret_file
from comfyinfra.operations.system import managed_file

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="owners and modes as root")


def run_local(op, **kwargs):
    inventory = Inventory((["@local"], {}))
    state = State(inventory=inventory, config=Config())
    connect_all(state)
    add_op(state, op, **kwargs)
    run_ops(state)


@pytest.fixture
def canary(tmp_path):
    path = tmp_path / "root-only"
    path.write_text("root's secret\n")
    path.chmod(0o600)
    return path


def unchanged(canary):
    info = canary.stat()
    return canary.read_text() == "root's secret\n" and (info.st_mode & 0o777, info.st_uid) == (0o600, 0)


def test_a_managed_file_replaces_a_planted_link(tmp_path, canary):
    dest = tmp_path / "constraints.txt"
    dest.symlink_to(canary)
    run_local(managed_file, dest=str(dest), content=b"torch==2.13.0+cpu\n", user="root", group="nogroup", mode="640")
    assert unchanged(canary)
    assert not dest.is_symlink() and dest.read_text() == "torch==2.13.0+cpu\n"
    assert (dest.stat().st_mode & 0o777, dest.stat().st_uid) == (0o640, 0)


def test_the_secrets_file_replaces_a_planted_link_at_its_temporary_name(tmp_path, canary):
    dest = tmp_path / "secrets.env"
    (tmp_path / "secrets.env.tmp").symlink_to(canary)
    run_local(secret_file, path=str(dest), group="nogroup", _stdin="HF_TOKEN='x'\n")
    assert unchanged(canary)
    assert dest.read_text() == "HF_TOKEN='x'\n" and dest.stat().st_mode & 0o777 == 0o640
