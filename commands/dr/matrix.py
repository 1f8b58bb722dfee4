"""The playbook's test matrix (§8) and how `check ENVIRONMENT [TEST...]` selects from it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class DrTest:
    """One row of the matrix: `key` as typed in chat, `id` as the playbook names it."""

    key: str
    id: str
    what: str
    passes_when: str
    report_suffix: str = ""  # the raw report's file name ending in the run folder


SMOKE: Final = DrTest(
    "smoke", "DR-SMOKE", "the environment's smoke checks", "every check answers as configured"
)
AXE: Final = DrTest(
    "axe",
    "DR-AXE",
    "the accessibility suite (axe-core)",
    "0 serious + critical violations",
    ".report.json",
)
E2E: Final = DrTest(
    "e2e", "DR-E2E", "the regression suite", "every test passes (JUnit)", ".report.xml"
)
ZAP: Final = DrTest(
    "zap", "DR-ZAP", "an OWASP ZAP baseline scan", "0 High and 0 Medium alerts", ".report.json"
)
MATRIX: Final = (SMOKE, AXE, E2E, ZAP)
BY_KEY: Final = {t.key: t for t in MATRIX}
CHOICES: Final = "smoke|axe|e2e|zap|all"


def select(words: Sequence[str]) -> tuple[DrTest, ...] | str:
    """The tests named (matrix order, no repeats; none or `all` = the whole matrix), or why not.

    Accepts the playbook's ids too (`DR-AXE`), any case.
    """
    if not words:
        return MATRIX
    chosen: set[str] = set()
    for word in words:
        key = word.lower().removeprefix("dr-")
        if key == "all":
            chosen.update(BY_KEY)
        elif key in BY_KEY:
            chosen.add(key)
        else:
            return f"`{word}` is not a DR test: choose {CHOICES}"
    return tuple(t for t in MATRIX if t.key in chosen)
