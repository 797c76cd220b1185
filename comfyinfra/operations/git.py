"""Pinned git checkouts, and the reachability check that runs before anything is installed.

pyinfra's stock `git.repo` can't pin a commit (shared/reference/pyinfra-testinfra.md §3.4): ours
clones at a commit or tag and corrects drift. Local mirrors (a path or file:// URL) are usually
owned by root or a mirror user, which git refuses to read for anyone else ("detected dubious
ownership"): every command that reads such a repository trusts exactly it (see `trusting`).
"""

from __future__ import annotations

from dataclasses import dataclass

from pyinfra import host, logger
from pyinfra.api import FactBase, operation

from comfyinfra.operations.common import fail_command, q
from comfyinfra.operations.snapshot import observe
from comfyinfra.spec import RefKind


def local_path(repo: str) -> str | None:
    """The filesystem path of a local repository (a path or a file:// URL), else None."""
    if repo.startswith("file://"):
        return repo.removeprefix("file://")
    return repo if repo.startswith("/") else None


def trusting(repo: str, command: str) -> str:
    """`command` with git trusting `repo` when it is a local repository owned by another user.

    git honours safe.directory only from its global or system configuration before 2.45 (not from
    `-c`), so the command runs with a throwaway global configuration (GIT_CONFIG_GLOBAL, git >= 2.32)
    that includes the user's own and trusts exactly this repository, bare or not, as given and
    resolved. Nothing is written to the host's configuration.
    """
    path = local_path(repo)
    if path is None:
        return command
    entries = "".join(f"\\tdirectory = {p}\\n\\tdirectory = {p}/.git\\n" for p in ("%s", "%s"))
    return (
        "(gc=$(mktemp) || exit 1; trap 'rm -f \"$gc\"' EXIT; "
        f"printf '[include]\\n\\tpath = ~/.gitconfig\\n[safe]\\n{entries}' {q(path)} {q(path)} "
        f"\"$(realpath -m {q(path)})\" \"$(realpath -m {q(path)})\" > \"$gc\"; "
        f"export GIT_CONFIG_GLOBAL=\"$gc\"; {command})"
    )


# Drift that `git status` alone doesn't show: a `git replace` ref (hidden by GIT_NO_REPLACE_OBJECTS=1 in every
# command here), files marked assume-unchanged or skip-worktree (any `git ls-files -v` tag but "H"), content
# that differs from the commit's tree while the index's stat data says clean (every tracked file hashed and
# compared with the tree), and untracked files (a module beside main.py is imported first); the nodes under
# custom_nodes/ are the nodes' own checkouts.
GIT = "env GIT_NO_REPLACE_OBJECTS=1 git"
NOT_NODES = "-- . ':(exclude)custom_nodes'"
FILES = "git ls-tree -r HEAD | grep -E '^100(644|755) blob '"
DRIFT = ("{ git for-each-ref refs/replace; git ls-files -v | grep -v '^H '; "
         f"git status --porcelain --untracked-files=all {NOT_NODES}; "
         f"[ \"$({FILES} | cut -d' ' -f3 | cut -f1)\" = \"$({FILES} | cut -f2- | git hash-object --stdin-paths)\" ] "
         "|| echo content; }")


@dataclass(frozen=True)
class CheckoutState:
    state: str  # absent | notgit | foreign (owned by another user than root) | present
    head: str = ""
    origin: str = ""
    dirty: bool = False
    target: str = ""  # the commit the ref names, when known locally ("" if not)


class GitCheckout(FactBase):
    """State of a checkout: HEAD, origin URL, local changes, and the commit `ref` resolves to locally."""

    @staticmethod
    def default() -> CheckoutState:
        return CheckoutState("absent")  # also when the service user does not exist yet (a fresh host)

    def command(self, path: str, ref: str, kind: str, repo: str = "") -> str:
        if kind == RefKind.commit.value:
            target = f"git cat-file -e {q(ref + '^{commit}')} 2>/dev/null && echo target={q(ref)}"
        elif kind == RefKind.tag.value:
            target = f"echo target=$(git rev-parse -q --verify {q('refs/tags/' + ref + '^{commit}')})"
        else:  # a branch (only with allow_branch): ask the remote, branches move
            target = trusting(repo, f"echo target=$(timeout 60 git ls-remote origin {q('refs/heads/' + ref)} | cut -f1)")
        return (
            f"if [ ! -e {q(path)} ]; then echo state=absent; "
            f"elif [ ! -e {q(path + '/.git')} ]; then echo state=notgit; "
            # root runs git here: a .git another user could write runs their hooks and fsmonitor as root
            f"elif [ \"$(stat -c %u {q(path)} {q(path + '/.git')} | sort -u)\" != \"$(id -u)\" ]; then echo state=foreign; "
            f"else cd {q(path)} && export GIT_NO_REPLACE_OBJECTS=1 && echo state=present "
            "&& echo head=$(git rev-parse -q --verify HEAD) "
            "&& echo origin=$(git config --get remote.origin.url) "
            f"&& echo dirty=$({DRIFT} | head -c1 | wc -c) "
            f"&& {{ {target} || true; }}; fi"
        )

    def process(self, output) -> CheckoutState:
        values = dict(line.split("=", 1) for line in output if "=" in line)
        return CheckoutState(
            state=values.get("state", "absent"),
            head=values.get("head", ""),
            origin=values.get("origin", ""),
            dirty=values.get("dirty", "0").strip() not in ("", "0"),
            target=values.get("target", ""),
        )


