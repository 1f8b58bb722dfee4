from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commands.parse import ParsedText, closest, split_command


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("help", ParsedText("help", ())),
        ("/help", ParsedText("help", ())),
        ("  /Smoke   lab ", ParsedText("smoke", ("lab",))),
        ("rollback InternalProd 1.4.1", ParsedText("rollback", ("InternalProd", "1.4.1"))),
        ("status\u00a0Lab", ParsedText("status", ("Lab",))),
        ("/ status Lab", ParsedText("status", ("Lab",))),
        ("", None),
        ("   ", None),
        ("/", None),
    ],
    ids=[
        "plain",
        "slash",
        "spaces-and-case",
        "args-keep-case",
        "nbsp",
        "stray-slash",
        "empty",
        "blank",
        "only-slash",
    ],
)
def test_split_command(text: str, expected: ParsedText | None) -> None:
    assert split_command(text) == expected


@pytest.mark.parametrize(
    ("word", "choices", "expected"),
    [
        ("smok", ["help", "smoke", "status"], "smoke"),
        ("stauts", ["help", "smoke", "status"], "status"),
        ("internalprd", ["Lab", "InternalStage", "InternalProd"], "InternalProd"),
        ("prod", ["Lab", "InternalStage", "InternalProd"], "InternalProd"),
        ("xyzzy", ["help", "smoke", "status"], None),
    ],
)
def test_closest_suggests_the_likely_intent(
    word: str, choices: list[str], expected: str | None
) -> None:
    assert closest(word, choices) == expected


@given(st.text(max_size=200))
def test_split_command_never_raises_and_lowercases_the_name(text: str) -> None:
    parsed = split_command(text)
    if parsed is not None:
        assert parsed.name == parsed.name.lower()
        assert parsed.name and " " not in parsed.name
