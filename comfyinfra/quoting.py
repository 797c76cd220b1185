"""Values written into other programs' formats, escaped for each one: systemd units, supervisord programs,
crontab lines, YAML, pip.conf, and on Windows hosts PowerShell scripts and XML (web.config, the scheduled task).
roles/__init__.py registers these as Jinja filters for templates/*.j2.

The spec refuses first what no format should carry (control characters, paths outside [A-Za-z0-9._/+-],
flags not named like flags, ...). This is the second line: what a format gives a meaning to is escaped, and
what a format cannot carry at all raises ValueError, so a template never renders it. Each rule is the one
the program applies, as read in its source or manual:
- systemd (systemd.service(5) "Command lines", systemd.unit(5) "Specifiers"): every setting expands
  specifiers, so a literal `%` is `%%`; ExecStart= also substitutes `$VAR` and `${VAR}` in each word (a
  literal `$` is `$$`) and splits words on whitespace, with "..." quoting and C escapes (`\\`, `\"`); a
  line ending in `\\` continues on the next one.
- supervisord 4.2 (supervisor/options.py): values are %-formatted for `%(ENV_X)s`, so `%` is `%%` (`%%%%` in
  stdout_logfile=, which is formatted twice), but the literal text `%(here)s` is replaced before that, escaped
  or not; its config parser cuts an inline comment at whitespace followed by `;` or `#`; `command=` is split by
  shlex.split; `environment=` by a non-POSIX shlex into KEY="value" pairs (no escapes: no `"` in a value).
- cron (crontab(5)): an unescaped `%` in the command ends it and the rest goes to its stdin; `\\%` is `%`.
- YAML: a double-quoted scalar from PyYAML's own emitter.
- logrotate (logrotate.8 "CONFIGURATION FILE"): paths split on whitespace unless quoted.
- pip.conf (pip reads it with configparser.RawConfigParser): one value per line, no interpolation.
- PowerShell (about_Quoting_Rules; the tokenizer's IsSingleQuote): a single-quoted string expands nothing and
  ends at `'`, which is doubled inside; the tokenizer also takes U+2018-U+201B for `'`, and Windows PowerShell 5.1
  reads a .ps1 without a BOM in the ANSI code page, so only printable ASCII is written. Windows PowerShell 5.1
  passes a native program's arguments by wrapping those with whitespace in "..." without escaping anything.
- XML 1.0 (section 2.2 "Characters", 2.4, 3.3.3): `&`, `<`, `>` escaped (and both quotes in attributes); control
  characters other than tab and line breaks are not XML at all, and those are normalized away in attributes:
  none is written. Non-ASCII becomes a character reference, so the files stay ASCII.
"""

from __future__ import annotations

import json
import re
import shlex
import unicodedata
from collections.abc import Iterable

import yaml

# Unicode categories that break a line or can't be encoded: C0/C1 controls (newline, tab, DEL, NEL ...), the
# line and paragraph separators (YAML and str.splitlines() end lines there), lone surrogates.
UNSAFE_CATEGORIES = {"Cc": "a control character", "Zl": "a line separator", "Zp": "a paragraph separator",
                     "Cs": "a lone surrogate"}
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Words that mean the same to systemd, the shell and shlex without any quoting.
SYSTEMD_PLAIN_WORD = re.compile(r"[A-Za-z0-9_@%$+=:,./-]+")
SYSTEMD_EXEC_PREFIXES = "@-:+!"  # on ExecStart's first word: run as root (+, !), ignore failure (-), ...
SUPERVISOR_INLINE_COMMENT = re.compile(r"\s[;#]")


def unsafe_character(text: str) -> str | None:
    """What makes `text` unfit for a one-line value, e.g. 'a control character (U+000A) at position 4', or None."""
    for position, char in enumerate(text):
        kind = UNSAFE_CATEGORIES.get(unicodedata.category(char))
        if kind:
            return f"{kind} (U+{ord(char):04X}) at position {position}"
    return None


def _one_line(value: object, target: str) -> str:
    text = str(value)
    problem = unsafe_character(text)
    if problem:
        raise ValueError(f"{text!r} can't be written into {target}: it holds {problem}")
    return text


def systemd_value(value: object) -> str:
    """A whole single-value setting (WorkingDirectory=, Description=, User=, ...): specifiers escaped."""
    text = _one_line(value, "a systemd unit")
    if text != text.strip() or text.endswith("\\"):
        raise ValueError(f"{text!r} can't be a systemd setting: systemd strips surrounding whitespace and joins a "
                         "line ending in a backslash with the next")
    return text.replace("%", "%%")


