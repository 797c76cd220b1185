"""Drift that `git status` alone hides, found by the GitCheckout fact and undone by pinned_checkout, on real
repositories: assume-unchanged and skip-worktree files, `git replace`, untracked modules, a checkout another user
owns (root must not run git in it: its hooks and config would run as root)."""

import os
import shutil
import subprocess

import pytest

from comfyinfra.operations.git import GitCheckout, pinned_checkout
from tests.unit.test_operations import checkout_fact, op_commands, run_op

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="ownership checks need root")


def git(*args, cwd):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def checkout(tmp_path):
    origin = tmp_path / "origin"
    origin.mkdir()
    git("init", "-q", "-b", "main", cwd=origin)
    git("config", "user.email", "t@example.invalid", cwd=origin)
    git("config", "user.name", "t", cwd=origin)
    (origin / "main.py").write_text("print('pinned')\n")
    (origin / "custom_nodes").mkdir()
    (origin / "custom_nodes" / "example_node.py.example").write_text("")
    git("add", "-A", cwd=origin)
    git("commit", "-q", "-m", "pin", cwd=origin)
    work = tmp_path / "ComfyUI"
    git("clone", "-q", str(origin), str(work), cwd=tmp_path)
    return work, git("rev-parse", "HEAD", cwd=work)


def state(work, commit):
    command = GitCheckout().command(path=str(work), ref=commit, kind="commit")
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True).stdout.splitlines()
    return GitCheckout().process(out)


def correct(work, commit, found):
    """Run the commands pinned_checkout plans for what the fact found."""
    fact = checkout_fact(state=found.state, head=found.head, origin=found.origin, dirty=int(found.dirty),
                         target=found.target)
    origin = str(work.parent / "origin")
    executed, *_ = run_op(pinned_checkout, fact, repo=origin, dest=str(work), ref=commit, kind="commit")
    for command in op_commands(executed):
        subprocess.run(["sh", "-c", command], check=True, capture_output=True, text=True)


def tamper_assume_unchanged(work):
    git("update-index", "--assume-unchanged", "main.py", cwd=work)
    (work / "main.py").write_text("print('owned')\n")


def tamper_skip_worktree(work):
    git("update-index", "--skip-worktree", "main.py", cwd=work)
    (work / "main.py").write_text("print('owned')\n")


def tamper_replace(work):
    """The pinned commit replaced by another one: HEAD still names the pin, `git status` sees nothing."""
    git("config", "user.email", "t@example.invalid", cwd=work)
    git("config", "user.name", "t", cwd=work)
    pin = git("rev-parse", "HEAD", cwd=work)
    (work / "main.py").write_text("print('owned')\n")
    git("commit", "-q", "-am", "evil", cwd=work)
    evil = git("rev-parse", "HEAD", cwd=work)
    git("replace", pin, evil, cwd=work)
    git("checkout", "-q", "-f", "--detach", pin, cwd=work)
    assert git("rev-parse", "HEAD", cwd=work) == pin and (work / "main.py").read_text() == "print('owned')\n"


def tamper_untracked_module(work):
    (work / "yaml.py").write_text("import os\n")  # imported before the venv's PyYAML


TAMPERINGS = [tamper_assume_unchanged, tamper_skip_worktree, tamper_replace, tamper_untracked_module]


def test_a_clean_checkout_is_clean_and_nodes_are_not_drift(checkout):
    work, commit = checkout
    (work / "custom_nodes" / "demo").mkdir()
    (work / "custom_nodes" / "demo" / "__init__.py").write_text("")
    found = state(work, commit)
    assert (found.state, found.head, found.dirty, found.target) == ("present", commit, False, commit)


@pytest.mark.parametrize("tamper", TAMPERINGS, ids=[t.__name__ for t in TAMPERINGS])
def test_hidden_drift_is_found_and_undone(checkout, tamper):
    work, commit = checkout
    tamper(work)
    assert subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=work, capture_output=True,
                          text=True).stdout == ""  # what the fact relied on before: nothing to see
    found = state(work, commit)
    assert found.dirty, found
    correct(work, commit, found)
    assert (work / "main.py").read_text() == "print('pinned')\n"
    assert not (work / "yaml.py").exists()
    assert not state(work, commit).dirty


def test_a_checkout_another_user_owns_is_not_entered_but_cloned_again(checkout, tmp_path):
    work, commit = checkout
    hook = work / ".git" / "hooks" / "post-checkout"
    canary = tmp_path / "hook-ran"
    hook.write_text(f"#!/bin/sh\ntouch {canary}\n")
    hook.chmod(0o755)
    shutil.chown(work, "nobody")
    found = state(work, commit)
    assert found.state == "foreign"
    correct(work, commit, found)
    assert not canary.exists()
    assert os.stat(work).st_uid == 0 and state(work, commit).state == "present"
    assert (work / "main.py").read_text() == "print('pinned')\n"
