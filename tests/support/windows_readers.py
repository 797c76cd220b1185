"""Read Windows-side text back the way Windows reads it, strictly: a value comes back intact or the reader raises
NotIntact. PowerShell by tree-sitter's PowerShell grammar (tests/support/powershell_lint.py's parser): the top-level
`$Name = ...` assignments of a script and the single-quoted literals they hold, with `''` undone
(about_Quoting_Rules); nothing but literals, `@(...)` of literals and `$null` is read as a value. Windows paths by
the naming rules of "Naming Files, Paths, and Namespaces" (learn.microsoft.com, fileio/naming-a-file): Windows drops
a trailing space or period of a folder name and reads CON, PRN, AUX, NUL, COM1-9 and LPT1-9 (even with an extension)
as devices, so such a path is not the one written.
"""

from __future__ import annotations

import re

from tree_sitter import Node

from tests.support.artifact_parsers import NotIntact
from tests.support.powershell_lint import PARSER

RESERVED_DEVICE = re.compile(r"(CON|PRN|AUX|NUL|CONIN\$|CONOUT\$|COM[0-9\u00b9\u00b2\u00b3]|LPT[0-9\u00b9\u00b2\u00b3])"
                             r"(\..*)?", re.IGNORECASE)


def _descendants(node: Node, kind: str) -> list[Node]:
    found, stack = [], [node]
    while stack:
        current = stack.pop()
        if current.type == kind:
            found.append(current)
            continue  # a string literal holds no other
        stack.extend(reversed(current.children))
    return found


def assignments(source: str) -> dict[str, Node]:
    """The right-hand side of each variable assigned exactly once at the top level, with `=` (not those inside
    functions or blocks), by name. A variable also assigned another way (`+=`, twice) is left out: what the test
    would read is not all it holds."""
    root = PARSER.parse(source.encode()).root_node
    found: dict[str, list[Node | None]] = {}
    for statements in (child for child in root.children if child.type == "statement_list"):
        for pipeline in (child for child in statements.children if child.type == "pipeline"):
            assignment = pipeline.children[0]
            if assignment.type != "assignment_expression":
                continue
            name, operator = (child.text.decode() for child in assignment.children[:2])
            plain = operator == "=" and name.startswith("$")
            found.setdefault(name.lstrip("$"), []).append(assignment.child_by_field_name("value") if plain else None)
    return {name: values[0] for name, values in found.items() if len(values) == 1 and values[0] is not None}


def literals(node: Node) -> list[Node]:
    """The string literals inside a node, in order."""
    return _descendants(node, "string_literal")


def literal_text(node: Node) -> str:
    """The text of a single-quoted literal as PowerShell reads it: nothing expands, `''` is one quote."""
    text = node.text.decode()
    if len(text) < 2 or text[0] != "'" or text[-1] != "'" or not text.isascii():
        raise NotIntact(f"not a single-quoted ASCII literal: {text[:40]!r}")
    inner = text[1:-1]
    if "'" in inner.replace("''", ""):  # a lone quote would have ended the string
        raise NotIntact(f"a lone quote inside {text[:40]!r}")
    return inner.replace("''", "'")


def ps_value(source: str, name: str) -> str | list[str] | None:
    """What `$name` holds: a string from one literal, a list from @('a', 'b'), None from $null; anything else (an
    expression, an expanding string, a second statement) raises."""
    node = assignments(source).get(name)
    if node is None:
        raise NotIntact(f"${name} is not assigned exactly once with = at the top level")
    text = node.text.decode()
    if text == "$null":
        return None
    found = literals(node)
    skeleton = text
    for literal in reversed(found):  # each literal's span blanked, to see what surrounds them
        start, end = literal.start_byte - node.start_byte, literal.end_byte - node.start_byte
        skeleton = skeleton[:start] + "S" + skeleton[end:]
    if skeleton == "S":
        return literal_text(found[0])
    if skeleton == "@(" + ", ".join("S" * len(found)) + ")":
        return [literal_text(literal) for literal in found]
    raise NotIntact(f"${name} is not a literal: {skeleton[:60]!r}")


def windows_path_problem(path: str) -> str | None:
    """Why Windows would not open `path` as written (a folder name it trims, a device name), or None."""
    for segment in path.split("\\")[1:]:
        if segment != segment.rstrip(" ."):
            return f"{segment!r} ends in a space or a period, which Windows drops"
        if RESERVED_DEVICE.fullmatch(segment):
            return f"{segment!r} is a device name to Windows"
    return None
