"""`plain()`: outside text shows in a card as typed, and never as a link, emphasis or block."""

from __future__ import annotations

import pytest

from commands.cards.elements import plain


@pytest.mark.parametrize(
    ("typed", "shown"),
    [
        ("1.4.2", "1.4.2"),
        ("prod-web01", "prod-web01"),
        (r"D:\MCMS\releases\1.4.1\Portal", r"D:\MCMS\releases\1.4.1\Portal"),
        (
            '"D:\\MCMS\\Worker\\MCMS.Worker.exe" --service',
            '"D:\\MCMS\\Worker\\MCMS.Worker.exe" --service',
        ),
    ],
)
def test_versions_hosts_and_windows_paths_read_as_typed(typed: str, shown: str) -> None:
    assert plain(typed) == shown


@pytest.mark.parametrize(
    ("typed", "escaped"),
    [
        ("[click](https://evil.example)", r"\[click\](https:\/\/evil.example)"),
        ("![x](http://t/p.png)", r"!\[x\](http:\/\/t/p.png)"),
        ("*bold* _it_ `code` ~~s~~", r"\*bold\* \_it\_ \`code\` \~\~s\~\~"),
        ("<at>Megan</at> &amp;", r"\<at\>Megan\</at\> \&amp;"),
        ("see www.evil.example", r"see www\.evil.example"),
        (r"a\*b", r"a\\\*b"),  # a typed escape stays visible instead of escaping our escape
        ("# Approved", r"\# Approved"),
        ("- item", r"\- item"),
        ("1. first", r"1\. first"),
        ("> quote", r"\> quote"),
    ],
)
def test_markup_in_outside_text_is_escaped(typed: str, escaped: str) -> None:
    assert plain(typed) == escaped


def test_outside_text_is_one_line_and_cut_before_escaping() -> None:
    assert plain("line one\r\nline two\u2028three") == "line one line two three"
    assert plain("*" * 10, limit=3) == r"\*\*\*"
