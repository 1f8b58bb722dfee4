"""After `lock` or `unlock` in chat: every pending approval card that the freeze concerns is
edited for everyone, so it shows (or no longer shows) "frozen by X since T: REASON" before
anyone clicks Approve.

A Dispatcher around the real one (like bot/runs/policy_runs.py): the command decides and
records the freeze; this only redraws cards. The cards are edited through the outbound
queue, bound once the app has it (`connect`). A `lock` from the break-glass CLI has no
Teams connection: the cards there show the freeze at the next click (card_clicks.py).
"""

from __future__ import annotations

import logging

from adapters.store.rows import Request
from bot.ports import Reporter
from commands.approvals import approval_policy
from commands.cards.requests import render_request_card
from commands.context import Services
from commands.freeze import request_freezes
from commands.types import Dispatcher, Invocation, Reply

log = logging.getLogger(__name__)


class FreezeCards:
    """A Dispatcher that redraws the pending approval cards of a (un)frozen environment."""

    def __init__(self, inner: Dispatcher, services: Services) -> None:
        self._inner = inner
        self._services = services
        self._reporter: Reporter | None = None

    def connect(self, reporter: Reporter) -> None:
        self._reporter = reporter

    async def handle(self, invocation: Invocation) -> Reply:
        reply = await self._inner.handle(invocation)
        environment = reply.extra.get("freeze_changed")
        if reply.refused or not isinstance(environment, str) or self._reporter is None:
            return reply
        try:
            for request in await self._pending(environment):
                await self._redraw(self._reporter, request)
        except Exception:
            # The freeze is recorded and enforced on every click; a card left as it was
            # must not turn the command into an error.
            log.exception("could not redraw the approval cards of %s", environment)
        return reply

    async def _pending(self, environment: str) -> list[Request]:
        """Its requests, and the blue/green switches of the pairs it is a slot of."""
        store, config = self._services.store, self._services.config
        pairs = [name for name, pair in config.pairs.items() if environment in pair.slots]
        found = await store.pending_requests(environment)
        for pair in pairs:
            found += await store.pending_requests(pair)
        return found

    async def _redraw(self, reporter: Reporter, request: Request) -> None:
        if not (request.conversation_id and request.card_activity_id):
            return
        services = self._services
        card = render_request_card(
            request,
            services.config.tz,
            services.now(),
            break_glass=approval_policy(services.config, request).break_glass,
            freezes=await request_freezes(services, request),
        )
        await reporter.update(
            request.conversation_id, request.card_activity_id, f"{request.id}: pending", card
        )