def _systemd_quoted(text: str) -> str:
    if SYSTEMD_PLAIN_WORD.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_exec(argv: Iterable[object]) -> str:
    """An ExecStart= command line whose words systemd hands to the program exactly as given, one argument each."""
    words = [_one_line(word, "a systemd command line") for word in argv]
    if not words or not words[0] or words[0][0] in SYSTEMD_EXEC_PREFIXES:
        raise ValueError(f"{words[:1]!r} can't start an ExecStart= line: systemd reads a leading "
                         f"{', '.join(SYSTEMD_EXEC_PREFIXES)} as a prefix (+ and ! run it as root)")
    if "" in words:
        raise ValueError("an empty argument can't be written into a systemd command line")
    return " ".join(_systemd_quoted(word.replace("%", "%%").replace("$", "$$")) for word in words)


def systemd_env(variable: tuple[str, object]) -> str:
    """One Environment= assignment, quoted: "KEY=value"."""
    key, value = variable
    if not ENV_NAME.fullmatch(key):
        raise ValueError(f"{key!r} is not an environment variable name")
    text = _one_line(value, "a systemd Environment= line")
    return '"' + f"{key}={text}".replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%") + '"'


def systemd_paths(paths: Iterable[object]) -> str:
    """A space-separated path list (ReadWritePaths=, ReadOnlyPaths=): absolute paths, quoted when they hold a
    space. systemd keeps backslashes in these lists, so a path with a backslash or a quote can't be written."""
    words = []
    for path in paths:
        text = _one_line(path, "a systemd path list")
        if not text.startswith("/") or re.search(r"[\\\"']", text):
            raise ValueError(f"{text!r} can't be written into a systemd path list: allowed: an absolute path "
                             "without quotes or backslashes (a leading - or + would change its meaning)")
        text = text.replace("%", "%%")
        words.append(f'"{text}"' if re.search(r"\s", text) else text)
    return " ".join(words)


def _supervisor_text(value: object, what: str) -> str:
    text = _one_line(value, f"supervisord's {what}")
    if text != text.strip() or SUPERVISOR_INLINE_COMMENT.search(text) or "%(here)s" in text:
        raise ValueError(f"{text!r} can't be supervisord's {what}: its config parser strips surrounding whitespace, "
                         "cuts the value at a space followed by ';' or '#', and replaces '%(here)s' even when escaped")
    return text


def supervisor_value(value: object) -> str:
    """A supervisord program value formatted once (command=, directory=, user=): `%` escaped."""
    return _supervisor_text(value, "program value").replace("%", "%%")


def supervisor_logfile(value: object) -> str:
    """stdout_logfile=, which supervisord formats twice (saneget, then again for log files)."""
    return _supervisor_text(value, "stdout_logfile=").replace("%", "%%%%")


def supervisor_command(argv: Iterable[object]) -> str:
    """command= from words: supervisord splits it with shlex.split, which reads shell quoting."""
    return supervisor_value(shlex.join(str(word) for word in argv))


def supervisor_env(variables: Iterable[tuple[str, object]]) -> str:
    """environment= as KEY="value",KEY2="value2". supervisord's non-POSIX shlex has no escapes, and it strips
    quote characters from both ends of a value: values with a double quote, or starting or ending with a quote,
    can't be written."""
    pairs = []
    for key, value in variables:
        if not ENV_NAME.fullmatch(key):
            raise ValueError(f"{key!r} is not an environment variable name")
        text = _supervisor_text(value, "environment=")
        if '"' in text or text[:1] == "'" or text[-1:] == "'" or SUPERVISOR_INLINE_COMMENT.search(text):
            raise ValueError(f"{text!r} can't be a value in supervisord's environment=: allowed: no double quote, "
                             "no single quote at either end, no space followed by ';' or '#'")
        pairs.append(f'{key}="{text}"'.replace("%", "%%"))
    return ",".join(pairs)


def cron_command(command: str) -> str:
    """The command field of a crontab line: `%` escaped (cron ends the command at a bare one). cron drops a
    backslash before `%` only, so a command holding a backslash can't be written reliably."""
    text = _one_line(command, "a crontab line")
    if "\\" in text:
        raise ValueError(f"{text!r} can't be a cron command: it holds a backslash")
    return text.replace("%", "\\%")


def yaml_value(value: object) -> str:
    """A double-quoted YAML scalar (PyYAML's emitter): '#', ': ', quotes and leading '-' stay data."""
    text = _one_line(value, "a YAML file")
    return yaml.safe_dump(text, default_style='"', allow_unicode=True, width=float("inf")).rstrip("\n")


def logrotate_path(value: object) -> str:
    """A path pattern opening a logrotate block, double-quoted (logrotate splits paths on whitespace; it has
    no escapes inside quotes, so a path with a quote or a backslash can't be written)."""
    text = _one_line(value, "a logrotate configuration")
    if not text.startswith("/") or re.search(r"[\\\"'{}]", text):
        raise ValueError(f"{text!r} can't be a logrotate path: allowed: an absolute path without quotes, backslashes "
                         "or braces")
    return f'"{text}"'


def pip_conf_value(value: object) -> str:
    """A value in pip.conf: one line (a line break would start another option or section)."""
    text = _one_line(value, "pip.conf")
    if text != text.strip():
        raise ValueError(f"{text!r} can't be a pip.conf value: configparser strips surrounding whitespace")
    return text


