"""The executor's Reporter over the outbound queue: conversation id → stored reference.

Proactive messages need the conversation reference Teams gave when the conversation last
spoke to the bot (stored by the Teams edge). A conversation with no stored reference, or a
message that cannot be delivered, is logged — a run never fails because chat is down.
"""

from __future__ import annotations

import logging
from typing import Any

from bot.teams.outbound_queue import OutboundQueue, QueueClosed
from bot.teams.proactive import OutboundError
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
        self, conversation_id: str, text: str, card: dict[str, Any] | None
    ) -> str | None:
        ref = await self._ref(conversation_id)
        if ref is None:
            return None
        try:
            return await self._queue.post(ref, text, card)
        except (OutboundError, QueueClosed) as exc:
            log.error("could not post to %s: %s", conversation_id, exc)
            return None

    async def update(
        self,
        conversation_id: str,
        activity_id: str,
        text: str,
        card: dict[str, Any],
        *,
        final: bool = False,
    ) -> None:
        ref = await self._ref(conversation_id)
        if ref is not None:
            self._queue.update(ref, activity_id, text, card, final=final)
