"""The Windows filters of comfyinfra.quoting (ps_string, ps_array, ps_native_args, xml_text, xml_attr): for any text
(hypothesis) each either raises ValueError or writes something its reader takes back as exactly that text. The
readers are real parsers: tree-sitter's PowerShell grammar finds where the string literal ends, lxml reads XML.
A refusal names the character and its position, never the value (a script may one day carry a secret)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from comfyinfra import quoting
from tests.support.powershell_lint import PARSER

# Text that means something to PowerShell or XML, mixed with anything at all.
SPECIAL = st.sampled_from(["'", "''", '"', "`", "$", "$x", "$(1)", "@(", "#", "<#", "#>", ";", "&", "<", ">", "&amp;",
                           "]]>", "\\", " ", "\t", "\n", "\r", "\x00", "\x7f", "\u2018", "\u2019", "\u201a", "\u201b",
                           "\u201c", "\u00e9", "\U0001f600", "\ufffe", "\ud800"])
TEXT = st.lists(SPECIAL | st.text(max_size=4), max_size=6).map("".join)
# Printable ASCII only (what the PowerShell filters accept), heavy on quotes and what expands inside "...".
PRINTABLE = st.lists(st.sampled_from(["'", "''", '"', "`", "$", "$x", "$(1)", "#", "<#", "#>", "\\", " "])
                     | st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=4),
                     max_size=6).map("".join)
PROPERTY = settings(max_examples=200, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
PASSWORD = "s3cret'\u2019pass"


def written(filter_, *args):
    """What the filter writes, or None when it refuses (ValueError, nothing else)."""
    try:
        return filter_(*args)
    except ValueError:
        return None


def powershell_strings(source: str) -> list[str]:
    """The single-quoted string literals tree-sitter finds in `source` (a parse with no error), as PowerShell
    reads them: quotes off, '' as '."""
    root = PARSER.parse(source.encode()).root_node
    assert not root.has_error, source
    found, stack = [], [root]
    while stack:
        node = stack.pop()
        if node.type == "verbatim_string_characters":
            literal = node.text.decode()
            found.append(literal[1:-1].replace("''", "'"))
        stack.extend(reversed(node.children))
    return found


@PROPERTY
@given(PRINTABLE | TEXT)
def test_ps_string_comes_back_as_given(text):
    literal = written(quoting.ps_string, text)
    if literal is None:
        assert not all(" " <= char <= "~" for char in text)
    else:
        assert powershell_strings(f"$value = {literal}\n$next = 'after'\n") == [text, "after"]


@PROPERTY
@given(st.lists(PRINTABLE | TEXT, max_size=4))
def test_ps_array_comes_back_as_given(words):
    array = written(quoting.ps_array, words)
    if array is not None:
        assert powershell_strings(f"$words = {array}\n") == words


@pytest.mark.parametrize("quote", ["\u2018", "\u2019", "\u201a", "\u201b"])
def test_typographic_single_quotes_are_refused_without_showing_the_value(quote):
    with pytest.raises(ValueError) as refused:
        quoting.ps_string(f"abc{quote}; Remove-Item C:\\ -Recurse; {quote}")
    assert f"U+{ord(quote):04X} at position 3" in str(refused.value)
    assert "Remove-Item" not in str(refused.value)


def test_a_refusal_never_shows_the_value():
    for filter_ in (quoting.ps_string, quoting.xml_text, quoting.xml_attr):
        with pytest.raises(ValueError) as refused:
            filter_(PASSWORD + "\n")
        assert "s3cret" not in str(refused.value)


def test_ps_array_refuses_a_bare_string():
    with pytest.raises(TypeError, match="sequence of words"):
        quoting.ps_array("systemctl")


@pytest.mark.parametrize("words", [["a", ""], ['say "hi"'], ["C:\\Program Files\\"], ["caf\u00e9"]])
def test_ps_native_args_refuses_what_powershell_51_would_pass_changed(words):
    with pytest.raises(ValueError):
        quoting.ps_native_args(words)


def test_ps_native_args_passes_plain_words_and_shell_snippets():
    words = ["/bin/sh", "-c", "supervisorctl pid >/dev/null 2>&1 || supervisord; sleep 2", "C:\\dir\\"]
    assert powershell_strings(f"$argv = {quoting.ps_native_args(words)}\n") == words


def xml_read_back(attribute: str, text: str) -> tuple[str, str]:
    element = etree.fromstring(f'<a b="{attribute}" c=\'{attribute}\'>{text}</a>'.encode("ascii"))
    assert element.get("b") == element.get("c")
    return element.get("b"), element.text or ""


@PROPERTY
@given(TEXT)
def test_xml_filters_come_back_as_given_and_stay_ascii(text):
    attribute, content = written(quoting.xml_attr, text), written(quoting.xml_text, text)
    assert (attribute is None) == (content is None)
    if attribute is None:
        assert any(ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F or 0xD800 <= ord(char) <= 0xDFFF
                   or ord(char) in (0xFFFE, 0xFFFF) for char in text)
    else:
        assert attribute.isascii() and content.isascii()
        assert xml_read_back(attribute, content) == (text, text)
