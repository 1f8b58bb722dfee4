"""A break-glass approval is announced where the environment's alerts go, and logged.

Somebody approved a rollback or deploy alone, overriding the two-person rule or the
self-approval rule: the people who watch the environment hear of it at once, not in the
next audit review. Posted through the outbound queue like an alert (bot/watch/alerts.py);
a conversation that cannot be reached costs the notice there, never the run.
"""

from __future__ import annotations

import logging

from adapters.store.rows import Request
from bot.watch.alerts import Alerter
from commands.approvals import break_glass_notice
from commands.context import Services

log = logging.getLogger(__name__)


def notice_text(request: Request) -> str:
    """The announcement (commands/approvals.py words it: the CLI leaves the same one)."""
    return break_glass_notice(request)


class BreakGlassNotice:
    def __init__(self, services: Services, alerter: Alerter) -> None:
        self._services = services
        self._alerter = alerter

    async def announce(self, request: Request) -> None:
        text = notice_text(request)
        log.warning("%s", text)
        targets = await self._alerter.conversations(request.environment)
        if not targets:
            log.warning(
                "break-glass approval %s not announced: no alert conversation for %s",
                request.id,
                request.environment,
            )
        for conversation_id in targets:
            task = await self._alerter.enqueue(conversation_id, text, None)
            if task is not None:
                self._alerter.spawn(self._alerter.delivered(conversation_id, task), "break-glass")
