"""Read rendered artifacts back the way their programs do, strictly: a value comes back intact or the reader
raises. Used by the tests that prove an inventory value can't become a directive or split into two arguments.

- systemd units: there is no offline dump of a parsed unit (systemd-analyze verify only says valid or not), so
  `read_unit` applies systemd's documented rules (systemd.syntax(7), systemd.service(5) "Command lines",
  systemd.unit(5) "Specifiers"): line continuation, specifiers, "..."/'...' quoting with C escapes, `$$`.
  Anything a comfyinfra value must never produce (a specifier other than %%, a $VAR, a mid-word quote, an
  exec prefix, a lone ';') raises NotIntact instead of being interpreted.
- supervisord: its own parser (supervisor.options.ServerOptions.processes_from_section), user and log
  directory lookups stubbed (the service user and the install tree don't exist here).
- cron: the command field as cron(8) cuts it at a bare '%' (crontab(5)); installing a crontab here would
  touch this machine's real cron, so the line is read, not installed.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from unittest import mock

from comfyinfra.artifacts import host_artifacts

WHITESPACE = " \t"
C_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "s": " ", "n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b",
             "f": "\f", "v": "\v"}


def rendered(plan, template: str) -> str:
    """The host's file made from templates/<template>, as the deploy uploads it (comfyinfra.artifacts: the plan
    decides whether the host gets it at all, e.g. the supervisord program only under supervisord)."""
    (artifact,) = [a for a in host_artifacts(plan) if a.template == template]
    return artifact.render().decode()


class NotIntact(ValueError):
    """The artifact would not hand the value to its program as written."""


def read_unit(text: str) -> list[tuple[str, str, str]]:
    """(section, key, raw value) for every setting, in order, after systemd's line continuation."""
    settings, section, pending = [], None, ""
    for line in text.split("\n"):
        line = pending + line
        pending = ""
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if stripped.endswith("\\"):  # systemd joins the next line (with a space) to this one
            pending = stripped[:-1] + " "
            continue
        if stripped.startswith("["):
            if not re.fullmatch(r"\[[A-Za-z]+\]", stripped):
                raise NotIntact(f"odd section header {stripped!r}")
            section = stripped[1:-1]
            continue
        key, equals, value = stripped.partition("=")
        if not equals or section is None:
            raise NotIntact(f"not a setting: {stripped!r}")
        settings.append((section, key.strip(), value.strip()))
    return settings


def unit_specifiers(value: str) -> str:
    """%% is a literal %; any other specifier would replace text, so the value is not what was written."""
    out, i = [], 0
    while i < len(value):
        if value[i] == "%":
            if value[i + 1:i + 2] != "%":
                raise NotIntact(f"specifier {value[i:i + 2]!r} in {value!r}")
            out.append("%")
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def _c_escape(value: str, i: int) -> tuple[str, int]:
    """The character a backslash escape at value[i] stands for, and the index after it."""
    code = value[i + 1:i + 2]
    if code in C_ESCAPES:
        return C_ESCAPES[code], i + 2
    if code == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", value[i + 2:i + 4]):
        return chr(int(value[i + 2:i + 4], 16)), i + 4
    raise NotIntact(f"escape {value[i:i + 2]!r} in {value!r}")


