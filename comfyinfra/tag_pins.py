"""Tags resolved to commits once per run, on the machine that runs the deploy, so every host gets the same commit.

A tag can be force-moved. Resolved by each host, a host that fetched it before stays on the old commit while a new
host gets the new one, both "at v1.0.0". Here each (repository, tag) of the inventory is asked once with
`git ls-remote` (the peeled commit of an annotated tag), and the plans pin that commit. A repository this
machine can't read (a mirror path that exists only on the hosts, no network) keeps the tag, resolved by each
host as before, with a warning saying so.
"""

from __future__ import annotations

import os
import subprocess

TIMEOUT_S = 20

Resolved = dict[tuple[str, str], str]  # (repo, tag) -> 40-hex commit


def ls_remote_tag(repo: str, tag: str, timeout_s: float = TIMEOUT_S) -> str | None:
    """The commit `tag` names in `repo` (annotated tags peeled), or None when it can't be read from here."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_NO_REPLACE_OBJECTS": "1"}
    ref = f"refs/tags/{tag}"
    try:
        out = subprocess.run(["git", "ls-remote", "--", repo, ref, ref + "^{}"], capture_output=True, text=True,
                             timeout=timeout_s, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    found = dict(reversed(line.split("\t", 1)) for line in out.stdout.splitlines() if "\t" in line)
    return found.get(ref + "^{}") or found.get(ref)


def resolve(pairs: set[tuple[str, str]], ask=ls_remote_tag) -> tuple[Resolved, list[str]]:
    """The commits of these (repo, tag) pairs, and a warning for each that stays a tag."""
    resolved, warnings = {}, []
    for repo, tag in sorted(pairs):
        commit = ask(repo, tag)
        if commit:
            resolved[(repo, tag)] = commit
        else:
            warnings.append(f"tag {tag} of {repo} could not be read from this machine: each host resolves it "
                            "itself (pin the commit to be sure every host gets the same one)")
    return resolved, warnings
