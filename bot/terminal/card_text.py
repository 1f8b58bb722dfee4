"""An Adaptive Card as the terminal shows it: the same words, in blocks (pure).

The CLI shows the cards chat shows — the approval card's plan, the progress card's steps,
status, smoke, history — so an operator reads the same words in both places. Only what our
renderers emit is understood: TextBlock, FactSet, Table, Container; inputs and buttons are
left out (the terminal asks its own questions). Teams' markdown marks are taken off, and so
are the backslashes `plain()` puts before punctuation.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

_ESCAPED = re.compile(r"\\([!-/:-@\[-`{-~])")


def unmark(text: str) -> str:
    """Teams markdown → terminal text: no `**`, no escaping backslashes."""
    return _ESCAPED.sub(r"\1", text.replace("**", ""))


@dataclass(frozen=True)
class Block:
    """One piece of a card: a title, a line of text, facts, or a table."""

    kind: str  # title | text | facts | table
    text: str = ""
    color: str = "Default"
    subtle: bool = False
    pairs: tuple[tuple[str, str], ...] = ()
    headers: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    row_colors: tuple[str | None, ...] = field(default=())


def _cell_text(cell: dict[str, Any]) -> tuple[str, str | None]:
    items = [i for i in cell.get("items", []) if i.get("type") == "TextBlock"]
    text = " ".join(unmark(str(i.get("text", ""))) for i in items)
    color = next((i["color"] for i in items if "color" in i), None)
    return text, color


def _walk(elements: list[dict[str, Any]]) -> Iterator[Block]:
    for element in elements:
        kind = element.get("type")
        if kind == "TextBlock":
            text = unmark(str(element.get("text", "")))
            title = element.get("size") in ("Large", "Medium") or element.get("weight") == "Bolder"
            yield Block(
                "title" if title else "text",
                text,
                str(element.get("color", "Default")),
                bool(element.get("isSubtle")),
            )
        elif kind == "FactSet":
            pairs = tuple(
                (unmark(str(f.get("title", ""))), unmark(str(f.get("value", ""))))
                for f in element.get("facts", [])
            )
            yield Block("facts", pairs=pairs)
        elif kind == "Table":
            rows = [[_cell_text(c) for c in r.get("cells", [])] for r in element.get("rows", [])]
            if not rows:
                continue
            header, body = (rows[0], rows[1:]) if element.get("firstRowAsHeader") else ([], rows)
            yield Block(
                "table",
                headers=tuple(t for t, _ in header),
                rows=tuple(tuple(t for t, _ in r) for r in body),
                row_colors=tuple(next((c for _, c in r if c), None) for r in body),
            )
        elif kind in ("Container", "Column"):
            yield from _walk(element.get("items", []))
        elif kind == "ColumnSet":
            for column in element.get("columns", []):
                yield from _walk(column.get("items", []))


def card_blocks(card: dict[str, Any] | None) -> list[Block]:
    """The card's body as blocks, in order; [] for no card."""
    return list(_walk(card.get("body", []))) if card else []


def plain_lines(blocks: list[Block]) -> list[str]:
    """The blocks as plain lines (no colour, no box): for pipes, logs and tests."""
    lines: list[str] = []
    for block in blocks:
        if block.kind in ("title", "text"):
            lines.extend(block.text.splitlines() or [""])
        elif block.kind == "facts":
            width = max((len(k) for k, _ in block.pairs), default=0)
            lines.extend(f"  {k.ljust(width)}  {v}" for k, v in block.pairs)
        elif block.kind == "table":
            lines.extend(table_lines(block))
    return lines


def table_lines(block: Block) -> list[str]:
    columns = [block.headers, *block.rows] if block.headers else list(block.rows)
    if not columns:
        return []
    count = max(len(r) for r in columns)
    widths = [max(len(r[i]) if i < len(r) else 0 for r in columns) for i in range(count)]

    def line(row: tuple[str, ...]) -> str:
        return "  " + "  ".join(v.ljust(widths[i]) for i, v in enumerate(row)).rstrip()

    out = [line(block.headers)] if block.headers else []
    out += [line(r) for r in block.rows]
    return out


def step_rows(card: dict[str, Any] | None) -> list[tuple[str, str, str, str]]:
    """The (#, step, state, time) rows of a progress card's step tables, restore included."""
    rows: list[tuple[str, str, str, str]] = []
    for block in card_blocks(card):
        if block.kind == "table" and block.headers[:3] == ("#", "Step", "State"):
            rows.extend((r[0], r[1], r[2], r[3] if len(r) > 3 else "") for r in block.rows)
    return rows
