"""The runs' Reporter over the outbound queue: conversation id → stored reference → queue.

Proactive messages need the conversation reference Teams gave when the conversation last
spoke to the bot (stored by the Teams edge). Every call only queues: a post returns its
queue key at once and edits of it queue behind it. A conversation with no stored
reference, or a message that cannot be delivered, is logged — a run never fails, nor
waits, because chat is down.

A final card state (a run's end) is also kept in the store until Teams has it
(`keep_final`): the queue lives in this process, and if the process dies while Teams is
down, another instance — or this one, restarted — delivers it (`resume_finals`). When the
queue gives up on one (Teams refused it, or retries ran out), it is released for the next
`resume_finals` pass — of any instance, this one too — instead of being renewed here for as
long as this process lives; after FINAL_ATTEMPTS such give-ups it is logged and dropped.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from adapters.store.rows import PendingFinal
from bot.ports import OnSent
from bot.teams.outbound_queue import OnGaveUp, OutboundQueue, QueueClosed
from commands.context import Services

log = logging.getLogger(__name__)

# Deliveries of one kept final state the queue may give up on before it is dropped: a card
# Teams refuses for good must not be retried forever.
FINAL_ATTEMPTS = 5


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
        on_sent = on_gave_up = None
        if final:
            kept = await self._keep(conversation_id, message, text, card)
            if kept is not None:
                on_sent, on_gave_up = self._sent(kept), self._gave_up(kept)
        try:
            self._queue.update(
                ref, message, text, card, final=final, on_sent=on_sent, on_gave_up=on_gave_up
            )
        except QueueClosed as exc:
            log.error("could not edit %s in %s: %s", message, conversation_id, exc)

    async def _keep(
        self, conversation_id: str, message: str, text: str, card: dict[str, Any] | None
    ) -> int | None:
        """Keep the final state in the store until delivered: its id; None if the store
        failed (the queue still sends it — only a death of this process would lose it then)."""
        # A queue key names a post of this process: another process can edit it only by
        # the Teams id it got; one not delivered yet would go out as a new message.
        activity_id = self._queue.delivered_id(message)
        store = self._services.store
        try:
            return await store.keep_final(
                conversation_id, activity_id, text, json.dumps(card) if card else None,
                message_key=message,
            )  # fmt: skip
        except Exception:
            log.exception("could not keep a final card state in the store")
            return None

    def _sent(self, final_id: int) -> OnSent:
        async def sent(_: str) -> None:
            await self._services.store.final_sent(final_id)

        return sent

    def _gave_up(self, final_id: int) -> OnGaveUp:
        async def gave_up() -> None:
            await self._release(final_id)

        return gave_up

    async def _release(self, final_id: int) -> None:
        """Not delivered: let the next `resume_finals` pass try it again, or drop it."""
        dropped = await self._services.store.final_failed(final_id, FINAL_ATTEMPTS)
        if dropped is not None:
            log.error(
                "a final card state was not delivered after %d attempts; dropped: %s",
                dropped.attempts, dropped.text,
                extra={"conversation_id": dropped.conversation_id},
            )  # fmt: skip

    async def resume_finals(self) -> int:
        """Deliver the final card states a dead process left undelivered (claimed from the
        store, each by one process); how many were queued."""
        finals = await self._services.store.claim_orphaned_finals()
        for final in finals:
            await self._resend(final)
        return len(finals)

    async def _resend(self, final: PendingFinal) -> None:
        ref = await self._ref(final.conversation_id)
        if ref is None:
            await self._release(final.id)  # else it would be ours, renewed, forever
            return
        card = json.loads(final.card_json) if final.card_json else None
        sent, gave_up = self._sent(final.id), self._gave_up(final.id)

        log.info(
            "delivering a final card state left by %s", final.owner,
            extra={"conversation_id": final.conversation_id},
        )  # fmt: skip
        try:
            if final.activity_id is None:
                self._queue.enqueue_post(ref, final.text, card, on_sent=sent, on_gave_up=gave_up)
            else:
                self._queue.update(
                    ref, final.activity_id, final.text, card, final=True, on_sent=sent,
                    on_gave_up=gave_up,
                )  # fmt: skip
        except QueueClosed as exc:
            log.error("could not deliver a kept final state: %s", exc)