def pin_args(pin) -> dict:
    """pinned_checkout's repo/ref/kind arguments from a plan.GitPin."""
    return {"repo": pin.repo, "ref": pin.ref, "kind": pin.kind.value}


def _checkout_target(ref: str, kind: str) -> str:
    return {"commit": ref, "tag": f"refs/tags/{ref}"}.get(kind, f"origin/{ref}")


@operation()
def pinned_checkout(repo: str, dest: str, ref: str, kind: str):
    """
    Keep a git checkout at a pinned commit or tag; correct and report any drift.

    + repo: URL or path of the repository (origin is re-pointed when it changes)
    + dest: checkout directory
    + ref: 40-hex commit, tag name, or branch (when the spec allowed it)
    + kind: "commit", "tag" or "branch" (comfyinfra.spec.classify_ref)

    Drift means another HEAD, modified tracked files, untracked files (outside custom_nodes/), replace refs or
    files hidden from `git status` (assume-unchanged, skip-worktree): all corrected. A checkout another user owns
    is cloned again (root must not run git in a repository someone else can write). Reachability is checked
    before anything is installed (`sources_reachable`).

    **Example:**

    .. code:: python

        pinned_checkout(name="ComfyUI @ v0.3.64", repo="https://github.com/comfyanonymous/ComfyUI.git",
                        dest="/opt/comfyui/ComfyUI", ref="v0.3.64", kind="tag")
    """
    current = observe(GitCheckout, path=dest, ref=ref, kind=kind, repo=repo)
    target = _checkout_target(ref, kind)
    git = f"{GIT} -C {q(dest)}"
    fetch_commit = trusting(repo, f"{{ {git} cat-file -e {q(ref + '^{commit}')} 2>/dev/null || {git} fetch -q origin {q(ref)}; }}")
    if current.state == "notgit":
        yield fail_command(f"{dest} exists but is not a git checkout; move it away and deploy again")
        return
    if current.state == "foreign":
        logger.warning(f"{host.print_prefix}{dest} is not owned by root: cloned again")
        yield f"rm -rf {q(dest)}"
    if current.state in ("absent", "foreign"):
        yield trusting(repo, f"{GIT} clone -q --no-checkout {q(repo)} {q(dest)}")
        if kind == "commit":
            yield fetch_commit
        yield f"{git} checkout -q --detach {q(target)}"
        return

    if current.origin != repo:
        yield f"{git} remote set-url origin {q(repo)}"
    if current.target and current.head == current.target and not current.dirty:
        if current.origin == repo:
            host.noop(f"{dest} already at {ref[:12] if kind == 'commit' else ref}")
        return
    was = f"{current.head[:12] or 'no commit'}{' with local changes' if current.dirty else ''}"
    logger.warning(f"{host.print_prefix}{dest}: drift corrected: was at {was}, now {ref}")
    if not current.target:  # --force: a tag moved upstream replaces the local one (git refuses to clobber it)
        yield trusting(repo, f"{git} fetch -q --force --tags origin")
        if kind == "commit":
            yield fetch_commit
    if current.dirty:
        # one marking mode per update-index run: the last flag before the paths wins
        yield (f"{git} for-each-ref --format='delete %(refname)' refs/replace | {git} update-ref --stdin && "
               f"{git} ls-files -z | xargs -0 -r {git} update-index --no-assume-unchanged -- && "
               f"{git} ls-files -z | xargs -0 -r {git} update-index --no-skip-worktree --")
    yield f"{git} checkout -q -f --detach {q(target)}"
    if current.dirty:
        yield f"{git} reset -q --hard && {git} clean -q -f -d {NOT_NODES}"


class GitSourceReachable(FactBase):
    """'present' when dest is already a checkout, 'no-git' before git is installed, else 'ok' or the
    error git printed, reading the repository as root, who clones it."""

    @staticmethod
    def default() -> str:
        return ""

    def command(self, repo: str, dest: str) -> str:
        ls_remote = trusting(repo, f"timeout 60 {GIT} ls-remote -q {q(repo)}")
        return (
            f"if [ -e {q(dest + '/.git')} ]; then echo present; "
            "elif ! command -v git >/dev/null 2>&1; then echo no-git; "
            f"else err=$( {{ {ls_remote}; }} 2>&1 >/dev/null) && echo ok || echo \"$err\" | tail -n 3; fi"
        )

    def process(self, output) -> str:
        return " ".join(line.strip() for line in output if line.strip())


@operation()
def sources_reachable(sources: tuple[tuple[str, str, str], ...]):
    """
    Fail fast, before anything is installed, when a repository to clone can't be reached from the host.

    + sources: (repo, dest, hint) per checkout; hint names the setting that overrides the repo
    """
    for repo, dest, hint in sources:
        status = observe(GitSourceReachable, repo=repo, dest=dest)
        if status not in ("present", "no-git", "ok"):
            yield fail_command(f"cannot reach {repo} from this host ({status or 'no answer'}). {hint}")
            return
    host.noop("every source is checked out or reachable")
