"""What the terminal shows: a live card (rich) on a terminal, a line per step in a pipe,
JSON lines for machines.

Every mode shows the same cards the chat shows (bot/terminal/card_text.py). The live mode
redraws the progress card in place — its facts, a progress bar over the plan's steps and
the per-step table — as the run's Reporter edits it; the plain mode prints each step once
per state it reaches, so a log of it reads like the card's table filling in; the JSON mode
prints one object per line (`event`: message, card, step, result).
"""

from __future__ import annotations

import json
import sys
from typing import Any, Protocol, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from bot.terminal.card_text import Block, card_blocks, plain_lines, step_rows, unmark

# Card colours → terminal styles.
STYLES = {
    "Good": "green",
    "Attention": "bold red",
    "Warning": "yellow",
    "Accent": "cyan",
    "Default": "",
}
# A step in one of these states is behind us (the progress bar counts it).
DONE_WORDS = ("passed", "failed", "skipped", "cancelled", "interrupted")


def progress_of(card: dict[str, Any] | None) -> tuple[int, int]:
    """(steps done, steps in the card) — restore steps included once they are shown."""
    rows = step_rows(card)
    done = sum(1 for _, _, state, _ in rows if any(w in state for w in DONE_WORDS))
    return done, len(rows)


class Display(Protocol):
    def message(self, text: str) -> None: ...
    def card(self, card: dict[str, Any] | None, text: str, *, final: bool) -> None: ...
    def result(self, data: dict[str, Any]) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def close(self) -> None: ...


def rich_blocks(blocks: list[Block]) -> list[RenderableType]:
    out: list[RenderableType] = []
    for block in blocks:
        style = STYLES.get(block.color, "")
        if block.kind == "title":
            out.append(Text(block.text, style=f"bold {style}".strip()))
        elif block.kind == "text":
            out.append(Text(block.text, style="dim" if block.subtle else style))
        elif block.kind == "facts":
            facts = Table.grid(padding=(0, 2))
            facts.add_column(style="bold")
            facts.add_column()
            for key, value in block.pairs:
                facts.add_row(key, value)
            out.append(facts)
        elif block.kind == "table":
            table = Table(*block.headers, show_lines=False, expand=False)
            for row, color in zip(block.rows, block.row_colors, strict=False):
                table.add_row(*row, style=STYLES.get(color or "Default", ""))
            out.append(table)
    return out


class LiveDisplay:
    """A terminal: cards drawn with rich; the run's card redrawn in place as it changes."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self._live: Live | None = None
        self._last: RenderableType | None = None

    def _renderable(self, card: dict[str, Any] | None) -> RenderableType:
        parts = rich_blocks(card_blocks(card))
        done, total = progress_of(card)
        if total:
            bar = Table.grid(padding=(0, 1))
            bar.add_row(ProgressBar(total=total, completed=done, width=40), f"{done}/{total} steps")
            parts.insert(min(2, len(parts)), bar)
        return Group(*parts)

    def message(self, text: str) -> None:
        target = self._live.console if self._live else self.console
        target.print(Text(unmark(text)))

    def card(self, card: dict[str, Any] | None, text: str, *, final: bool) -> None:
        if card is None:
            self.message(text)
            return
        self._last = self._renderable(card)
        if not step_rows(card):
            self.console.print(self._last)  # a plan or a status: printed once
            return
        if self._live is None:
            self._live = Live(self._last, console=self.console, refresh_per_second=8)
            self._live.start(refresh=True)  # drawn now, not at the next edit
        else:
            self._live.update(self._last, refresh=True)
        if final:
            self.close()

    def result(self, data: dict[str, Any]) -> None:
        """Nothing more: the card said it."""

    def pause(self) -> None:
        if self._live is not None:
            self._live.stop()

    def resume(self) -> None:
        if self._live is not None:
            self._live.start(refresh=True)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


class PlainDisplay:
    """A pipe or a file: plain lines; a progress card prints each step as its state moves."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out or sys.stdout
        self._seen: dict[str, str] = {}
        self._headed = False

    def _print(self, line: str) -> None:
        print(line, file=self._out, flush=True)

    def message(self, text: str) -> None:
        self._print(unmark(text))

    def card(self, card: dict[str, Any] | None, text: str, *, final: bool) -> None:
        rows = step_rows(card)
        if not rows:
            for line in plain_lines(card_blocks(card)) if card else [text]:
                self._print(line)
            return
        blocks = card_blocks(card)
        if not self._headed:
            self._headed = True
            for line in plain_lines([b for b in blocks if b.kind in ("title", "facts")]):
                self._print(line)
        for number, step, state, took in rows:
            key = f"{number}. {step}"
            if self._seen.get(key, "⏳ pending") != state:  # the plan was shown already
                self._seen[key] = state
                self._print(f"{key} — {state}{f' ({took})' if took else ''}")
        if final:
            # The end of the card: its outcome lines (note, restore, hosts) under the steps.
            skip = {"title", "facts", "table"}
            for line in plain_lines([b for b in blocks if b.kind not in skip and not b.subtle]):
                self._print(line)

    def result(self, data: dict[str, Any]) -> None:
        """Nothing more: the lines said it."""

    def pause(self) -> None:
        """Nothing to stop."""

    def resume(self) -> None:
        """Nothing to start."""

    def close(self) -> None:
        """Nothing held."""


class JsonDisplay:
    """`--json`: one JSON object per line; the last is the `result`."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out or sys.stdout
        self._seen: dict[str, str] = {}

    def _emit(self, data: dict[str, Any]) -> None:
        print(json.dumps(data, ensure_ascii=False, default=str), file=self._out, flush=True)

    def message(self, text: str) -> None:
        self._emit({"event": "message", "text": text})

    def card(self, card: dict[str, Any] | None, text: str, *, final: bool) -> None:
        rows = step_rows(card)
        if not rows:
            self._emit({"event": "card", "text": text, "lines": plain_lines(card_blocks(card))})
            return
        for number, step, state, took in rows:
            key = f"{number}. {step}"
            if self._seen.get(key) != state:
                self._seen[key] = state
                word = state.split()[-1] if state else ""
                self._emit(
                    {"event": "step", "n": int(number), "step": step, "state": word, "took": took}
                )

    def result(self, data: dict[str, Any]) -> None:
        self._emit({"event": "result", **data})

    def pause(self) -> None:
        """Nothing to stop."""

    def resume(self) -> None:
        """Nothing to start."""

    def close(self) -> None:
        """Nothing held."""


def make_display(json_output: bool, out: TextIO | None = None) -> Display:
    stream = out or sys.stdout
    if json_output:
        return JsonDisplay(stream)
    if stream.isatty():
        return LiveDisplay(Console(file=stream))
    return PlainDisplay(stream)
