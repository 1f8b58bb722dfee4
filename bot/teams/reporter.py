"""The runs' Reporter over the outbound queue: conversation id → stored reference → queue.

Proactive messages need the conversation reference Teams gave when the conversation last
spoke to the bot (stored by the Teams edge). Every call only queues: a post returns its
queue key at once and edits of it queue behind it. A conversation with no stored
reference, or a message that cannot be delivered, is logged — a run never fails, nor
waits, because chat is down.
"""

from __future__ import annotations

import logging
from typing import Any

from bot.ports import OnSent
from bot.teams.outbound_queue import OutboundQueue, QueueClosed
from commands.context import Services

log = logging.getLogger(__name__)


class QueueReporter:
    def __init__(self, services: Services, queue: OutboundQueue) -> None:
        self._services = services
        self._queue = queue

    async def _ref(self, conversation_id: str) -> str | None:
        stored = await self._services.store.get_conversation_ref(conversation_id)
        if stored is None:
            log.warning("no conversation reference for %s: message not sent", conversation_id)
            return None
        return stored.ref_json

    async def post(
        self,
        conversation_id: str,
        text: str,
        card: dict[str, Any] | None,
        *,
        on_sent: OnSent | None = None,
    ) -> str | None:
        ref = await self._ref(conversation_id)
        if ref is None:
            return None
        try:
            return self._queue.enqueue_post(ref, text, card, on_sent=on_sent)
        except QueueClosed as exc:
            log.error("could not post to %s: %s", conversation_id, exc)
            return None

    async def update(
        self,
        conversation_id: str,
        message: str,
        text: str,
        card: dict[str, Any],
        *,
        final: bool = False,
    ) -> None:
        ref = await self._ref(conversation_id)
        if ref is None:
            return
        try:
            self._queue.update(ref, message, text, card, final=final)
        except QueueClosed as exc:
            log.error("could not edit %s in %s: %s", message, conversation_id, exc)
