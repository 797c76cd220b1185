"""comfyinfra pip guard: runs ON the ComfyUI host (stdlib only, Python >= 3.8), as root, around pip.

Sent inline by comfyinfra.operations.pip (`python -I -S -c <this file> ...`: -S so that no .pth
file a package dropped into the venv runs here) only in a run that installs something:

    check-requirements --owner LABEL --opt-in FIELD FILE...
        before pip: refuse requirement files with pip option lines (--index-url, --find-links, -e,
        -r/-c includes, ...), URL, path or direct-reference requirements. Such lines fetch packages
        from sources outside pip_sources, which is how a node's requirement replaced torch's files.
        Missing files are skipped (a node without requirements.txt).
    verify-records --venv VENV NAME==VERSION...
        after pip: every file of these distributions still matches the sha256 in its dist-info/RECORD,
        and no other installed distribution lists one of their files (pip lets a later package
        overwrite another's files silently, and `pip show` still reports the pinned version).

Both print what is wrong as sentences starting with 'comfyinfra:' on stderr and exit 1.
"""

import argparse
import base64
import csv
import glob
import hashlib
import os
import re
import sys
from collections import namedtuple

# --- requirement files ---------------------------------------------------------------------------

Refusal = namedtuple("Refusal", "line_number line reason")

# pip's own preprocessing (pip/_internal/req/req_file.py): comments start a line or follow whitespace.
COMMENT = re.compile(r"(^|\s+)#.*$")
NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
SPECIFIER = r"(?:~=|===|==|!=|<=|>=|<|>)\s*[A-Za-z0-9.*+!_-]+"
# What stays allowed: name[extras] with version specifiers (PEP 508 without the `@ url` form); markers follow ';'.
PLAIN_REQUIREMENT = re.compile(
    rf"{NAME}\s*(?:\[\s*(?:{NAME}(?:\s*,\s*{NAME})*)?\s*\])?\s*"
    rf"(?:\(\s*{SPECIFIER}(?:\s*,\s*{SPECIFIER})*\s*\)|{SPECIFIER}(?:\s*,\s*{SPECIFIER})*)?"
)
# The one per-requirement option kept: it only narrows what pip accepts.
HASH_OPTION = re.compile(r"--hash=[a-z0-9]+:[0-9a-fA-F]+")
# pip installs a bare name with one of these endings from a local file (pip's ARCHIVE_EXTENSIONS).
ARCHIVE = re.compile(r"\.(whl|zip|tar|tgz|tar\.gz|tbz|tar\.bz2|txz|tlz|tar\.xz|tar\.lz|tar\.lzma)$", re.IGNORECASE)
URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def logical_lines(text):
    """(first line number, line) as pip reads them: '\\' continuations joined, comments and blank lines dropped."""
    joined, first = [], None
    for number, line in enumerate(text.splitlines(), start=1):
        if line.endswith("\\") and not COMMENT.match(line):
            first = first or number
            joined.append(line[:-1])
            continue
        if joined:
            line, number, joined, first = "".join(joined) + line, first, [], None
        line = COMMENT.sub("", line).strip()
        if line:
            yield number, line
    if joined:
        line = COMMENT.sub("", "".join(joined)).strip()
        if line:
            yield first, line


def refusal_reason(line):
    """Why pip would read this requirement line as more than 'this package from the configured sources', or None."""
    if "${" in line:
        return "it refers to an environment variable, which pip expands into anything (options included)"
    tokens = line.split()
    if tokens[0].startswith("-"):
        return f"{tokens[0].split('=', 1)[0]} is a pip option line, which can add package sources, include other " \
               "files or install from a path"
    # As pip splits it: the requirement up to the first token starting with '-', options after it.
    first_option = next((i for i, token in enumerate(tokens) if token.startswith("-")), len(tokens))
    unknown = _unknown_options(tokens[first_option:])
    if unknown:
        return f"{unknown} is a per-requirement pip option (only --hash=<algorithm>:<digest> is kept)"
    requirement = " ".join(tokens[:first_option]).partition(";")[0].strip()
    if "://" in requirement or URL_SCHEME.match(requirement):
        return "it installs from a URL, not from pip_sources"
    if "@" in requirement:
        return "it is a direct reference (name @ URL), which installs from that URL, not from pip_sources"
    if requirement.startswith((".", "~")) or "/" in requirement or "\\" in requirement or ARCHIVE.search(requirement):
        return "it installs from a local path or archive, not from pip_sources"
    if not PLAIN_REQUIREMENT.fullmatch(requirement):
        return "it is not a plain requirement (name[extras], version specifiers, '; markers')"
    return None


def _unknown_options(options):
    """The first option that is not --hash (written --hash=sha256:<hex> or --hash sha256:<hex>), or None."""
    values = iter(options)
    for option in values:
        if option == "--hash" and re.fullmatch(r"[a-z0-9]+:[0-9a-fA-F]+", next(values, "")):
            continue
        if not HASH_OPTION.fullmatch(option):
            return option.split("=", 1)[0]
    return None


def refused_lines(text):
    """Every line of a requirements file that the guard refuses, as Refusal(line_number, line, reason)."""
    found = []
    for number, line in logical_lines(text):
        reason = refusal_reason(line)
        if reason:
            found.append(Refusal(number, line, reason))
    return found


def shown(line):
    """A line as printed: URL credentials and query strings (tokens live there) masked, long lines cut."""
    line = re.sub(r"//[^/\s@]+@", "//***@", line)
    line = re.sub(r"\?\S*", "?***", line)
    return line if len(line) <= 160 else line[:157] + "..."


