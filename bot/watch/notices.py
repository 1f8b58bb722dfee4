"""Notices the break-glass CLI left for Teams, delivered once Teams takes them.

The CLI cannot post to Teams (it has no Teams connection, and Teams may be down): what the
alert conversations must hear — a break-glass approval, a run that failed, a freeze (also
one set in chat) — is kept in the store (`notices`). The bot posts each one to the
environment's alert conversations through the outbound queue, which retries through 429s
and outages; a notice is done once every conversation has it, and one that cannot be
delivered yet is tried again on the next pass (also after a restart). A conversation that
has it is never posted it again. The same pass adopts the OpsGenie pages nobody is sending
any more (a CLI that exited before OpsGenie took its page): they are not left for a restart.
"""

from __future__ import annotations

import asyncio
import logging

from bot.watch.alerts import Alerter
from commands.context import Services

log = logging.getLogger(__name__)

DEFAULT_EVERY_S = 5.0


async def deliver_notices(services: Services, alerter: Alerter) -> int:
    """One pass: post what is pending; the number of notices now fully delivered."""
    closed = 0
    for notice in await services.store.undelivered_notices():
        targets = await alerter.conversations(notice.environment)
        if not targets:
            log.warning(
                "notice %d for %s waits: no alert conversation (subscribe one, or set "
                "alerts.default_conversation_id)",
                notice.id,
                notice.environment,
            )
            continue
        complete = True
        for conversation_id in targets:
            if conversation_id in notice.delivered_to:
                continue
            task = await alerter.enqueue(conversation_id, notice.text, None)
            if task is None or await alerter.delivered(conversation_id, task) is None:
                complete = False
                continue
            await services.store.notice_delivered(notice.id, conversation_id)
        if complete and await services.store.close_notice(notice.id):
            closed += 1
            log.info("notice %d (%s) delivered", notice.id, notice.kind)
    return closed


async def notice_loop(services: Services, alerter: Alerter, every_s: float) -> None:
    """Deliver at start, then every `every_s`; a failing pass is logged, never fatal."""
    while True:
        try:
            await deliver_notices(services, alerter)
            await alerter.adopt()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivering notices failed; trying again in %.0f s", every_s)
        await asyncio.sleep(every_s)