def unit_words(value: str, c_escapes: bool = True) -> list[str]:
    """systemd's extract_first_word with UNQUOTE (and CUNESCAPE): whole-word quotes, escapes."""
    words, i = [], 0
    while True:
        while i < len(value) and value[i] in WHITESPACE:
            i += 1
        if i == len(value):
            return words
        word = []
        if value[i] in "\"'":
            quote, i = value[i], i + 1
            while True:
                if i == len(value):
                    raise NotIntact(f"unterminated quote in {value!r}")
                if value[i] == "\\" and c_escapes:
                    char, i = _c_escape(value, i)
                    word.append(char)
                elif value[i] == quote:
                    i += 1
                    break
                else:
                    word.append(value[i])
                    i += 1
            if i < len(value) and value[i] not in WHITESPACE:
                raise NotIntact(f"a closing quote not followed by whitespace in {value!r}")
        else:
            while i < len(value) and value[i] not in WHITESPACE:
                if value[i] in "\"'":
                    raise NotIntact(f"a quote inside a word in {value!r}")
                if value[i] == "\\":
                    if not c_escapes:
                        raise NotIntact(f"a backslash in {value!r}")
                    char, i = _c_escape(value, i)
                    word.append(char)
                else:
                    word.append(value[i])
                    i += 1
            if "".join(word) == ";":
                raise NotIntact(f"a lone ';' (command separator) in {value!r}")
        words.append("".join(word))


def _dollars(word: str) -> str:
    """$$ is a literal $; $NAME and ${NAME} would be replaced from the environment."""
    out, i = [], 0
    while i < len(word):
        if word[i] == "$":
            following = word[i + 1:i + 2]
            if following == "$":
                out.append("$")
                i += 2
                continue
            if following == "{" or re.fullmatch(r"[A-Za-z_]", following):
                raise NotIntact(f"variable substitution in {word!r}")
        out.append(word[i])
        i += 1
    return "".join(out)


def unit_exec(value: str) -> list[str]:
    """An ExecStart= line as the argv systemd runs."""
    words = [_dollars(word) for word in unit_words(unit_specifiers(value))]
    if not words or words[0][:1] in tuple("@-:+!"):
        raise NotIntact(f"an exec prefix or no command in {value!r}")
    return words


def unit_paths(value: str) -> list[str]:
    """ReadWritePaths=/ReadOnlyPaths=: words (quotes, no escapes), each an absolute path without a prefix."""
    paths = unit_words(unit_specifiers(value), c_escapes=False)
    if any(not path.startswith("/") for path in paths):
        raise NotIntact(f"a path with a prefix (- or +) or relative in {value!r}")
    return paths


def unit_environment(value: str) -> list[tuple[str, str]]:
    pairs = []
    for word in unit_words(unit_specifiers(value)):
        key, equals, variable = word.partition("=")
        if not equals:
            raise NotIntact(f"not an assignment: {word!r}")
        pairs.append((key, variable))
    return pairs


@contextmanager
def supervisor_here():
    """supervisord's parser with the user lookup and log directory check stubbed (neither exists here)."""
    with mock.patch("supervisor.options.name_to_uid", lambda name: 4242), \
            mock.patch("supervisor.datatypes.existing_dirpath", lambda path: path):
        yield


def supervisor_programs(*texts: str) -> dict[str, object]:
    """{program name: supervisord's ProcessConfig} for every [program:x] section of the files."""
    from supervisor.options import ServerOptions, UnhosedConfigParser

    parser = UnhosedConfigParser()
    for text in texts:
        parser.read_string(text)
    parser.expand_here("/etc/supervisor/conf.d")  # as ServerOptions.read_config does, for every included file
    programs = {}
    with supervisor_here():
        options = ServerOptions()
        for section in parser.sections():
            if not section.startswith("program:"):
                raise NotIntact(f"section {section!r}")
            name = section.removeprefix("program:")
            (config,) = options.processes_from_section(parser, section, name)
            programs[name] = config
    return programs


def cron_command(line: str) -> str:
    """The shell command cron runs for a crontab line (5 schedule fields, then the command); a bare '%' ends
    it (the rest would be stdin), '\\%' is a literal '%'."""
    fields = line.split(None, 5)
    if len(fields) != 6:
        raise NotIntact(f"not a crontab line: {line!r}")
    command, escaped = [], False
    for char in fields[5]:
        if escaped:
            if char != "%":
                command.append("\\")
            command.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "%":
            raise NotIntact(f"a bare '%' cuts the command in {line!r}")
        else:
            command.append(char)
    return "".join(command) + ("\\" if escaped else "")
