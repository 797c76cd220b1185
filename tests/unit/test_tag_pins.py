"""Tags resolved once per run on the deploying machine: a force-moved tag can't leave one host on the old commit
and give a new host the new one, both "at v1.0.0"."""

import subprocess

from comfyinfra.operations.git import GitCheckout
from comfyinfra.plan import make_plan, pin, tagged_refs
from comfyinfra.spec import RefKind
from comfyinfra.tag_pins import ls_remote_tag, resolve
from tests.unit.test_checkout_drift import correct, git, state
from tests.unit.test_plan import DETECTED, X86_SYSTEMD, spec


def make_origin(tmp_path):
    origin = tmp_path / "origin"
    origin.mkdir()
    git("init", "-q", "-b", "main", cwd=origin)
    git("config", "user.email", "t@example.invalid", cwd=origin)
    git("config", "user.name", "t", cwd=origin)
    (origin / "main.py").write_text("print('one')\n")
    git("add", "-A", cwd=origin)
    git("commit", "-q", "-m", "one", cwd=origin)
    git("tag", "-a", "v1.0.0", "-m", "release", cwd=origin)  # annotated: ls-remote must peel it
    git("tag", "light", cwd=origin)
    return origin, git("rev-parse", "HEAD", cwd=origin)


def test_annotated_and_lightweight_tags_resolve_to_their_commit(tmp_path):
    origin, first = make_origin(tmp_path)
    assert ls_remote_tag(str(origin), "v1.0.0") == first
    assert ls_remote_tag(str(origin), "light") == first
    assert ls_remote_tag(str(origin), "v9") is None
    assert ls_remote_tag(str(tmp_path / "nowhere"), "v1.0.0") is None


def test_an_unreadable_repository_keeps_its_tag_with_a_warning(tmp_path):
    origin, first = make_origin(tmp_path)
    resolved, warnings = resolve({(str(origin), "v1.0.0"), ("/srv/mirror/only-on-hosts.git", "v2")})
    assert resolved == {(str(origin), "v1.0.0"): first}
    assert len(warnings) == 1 and "only-on-hosts.git" in warnings[0] and "each host resolves it" in warnings[0]


def test_a_resolved_tag_pins_the_commit_and_keeps_the_tag_for_people():
    commit = "b" * 40
    resolved = pin("https://example.invalid/r.git", "v0.3.64", {("https://example.invalid/r.git", "v0.3.64"): commit})
    assert (resolved.kind, resolved.ref, resolved.label) == (RefKind.commit, commit, f"v0.3.64 ({commit[:12]})")
    assert pin("https://example.invalid/r.git", "v0.3.64").kind is RefKind.tag  # not resolved: the host resolves it
    repo = "https://github.com/comfyanonymous/ComfyUI.git"
    host = spec(comfyui_ref="v0.3.64")
    assert (repo, "v0.3.64") in tagged_refs(host)
    plan = make_plan(host, X86_SYSTEMD, DETECTED, tags={(repo, "v0.3.64"): commit})
    assert plan.comfyui.ref == commit and plan.comfyui.tag == "v0.3.64"


def test_a_force_moved_tag_moves_the_host_that_had_the_old_one(tmp_path):
    origin, first = make_origin(tmp_path)
    old_host = tmp_path / "ComfyUI"
    git("clone", "-q", "--branch", "v1.0.0", str(origin), str(old_host), cwd=tmp_path)
    (origin / "main.py").write_text("print('two')\n")
    git("commit", "-q", "-am", "two", cwd=origin)
    git("tag", "-f", "-a", "v1.0.0", "-m", "moved", cwd=origin)
    second = git("rev-parse", "HEAD", cwd=origin)

    # what the host alone would decide: its own refs/tags/v1.0.0 is the old commit, so "already at v1.0.0"
    alone = GitCheckout().process(subprocess.run(
        ["sh", "-c", GitCheckout().command(path=str(old_host), ref="v1.0.0", kind="tag")],
        capture_output=True, text=True).stdout.splitlines())
    assert alone.head == alone.target == first

    resolved, _ = resolve({(str(origin), "v1.0.0")})
    pinned = pin(str(origin), "v1.0.0", resolved)
    assert pinned.ref == second
    found = state(old_host, pinned.ref)
    assert found.head == first and found.target != found.head
    correct(old_host, pinned.ref, found)
    assert git("rev-parse", "HEAD", cwd=old_host) == second
