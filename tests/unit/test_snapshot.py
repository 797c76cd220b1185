"""The snapshot: several facts in one shell command, each section processed by its own fact."""

import subprocess

from pyinfra.api import FactBase

from comfyinfra.operations.snapshot import Batch, probe
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
    batch = Batch()
    out = subprocess.run(["sh", "-c", batch.command(tuple(probes))], capture_output=True, text=True, check=True).stdout
    sections, status = batch.process(out.splitlines())
    values = []
    for index, (cls, _, _) in enumerate(probes):
        values.append(cls().process(sections[index]) if status[index] and sections[index] else cls().default())
    return values


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
