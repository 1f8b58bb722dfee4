"""Card clicks: Approve / Reject / Break glass on an approval card → a decision, the card
for everyone, a run.

The invoke is answered at once with the card the clicker should see; everyone else's copy
is edited through the outbound queue (also after one approval of several: the card shows
"1 of 2 approvals"); an approval hands the request to the executor and returns without
waiting for it; a break-glass approval is also announced (`announce`, wired to the
environment's alert conversations in bot/server.py).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from adapters.store.rows import Request
from bot.ports import Reporter, RunSubmitter
from bot.teams.activities import CardActionError, CardActionHandler, CardActionResult, CardReply
from commands.approvals import VERBS, approval_policy, decide
from commands.bluegreen.model import SWITCHBACK_VERB
from commands.cards.alert import ALERT_VERBS
from commands.cards.requests import render_request_card
from commands.context import Services
from commands.freeze import request_freezes
from commands.types import Actor

log = logging.getLogger(__name__)

DECISION_VERBS = VERBS
Announce = Callable[[Request], Awaitable[None]]


class CardActions:
    """The CardActionHandler the Teams edge calls for `adaptiveCard/action` and Submit."""

    def __init__(
        self,
        services: Services,
        submit_run: RunSubmitter,
        reporter: Reporter,
        alert_actions: CardActionHandler | None = None,
        announce_break_glass: Announce | None = None,
    ) -> None:
        self._services = services
        self._submit_run = submit_run
        self._reporter = reporter
        self._alert_actions = alert_actions  # the alert card's verbs (bot/watch/alert_clicks.py)
        self._announce = announce_break_glass

    async def __call__(
        self,
        verb: str,
        data: dict[str, Any],
        actor: Actor,
        tenant_id: str | None,
        conversation_id: str,
        reply_to_id: str | None,
        correlation_id: str,
    ) -> CardActionResult:
        if verb == SWITCHBACK_VERB:
            return await self._switch_back(data, actor, tenant_id, correlation_id)
        if verb in ALERT_VERBS and self._alert_actions is not None:
            return await self._alert_actions(
                verb, data, actor, tenant_id, conversation_id, reply_to_id, correlation_id
            )
        if verb not in DECISION_VERBS:
            await self._services.audit.append(
                "DecisionRefused",
                actor={"name": actor.name, "aad_object_id": actor.aad_object_id},
                status="BadRequest",
                detail={"verb": verb[:40], "correlation_id": correlation_id},
            )
            return CardActionError("BadRequest", "This button is not one I know; nothing was run.")
        decision = await decide(self._services, verb, data, actor, tenant_id)
        request = decision.request
        card = (
            render_request_card(
                request,
                self._services.config.tz,
                self._services.now(),
                break_glass=approval_policy(self._services.config, request).break_glass,
                freezes=await request_freezes(self._services, request),
            )
            if request is not None
            else None
        )
        if decision.outcome == "expired" and request is not None:
            self._services.bluegreen.request_decided(request.id)  # a flow waiting on it ends
        if decision.outcome in ("refused", "expired"):
            # Expired, or frozen after the card was posted: everyone's copy says so now.
            shown = decision.outcome == "expired" or decision.code == "Frozen"
            if shown and card is not None and request is not None:
                await self._edit_for_everyone(
                    request.conversation_id,
                    request.card_activity_id or reply_to_id,
                    card,
                    f"{request.id}: {'expired' if decision.outcome == 'expired' else 'frozen'}",
                )
            return CardActionError(decision.code, decision.message)
        if request is None or card is None:  # only refusals come without a request
            return CardActionError("NotFound", "That request no longer exists.")
        if decision.outcome in ("approved", "rejected", "partial"):
            await self._edit_for_everyone(
                request.conversation_id,
                request.card_activity_id or reply_to_id,
                card,
                f"{request.id}: {request.state}",
            )
        if decision.break_glass and self._announce is not None:
            await self._announce(request)
        if decision.outcome == "rejected":
            self._services.bluegreen.request_decided(request.id)
        if decision.outcome == "approved" and not self._submit_run(request):
            return CardActionError(
                "Unavailable",
                "The bot is shutting down; the request is approved but will not run now. "
                "Ask again after the restart.",
                status_code=503,
            )
        return CardReply(card)

    async def _switch_back(
        self, data: dict[str, Any], actor: Actor, tenant_id: str | None, correlation_id: str
    ) -> CardActionResult:
        """The flow card's Switch back button: approvers of the pair, once (the flows decide)."""
        flow_id = data.get("flow_id")
        if tenant_id not in self._services.config.teams.allowed_tenants:
            return CardActionError("Forbidden", "This bot is not enabled for your organization.")
        if not isinstance(flow_id, str) or not flow_id.startswith("BG-") or len(flow_id) > 20:
            await self._services.audit.append(
                "DecisionRefused",
                actor={"name": actor.name, "aad_object_id": actor.aad_object_id},
                status="BadRequest",
                detail={"verb": SWITCHBACK_VERB, "correlation_id": correlation_id},
            )
            return CardActionError(
                "BadRequest", "This card's data is not valid (unknown or tampered); nothing ran."
            )
        answer = await self._services.bluegreen.switch_back(flow_id, actor, tenant_id)
        if answer.card is None:
            return CardActionError(answer.code, answer.text)
        return CardReply(answer.card)

    async def _edit_for_everyone(
        self,
        conversation_id: str | None,
        activity_id: str | None,
        card: dict[str, Any],
        text: str,
    ) -> None:
        if not (conversation_id and activity_id):
            return
        try:
            await self._reporter.update(conversation_id, activity_id, text, card, final=True)
        except Exception:
            # The decision is taken and recorded; chat trouble must not keep it from running.
            log.exception("could not queue the decided card %s", activity_id)
