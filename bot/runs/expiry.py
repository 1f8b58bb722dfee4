"""The expiry sweep: pending requests past their deadline become `expired`.

Every `sweep_s` seconds; their approval card turns "Expired" for everyone.
"""

from __future__ import annotations

import asyncio
import logging

from bot.ports import Reporter
from commands.cards.requests import render_request_card
from commands.context import Services

log = logging.getLogger(__name__)

DEFAULT_SWEEP_S = 15.0


async def expire_due(services: Services, reporter: Reporter) -> list[str]:
    """Expire every pending request past its deadline; returns their ids."""
    expired = []
    for request in await services.store.expired_pending(services.now()):
        if not await services.store.transition_request(request.id, ["pending"], "expired"):
            continue  # decided in the meantime: that decision stands
        expired.append(request.id)
        await services.audit.append(
            "Expired", environment=request.environment, request_id=request.id, status="expired"
        )
        await services.timeline.append(
            f"{request.command} {request.environment} → {request.version} expired unapproved "
            f"({request.id})"
        )
        fresh = await services.store.get_request(request.id)
        if fresh and fresh.conversation_id and fresh.card_activity_id:
            card = render_request_card(fresh, services.config.tz, services.now())
            await reporter.update(
                fresh.conversation_id,
                fresh.card_activity_id,
                f"{fresh.id}: expired",
                card,
                final=True,
            )
        services.bluegreen.request_decided(request.id)  # a flow waiting on it ends
    return expired


async def expiry_loop(
    services: Services, reporter: Reporter, sweep_s: float = DEFAULT_SWEEP_S
) -> None:
    """Run until cancelled; a failing sweep is logged and retried at the next tick."""
    while True:
        try:
            await expire_due(services, reporter)
        except Exception:
            log.exception("expiry sweep failed")
        await asyncio.sleep(sweep_s)
