"""One round trip per host for everything a deploy compares against.

pyinfra asks each fact with its own SSH command: a no-op redeploy of a ComfyUI host asked about 60,
and each costs a round trip plus the remote login shell's start-up (bench/noop_redeploy.py). Here the
facts a deploy will need are declared up front (`expect`, from each role's `probes(plan)`), run as
one command, and each operation reads its value with `observe`, which falls back to asking pyinfra
when a fact was not declared. The snapshot is the state before this run: what `--dry` shows and what
the run then decides on; an operation whose earlier sibling changes what it reads watches that
sibling (`after=`) or issues a command that is safe either way.
"""

from __future__ import annotations

from typing import Any

from pyinfra import host, logger
from pyinfra.api import FactBase

from comfyinfra.facts import UnreadableFact
from comfyinfra.operations.common import as_user

MARK = "@@comfyinfra-fact"

# (fact class, kwargs as sorted items, user to run it as or None for the SSH user)
Probe = tuple[type[FactBase], tuple[tuple[str, Any], ...], "str | None"]


def probe(cls: type[FactBase], run_as: str | None = None, **kwargs) -> Probe:
    """A fact to ask with these kwargs, as `run_as` (None: the SSH user, i.e. root or sudo)."""
    return (cls, tuple(sorted(kwargs.items())), run_as)


class Batch(FactBase):
    """Several facts in one command: each runs in its own subshell (as its user), delimited by markers;
    each section is processed by its fact, or is its default() when it failed or printed nothing."""

    def command(self, probes: tuple[Probe, ...]) -> str:
        parts = []
        for index, (cls, kwargs, user) in enumerate(probes):
            command = cls().command(**dict(kwargs))
            if not isinstance(command, str):  # pyinfra's own facts build StringCommands
                command = command.get_raw_value()
            if user:
                command = as_user(user, command)
            # the echo ends output that has no final newline (curl's JSON), so the marker gets its own line
            parts.append(f"echo '{MARK} {index}'; (\n{command}\n) 2>/dev/null; rc=$?; echo; echo \"{MARK} rc=$rc\"")
        return "\n".join(parts)

    def process(self, output) -> list:
        sections: list[list[str]] = []
        status: list[bool] = []
        for line in output:
            if line.startswith(f"{MARK} rc="):
                status.append(line.strip() == f"{MARK} rc=0")
                if sections and sections[-1] and not sections[-1][-1].strip():
                    sections[-1].pop()  # the newline the command adds after each section
            elif line.startswith(f"{MARK} "):
                sections.append([])
            elif sections:
                sections[-1].append(line)
        return [sections, status]


def merge(probes: tuple[Probe, ...]) -> tuple[Probe, ...]:
    """The probes the batch runs: a fact that can answer for many arguments at once (its `many` class, e.g.
    PathState for every path) is asked once per user, with every argument set of its probes as `keys`."""
    single = tuple(p for p in probes if getattr(p[0], "many", None) is None)
    grouped: dict[tuple, list] = {}
    for cls, kwargs, user in probes:
        if getattr(cls, "many", None) is not None:
            grouped.setdefault((cls.many, user), []).append(kwargs)
    return single + tuple((many, (("keys", tuple(dict.fromkeys(keys))),), user) for (many, user), keys in grouped.items())


def processed(fact: FactBase, lines: list[str]):
    """The fact's value from its output; output its parser can't read stops this host only (UnreadableFact,
    refused by deploy.py), where the exception itself would have aborted the run for every host."""
    try:
        return fact.process(lines)
    except UnreadableFact:
        raise
    except Exception as error:
        raise UnreadableFact(f"could not read this host's answer to {type(fact).__name__}: "
                             f"{type(error).__name__}: {error}") from error


def values(probes: tuple[Probe, ...], batch: tuple[Probe, ...], sections: list, status: list) -> list:
    """Each probe's value from the batch's output: processed by its fact, its default() when it failed."""
    answers = {}
    for index, (cls, _kwargs, _user) in enumerate(batch):
        fact = cls()
        lines = sections[index] if index < len(sections) else []
        ok = index < len(status) and status[index]
        answers[batch[index]] = processed(fact, lines) if ok and lines else fact.default()
    found = []
    for cls, kwargs, user in probes:
        many = getattr(cls, "many", None)
        if many is None:
            found.append(answers[(cls, kwargs, user)])
        else:
            merged = next(answer for (c, _, u), answer in answers.items() if c is many and u == user)
            found.append(merged[kwargs] if kwargs in merged else cls().default())
    return found


def ask(*probes: Probe) -> list:
    """The values of these facts from this host, in one round trip."""
    batch = merge(probes)
    # As the SSH user (root, or sudo where configured), whatever operation asks first: each probe names its user.
    sections, status = host.get_fact(Batch, probes=batch, _su_user=None, _stdin=None) or ([], [])
    return values(probes, batch, sections, status)


_EXPECTED: dict[str, tuple[Probe, ...]] = {}
_SNAPSHOTS: dict[str, dict] = {}


def expect(probes: list[Probe]) -> None:
    """Declare the facts this host's operations will observe, and ask them now, together: an answer that
    can't be read (UnreadableFact) stops this host here, before any of its operations exists."""
    expected = _EXPECTED[host.name] = tuple(dict.fromkeys(probes))
    _SNAPSHOTS[host.name] = {(c, k): v for (c, k, _), v in zip(expected, ask(*expected))}


def observe(cls: type[FactBase], **kwargs):
    """A fact's value for this host: from the host's snapshot when it was declared, else asked now."""
    key = (cls, tuple(sorted(kwargs.items())))
    expected = _EXPECTED.get(host.name, ())
    snapshot = _SNAPSHOTS.get(host.name)
    if snapshot is None and expected:
        snapshot = _SNAPSHOTS[host.name] = {(c, k): v for (c, k, _), v in zip(expected, ask(*expected))}
    if snapshot is not None and key in snapshot:
        return snapshot[key]
    logger.debug(f"{host.print_prefix}fact {cls.__name__} {kwargs} not in the snapshot: asked on its own")
    return host.get_fact(cls, **kwargs)
