"""comfyinfra.quoting, the escaping layer under the spec: for any text (hypothesis), each filter either raises
ValueError or writes something its program reads back as exactly that text, one argument. The spec refuses
most of these characters first; these tests hold the filters to their formats on their own."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comfyinfra import quoting
from tests.support.artifact_parsers import (
    cron_command,
    read_unit,
    supervisor_programs,
    unit_environment,
    unit_exec,
    unit_paths,
    unit_specifiers,
)

# Text that means something to one format or another, mixed with anything at all.
SPECIAL = st.sampled_from(["%", "%n", "%%", "%(here)s", "%(ENV_HOME)s", "$", "$HOME", "${X}", "$$", '"', "'", "\\",
                           " ", ";", " ;", "#", " #",
                           ",", "=", "-", "+", "@", ":", "!", "*", "{", "}", "(", ")", "\n", "\t", "é", "😀", "`"])
TEXT = st.lists(SPECIAL | st.text(max_size=4), max_size=6).map("".join)
PROPERTY = settings(max_examples=150, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


def written(filter_, *args):
    """What the filter writes, or None when it refuses (ValueError, nothing else)."""
    try:
        return filter_(*args)
    except ValueError:
        return None


@PROPERTY
@given(TEXT)
def test_systemd_exec_words_come_back_as_given(text):
    line = written(quoting.systemd_exec, ["/usr/bin/python3", text, "--flag"])
    if line is not None:
        (setting,) = read_unit(f"[Service]\nExecStart={line}\n")
        assert unit_exec(setting[2]) == ["/usr/bin/python3", text, "--flag"]


@PROPERTY
@given(TEXT)
def test_systemd_environment_values_come_back_as_given(text):
    line = written(quoting.systemd_env, ("HOME", text))
    if line is not None:
        (setting,) = read_unit(f"[Service]\nEnvironment={line}\n")
        assert unit_environment(setting[2]) == [("HOME", text)]


@PROPERTY
@given(TEXT)
def test_systemd_path_lists_come_back_as_given(text):
    line = written(quoting.systemd_paths, ["/srv/a", "/srv/" + text])
    if line is not None:
        (setting,) = read_unit(f"[Service]\nReadWritePaths={line}\n")
        assert unit_paths(setting[2]) == ["/srv/a", "/srv/" + text]


@PROPERTY
@given(TEXT)
def test_systemd_single_values_come_back_as_given(text):
    line = written(quoting.systemd_value, text)
    if line is not None:
        (setting,) = read_unit(f"[Unit]\nDescription={line}\n")
        assert unit_specifiers(setting[2]) == text


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_accepts_what_the_filters_write(tmp_path):
    """systemd itself reads the escapes: no unknown specifier, no unbalanced quote, no odd escape."""
    hostile = ["100%", "%n", "$HOME", "${X}", "a b", 'say "hi"', "it's", "back\\slash", ";", "#x", "é😀", "-x"]
    unit = tmp_path / "quoted.service"
    unit.write_text("[Service]\nExecStart=" + quoting.systemd_exec(["/bin/true", *hostile]) + "\n"
                    + "".join(f"Environment={quoting.systemd_env(('X', text))}\n" for text in hostile)
                    + f"WorkingDirectory={quoting.systemd_value('/srv/100%')}\n"
                    + f"ReadWritePaths={quoting.systemd_paths(['/srv/a b', '/srv/100%'])}\n")
    verify = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], check=False, capture_output=True,
                            text=True)
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr


@settings(max_examples=100, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(TEXT, TEXT)
def test_supervisord_reads_command_directory_environment_and_log_as_given(word, value):
    command = written(quoting.supervisor_command, ["/usr/bin/python3", word])
    directory = written(quoting.supervisor_value, "/srv/" + value)
    logfile = written(quoting.supervisor_logfile, f"/srv/{value}.log")
    environment = written(quoting.supervisor_env, [("HOME", value), ("OTHER", "1")])
    program = "[program:p]\n" + "".join(f"{key}={text}\n" for key, text in (
        ("command", command or "/bin/true"), ("directory", directory or "/srv"), ("environment", environment or "A=1"),
        ("stdout_logfile", logfile or "/srv/p.log")))
    config = supervisor_programs(program)["p"]
    if command is not None:
        assert shlex.split(config.command) == ["/usr/bin/python3", word]
    if directory is not None:
        assert config.directory == "/srv/" + value
    if environment is not None:
        assert config.environment == {"HOME": value, "OTHER": "1"}
    if logfile is not None:
        assert config.stdout_logfile == f"/srv/{value}.log"


@PROPERTY
@given(TEXT)
def test_cron_runs_the_command_as_given(text):
    field = written(quoting.cron_command, shlex.join(["find", "/srv/" + text, "-delete"]))
    if field is not None:
        assert shlex.split(cron_command(f"*/15 * * * * {field}")) == ["find", "/srv/" + text, "-delete"]


@PROPERTY
@given(TEXT)
def test_yaml_reads_the_value_as_given(text):
    scalar = written(quoting.yaml_value, text)
    if scalar is not None:
        assert yaml.safe_load(f"comfyinfra:\n  base_path: {scalar}\n  is_default: true\n") == {
            "comfyinfra": {"base_path": text, "is_default": True}}


@PROPERTY
@given(TEXT)
def test_pip_reads_the_value_as_given(text):
    value = written(quoting.pip_conf_value, text)
    if value is not None:
        parser = configparser.RawConfigParser()  # pip/_internal/configuration.py
        parser.read_string(f"[global]\nindex-url = {value}\nconstraint = /c.txt\n")
        assert dict(parser["global"]) == {"index-url": text, "constraint": "/c.txt"}


@PROPERTY
@given(TEXT)
def test_logrotate_reads_one_path_pattern(text):
    header = written(quoting.logrotate_path, f"/srv/{text}/*.log")
    if header is not None:
        assert shlex.split(f"{header} {{") == [f"/srv/{text}/*.log", "{"]


@pytest.mark.parametrize("filter_,value", [
    (quoting.systemd_value, "a\nExecStartPre=+/bin/sh"), (quoting.systemd_value, "ends in \\"),
    (lambda v: quoting.systemd_exec(["/bin/x", v]), "--fast\nExecStartPre=+/tmp/pwn"),
    (lambda v: quoting.systemd_exec([v]), "+/bin/sh"), (lambda v: quoting.systemd_paths([v]), "-/srv/x"),
    (lambda v: quoting.supervisor_env([("HOME", v)]), '/srv/x",LD_PRELOAD="/tmp/evil.so'),
    (quoting.supervisor_value, "/srv/x\n[program:pwn]"), (quoting.supervisor_value, "/srv/x ;comment"),
    (quoting.cron_command, "find /srv\nx"), (quoting.pip_conf_value, "https://pypi.org/simple\n[install]"),
    (quoting.yaml_value, "a\u2028b"), (quoting.logrotate_path, '/srv/"x"/*.log'),
])
def test_what_a_format_cannot_carry_is_refused(filter_, value):
    with pytest.raises(ValueError):
        filter_(value)
