"""The snapshot: several facts in one shell command, each section processed by its own fact."""

import subprocess

from pyinfra.api import FactBase

from comfyinfra.operations.snapshot import Batch, merge, probe, values
from comfyinfra.operations.system import PathInfo, PathState


class NoNewline(FactBase):
    def command(self, text: str) -> str:
        return f"printf '%s' '{text}'"

    def process(self, output):
        return "".join(output)


class Fails(FactBase):
    @staticmethod
    def default():
        return "default"

    def command(self) -> str:
        return "echo partial; exit 3"

    def process(self, output):
        return "processed"


def run_batch(*probes):
    """What snapshot.ask does, on this machine instead of over SSH."""
    batch = merge(tuple(probes))
    out = subprocess.run(["sh", "-c", Batch().command(batch)], capture_output=True, text=True, check=True).stdout
    return values(tuple(probes), batch, *Batch().process(out.splitlines()))


def alone(probe_):
    cls, kwargs, _ = probe_
    out = subprocess.run(["sh", "-c", cls().command(**dict(kwargs))], capture_output=True, text=True).stdout
    lines = out.splitlines()
    return cls().process(lines) if lines else cls().default()


def test_each_fact_gets_its_own_output_and_a_failure_its_default(tmp_path):
    (tmp_path / "f").write_text("x")
    values = run_batch(probe(NoNewline, text='{"a": 1}'), probe(Fails), probe(PathState, path=str(tmp_path / "f")),
                       probe(PathState, path=str(tmp_path / "absent")), probe(NoNewline, text="last"))
    assert values[0] == '{"a": 1}'  # output without a final newline keeps the next marker on its own line
    assert values[1] == "default"
    assert isinstance(values[2], PathInfo) and values[2].type == "file" and len(values[2].sha256) == 64
    assert values[3] is None
    assert values[4] == "last"


def test_probe_kwargs_are_order_independent():
    assert probe(PathState, path="/a") == probe(PathState, path="/a")
    assert probe(NoNewline, run_as="comfy", text="x")[2] == "comfy"


def test_many_paths_in_one_stat_give_what_each_path_alone_gives(tmp_path):
    import os

    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").write_text("")
    (tmp_path / "with space").write_text("y")
    (tmp_path / "dir").mkdir(mode=0o750)
    (tmp_path / "link").symlink_to(tmp_path / "file")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    os.mkfifo(tmp_path / "fifo")
    os.chmod(tmp_path / "file", 0o600)
    names = ["file", "empty", "with space", "dir", "link", "dangling", "fifo", "absent"]
    probes = [probe(PathState, path=str(tmp_path / n)) for n in names] + [probe(NoNewline, text="between")]
    batch = merge(tuple(probes))
    assert len(batch) == 2  # every path in one section
    got = run_batch(*probes)
    assert got[:-1] == [alone(p) for p in probes[:-1]]
    assert got[-1] == "between"
    assert [g.type if g else None for g in got[:-1]] == ["file", "file", "file", "directory", "link", "link", "other", None]
    assert got[0].mode == "600" and len(got[0].sha256) == 64 and got[4].sha256 == ""


def test_paths_asked_as_different_users_stay_apart():
    batch = merge((probe(PathState, path="/a"), probe(PathState, run_as="comfy", path="/b"), probe(PathState, path="/c")))
    assert {user: len(dict(kwargs)["keys"]) for _, kwargs, user in batch} == {None: 2, "comfy": 1}
