"""The runs' Reporter for the terminal: the run's card and messages go to the screen.

Like the Teams reporter it never waits and never fails a run: a drawing error is logged.
Only the CLI's own conversation is shown; the executor posts nowhere else.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

from bot.ports import OnSent
from bot.terminal.display import Display

log = logging.getLogger(__name__)


class TerminalReporter:
    def __init__(self, display: Display, conversation_id: str) -> None:
        self._display = display
        self._conversation = conversation_id
        self._ids = itertools.count(1)

    async def post(
        self,
        conversation_id: str,
        text: str,
        card: dict[str, Any] | None,
        *,
        on_sent: OnSent | None = None,
    ) -> str | None:
        if conversation_id != self._conversation:
            return None
        self._show(card, text, final=False)
        return f"terminal-{next(self._ids)}"

    async def update(
        self,
        conversation_id: str,
        message: str,
        text: str,
        card: dict[str, Any],
        *,
        final: bool = False,
    ) -> None:
        if conversation_id == self._conversation:
            self._show(card, text, final=final)

    def _show(self, card: dict[str, Any] | None, text: str, *, final: bool) -> None:
        try:
            if card is None:
                self._display.message(text)
            else:
                self._display.card(card, text, final=final)
        except Exception:
            log.exception("could not draw on the terminal")