def check_requirements(paths, owner, opt_in):
    """Messages for every refused line of these files (missing files skipped)."""
    messages = []
    for path in paths:
        if not os.path.isfile(path):
            continue
        with open(path, "rb") as handle:
            text = handle.read().decode("utf-8-sig", errors="replace")
        for refusal in refused_lines(text):
            messages.append(
                f"{owner}: {path} line {refusal.line_number}: {shown(refusal.line)!r}: {refusal.reason}. Nothing was "
                f"installed. Pin a commit whose requirements.txt lists plain requirements only, or, if you trust "
                f"these sources, set {opt_in}=True")
    return messages


# --- installed distributions ---------------------------------------------------------------------

CHUNK = 1 << 20


def _normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def dist_infos(site_packages):
    """{(normalized name, version): dist-info path} of every distribution installed in site_packages."""
    found = {}
    for path in glob.glob(os.path.join(glob.escape(site_packages), "*.dist-info")):
        name, sep, version = os.path.basename(path)[: -len(".dist-info")].partition("-")
        if sep:
            found[(_normalize(name), version)] = path
    return found


def record_rows(dist_info):
    """(path, hash, size) rows of a dist-info's RECORD; paths are relative to site-packages."""
    with open(os.path.join(dist_info, "RECORD"), newline="", encoding="utf-8") as handle:
        return [tuple((row + ["", ""])[:3]) for row in csv.reader(handle) if row]


def file_digest(path, algorithm):
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


def altered_files(site_packages, dist_info):
    """[(RECORD path, what is wrong)] for the files of one distribution whose content no longer matches RECORD.

    Rows without a hash are not compared: RECORD itself, and the __pycache__/*.pyc files pip compiled at
    install time (it lists them without one); files_claimed_by_others covers those.
    """
    problems = []
    for path, hash_field, _size in record_rows(dist_info):
        if not hash_field:
            continue
        algorithm, _, expected = hash_field.partition("=")
        if algorithm not in hashlib.algorithms_guaranteed or algorithm in ("md5", "sha1"):
            problems.append((path, f"hash algorithm {algorithm!r} can't be verified"))
            continue
        full = os.path.normpath(os.path.join(site_packages, path))
        try:
            actual = file_digest(full, algorithm)
        except FileNotFoundError:
            problems.append((path, "missing"))
            continue
        except OSError as error:
            problems.append((path, f"unreadable ({error.strerror})"))
            continue
        if actual != expected:
            problems.append((path, "altered"))
    return problems


def files_claimed_by_others(site_packages, dist_info):
    """{RECORD path: [other distributions]} for files of this distribution that another installed one also lists:
    pip overwrote them when it installed that one (its files, pyc included, replaced these)."""
    own = {os.path.normpath(path) for path, _, _ in record_rows(dist_info)}
    claimed = {}
    for (name, version), other in sorted(dist_infos(site_packages).items()):
        if os.path.samefile(other, dist_info) or not os.path.isfile(os.path.join(other, "RECORD")):
            continue
        for path, _, _ in record_rows(other):
            if os.path.normpath(path) in own:
                claimed.setdefault(os.path.normpath(path), []).append(f"{name} {version}")
    return claimed


def verify_distribution(site_packages, pin):
    """Sentences describing what is wrong with the installed files of `name==version` ([] when intact)."""
    name, _, version = pin.partition("==")
    dist_info = dist_infos(site_packages).get((_normalize(name), version))
    if dist_info is None:
        return [f"{pin} is not installed in {site_packages}"]
    if not os.path.isfile(os.path.join(dist_info, "RECORD")):
        return [f"{pin} has no RECORD in {dist_info}, so its files can't be verified"]
    problems = {path: [what] for path, what in altered_files(site_packages, dist_info)}
    for path, owners in files_claimed_by_others(site_packages, dist_info).items():
        problems.setdefault(path, []).append("also installed by " + ", ".join(owners))
    return [f"{path}: {'; '.join(what)}" for path, what in sorted(problems.items())]


def verify_records(venv, pins):
    """Messages (empty when every pinned distribution is intact)."""
    sites = sorted(glob.glob(os.path.join(glob.escape(venv), "lib", "python3*", "site-packages")))
    if not sites:
        return [f"no site-packages under {venv}/lib: the venv is missing"]
    problems = {pin: verify_distribution(sites[0], pin) for pin in pins}
    broken = {pin: found for pin, found in problems.items() if found}
    if not broken:
        return []
    messages = []
    for pin, found in broken.items():
        listed = found[:20] + ([f"... and {len(found) - 20} more"] if len(found) > 20 else [])
        messages.append(f"{pin}'s installed files no longer match its RECORD (pip still reports it installed; "
                        "ComfyUI would run the replaced code):\n  " + "\n  ".join(listed))
    messages.append(
        "A requirement installed in this run overwrote them. Drop the custom node (or ComfyUI requirement) that "
        "pulls in the package named above, or pin a commit without it; uninstall that package; then restore the "
        f"torch set: {venv}/bin/python -m pip install --force-reinstall --no-deps " + " ".join(broken))
    return messages


def main(argv):
    parser = argparse.ArgumentParser(prog="pip_guard", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check-requirements")
    check.add_argument("--owner", required=True, help="who asked for these requirements, e.g. custom node 'x'")
    check.add_argument("--opt-in", required=True, help="the spec field that allows option lines")
    check.add_argument("files", nargs="+")
    verify = commands.add_parser("verify-records")
    verify.add_argument("--venv", required=True)
    verify.add_argument("pins", nargs="+", help="name==version of each distribution to verify")
    args = parser.parse_args(argv)
    if args.command == "check-requirements":
        messages = check_requirements(args.files, args.owner, args.opt_in)
    else:
        messages = verify_records(args.venv, args.pins)
    for message in messages:
        print("comfyinfra: " + message, file=sys.stderr)
    return 1 if messages else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
