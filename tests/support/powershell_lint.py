"""An offline check of rendered PowerShell (there is no pwsh on Linux): tree-sitter's PowerShell grammar must parse
the script with no ERROR or missing node, and a lint catches the traps of ../shared/reference/windows-iis-wsl.md
(sections 5.1 and 6) that a parse does not: `"$name:"` in a double-quoted string (PowerShell reads a scope or drive
qualifier and refuses the script; tree-sitter accepts it), non-ASCII text (Windows PowerShell 5.1 reads a script
without a BOM as ANSI), `localhost` in a URL (it may resolve to ::1, which mirrored WSL networking lacks), a wsl.exe
other than the Program Files one (the System32 stub fails in session 0, where the scheduled task runs), a path
into a distro's file system (\\\\wsl$, \\\\wsl.localhost: an elevated script must not read or run what the WSL
service user can write), and Invoke-Expression (text becomes code). `lint(source)` returns the findings; an
empty list is a clean script.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import tree_sitter_powershell
from tree_sitter import Language, Node, Parser

PARSER = Parser(Language(tree_sitter_powershell.language()))
# `$env:X`, `$script:X`, ... are scope and drive qualifiers that PowerShell does read inside strings.
SCOPES = {"env", "global", "local", "script", "private", "using", "variable", "function", "alias"}
# `$name:` not preceded by a backtick (escaped) or `$` (`$$`), and not `${name}:`, nor a drive path `$x:\`.
VARIABLE_COLON = re.compile(r"(?<![`$])\$([A-Za-z_]\w*):(?![\\/]?\w)")
LOCALHOST_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://localhost\b", re.IGNORECASE)
WSL_EXE = re.compile(r"wsl\.exe", re.IGNORECASE)
# What precedes the one wsl.exe to use: ...Program Files\WSL\wsl.exe, or $env:ProgramFiles with WSL\wsl.exe.
PROGRAM_FILES_WSL = re.compile(r"(Program ?Files\\WSL\\|ProgramFiles['\"]?\s*['\"]?\\?WSL\\)$", re.IGNORECASE)
WSL_SHARE = re.compile(r"\\\\wsl(\$|\.localhost)", re.IGNORECASE)
INVOKE_EXPRESSION = {"invoke-expression", "iex"}
STRING_NODES = {"expandable_string_literal", "expandable_here_string_literal"}


@dataclass(frozen=True)
class Finding:
    rule: str  # syntax | var-colon | non-ascii | localhost-url | wsl-exe | wsl-share | invoke-expression
    line: int  # 1-based
    text: str  # what was found (never more than the offending token)


def _nodes(root: Node):
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(node.children))


def _line(source: str, offset: int) -> int:
    return source.count("\n", 0, offset) + 1


def _without_comments(source: bytes, root: Node) -> str:
    """The source with every comment blanked (same length and lines): what the text rules look at."""
    text = bytearray(source)
    for node in _nodes(root):
        if node.type == "comment":
            for index in range(node.start_byte, node.end_byte):
                if text[index] not in b"\r\n":
                    text[index] = ord(" ")
    return text.decode("utf-8", "replace")


def lint(source: str) -> list[Finding]:
    encoded = source.encode("utf-8")
    root = PARSER.parse(encoded).root_node
    findings = []
    for node in _nodes(root):
        text = encoded[node.start_byte:node.end_byte].decode("utf-8", "replace")
        line = node.start_point.row + 1
        if node.type == "ERROR" or node.is_missing:
            findings.append(Finding("syntax", line, text[:60] or node.type))
        elif node.type in STRING_NODES:
            for match in VARIABLE_COLON.finditer(text):
                if match.group(1).lower() not in SCOPES:
                    findings.append(Finding("var-colon", line, match.group(0)))
        elif node.type == "command_name":
            name = text.lower()
            if name in INVOKE_EXPRESSION:
                findings.append(Finding("invoke-expression", line, text))
            if name in ("wsl", "wsl.exe"):  # found through PATH: the System32 stub
                findings.append(Finding("wsl-exe", line, text))
    for offset, char in enumerate(source):
        if not (" " <= char <= "~" or char in "\t\r\n"):
            findings.append(Finding("non-ascii", _line(source, offset), f"U+{ord(char):04X}"))
    code = _without_comments(encoded, root)
    for match in LOCALHOST_URL.finditer(code):
        findings.append(Finding("localhost-url", _line(code, match.start()), match.group(0)))
    for match in WSL_SHARE.finditer(code):
        findings.append(Finding("wsl-share", _line(code, match.start()), match.group(0)))
    for match in WSL_EXE.finditer(code):
        if not PROGRAM_FILES_WSL.search(code[max(0, match.start() - 40):match.start()]):
            found = code[max(0, match.start() - 20):match.end()]
            findings.append(Finding("wsl-exe", _line(code, match.start()), found))
    return sorted(set(findings), key=lambda finding: (finding.line, finding.rule))