def _printable_ascii(value: object, target: str) -> str:
    """The text, when every character is printable ASCII. The message names the character, never the value (a
    PowerShell script may one day carry a secret)."""
    text = str(value)
    for position, char in enumerate(text):
        if not " " <= char <= "~":
            raise ValueError(f"a value can't be written into {target}: it holds U+{ord(char):04X} at position "
                             f"{position}; allowed: printable ASCII (Windows PowerShell 5.1 reads a script without a "
                             "BOM as ANSI, and takes the typographic quotes U+2018-U+201B for a closing quote)")
    return text


def _words(words: Iterable[object], target: str) -> list[object]:
    if isinstance(words, (str, bytes)):  # a string would be split into characters
        raise TypeError(f"{target} is made from a sequence of words, not one string")
    return list(words)


def ps_string(value: object) -> str:
    """A PowerShell single-quoted string literal: nothing inside expands (no $, no backtick escapes); `'` doubled."""
    return "'" + _printable_ascii(value, "a PowerShell string").replace("'", "''") + "'"


def ps_array(words: Iterable[object]) -> str:
    """A PowerShell array of single-quoted strings: @('a', 'b'); @() when empty."""
    return "@(" + ", ".join(ps_string(word) for word in _words(words, "a PowerShell array")) + ")"


def ps_native_args(words: Iterable[object]) -> str:
    """ps_array for the arguments of a native program (`& $exe @args`). Windows PowerShell 5.1 wraps an argument
    holding whitespace in "..." and escapes nothing, and drops an empty one; the program then splits its command
    line by the MSVC rules, where `\\"` is a literal quote. So a word holding `"`, an empty word, and a word with
    whitespace that ends in a backslash can't be passed through unchanged."""
    words = _words(words, "a native command line")
    for index, word in enumerate(words):
        text = _printable_ascii(word, "a native command line")
        if not text or '"' in text or (" " in text and text.endswith("\\")):
            raise ValueError(f"argument {index} can't be passed to a native program by Windows PowerShell 5.1 as it "
                             "is: allowed: a non-empty word without double quotes, not ending in a backslash when it "
                             "holds a space")
    return ps_array(words)


# Characters XML 1.0 does not allow at all (section 2.2), besides the controls: the two noncharacters of the BMP.
XML_NONCHARACTERS = {0xFFFE, 0xFFFF}


def _xml_escaped(value: object, target: str) -> str:
    text = str(value)
    for position, char in enumerate(text):
        if unicodedata.category(char) in ("Cc", "Cs") or ord(char) in XML_NONCHARACTERS:
            raise ValueError(f"a value can't be written into {target}: it holds U+{ord(char):04X} at position "
                             f"{position}; allowed: text without control characters")
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return "".join(char if ord(char) < 0x80 else f"&#x{ord(char):X};" for char in text)


def xml_text(value: object) -> str:
    """XML character data (an element's text): &, < and > escaped, non-ASCII as character references."""
    return _xml_escaped(value, "XML text")


def xml_attr(value: object) -> str:
    """An XML attribute value, for either quote: xml_text plus both quotes escaped."""
    return _xml_escaped(value, "an XML attribute").replace('"', "&quot;").replace("'", "&apos;")


# A word a Dockerfile instruction (ENV, COPY, RUN's shell) takes as it is: no whitespace, quote, `$` (Docker's own
# variable expansion), backslash (its line continuation) or shell metacharacter.
DOCKER_WORD = re.compile(r"[A-Za-z0-9._/:@+=,%-]+")


def docker_word(value: object) -> str:
    """One word of a Dockerfile line (ENV value, COPY path, RUN argument), refused unless it needs no quoting."""
    text = _one_line(value, "a Dockerfile")
    if not DOCKER_WORD.fullmatch(text):
        raise ValueError(f"{text!r} can't be written as one Dockerfile word; allowed: letters, digits and . _ / : @ + = "
                         ", % -")
    return text


def docker_json(words: Iterable[object]) -> str:
    """A JSON array for CMD/HEALTHCHECK's exec form (no shell: each element is one argument, as json escapes it)."""
    return json.dumps([_one_line(word, "a Dockerfile") for word in words])


def shell_command(words: Iterable[object]) -> str:
    """One POSIX sh command line from words, each quoted as sh reads it (shlex.join): compose's CMD-SHELL."""
    return shlex.join(_one_line(word, "a shell command") for word in words)


JINJA_FILTERS = {f.__name__: f for f in (
    systemd_value, systemd_exec, systemd_env, systemd_paths, supervisor_value, supervisor_logfile, supervisor_command,
    supervisor_env, cron_command, yaml_value, logrotate_path, pip_conf_value, ps_string, ps_array, ps_native_args,
    xml_text, xml_attr, docker_word, docker_json, shell_command)}
