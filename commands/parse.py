"""Turn chat text into a command name and arguments, and suggest what was probably meant.

Pure functions: no config I/O, no network. The @mention is already stripped by bot/.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

# Chat clients turn these into look-alikes of ASCII; accept them as plain spaces.
_SPACES = "\u00a0\u2007\u202f\u200b"


@dataclass(frozen=True)
class ParsedText:
    """`name` is lower-cased; `args` keep their case (versions, environment spelling)."""

    name: str
    args: tuple[str, ...]


def split_command(text: str) -> ParsedText | None:
    """`/rollback  Lab 1.4.1` → ParsedText('rollback', ('Lab', '1.4.1')); blank → None."""
    cleaned = text
    for ch in _SPACES:
        cleaned = cleaned.replace(ch, " ")
    tokens = cleaned.strip().split()
    if not tokens:
        return None
    head = tokens[0].lstrip("/")
    if not head:  # "/ rollback Lab": a stray slash on its own
        tokens = tokens[1:]
        if not tokens:
            return None
        head = tokens[0]
    return ParsedText(head.lower(), tuple(tokens[1:]))


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The most similar choice (case-insensitive), or None when nothing is close."""
    by_lower = {c.lower(): c for c in choices}
    match = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.5)
    if match:
        return by_lower[match[0]]
    # A prefix is a strong hint even when the ratio is low ("prod" → InternalProd).
    hits = [c for low, c in by_lower.items() if word and word.lower() in low]
    return hits[0] if len(hits) == 1 else None
