"""Alert card clicks: "Start rollback" and "Silence 1 h".

Start rollback asks for the rollback exactly as typing `rollback ENVIRONMENT` in that conversation
would (same dispatcher: tenant, role, plan, approval card — nothing duplicated), in the
background: the invoke is answered at once, because reading the hosts for the plan can take
longer than Teams waits for an invoke before it retries the click. The approval card is
posted into the conversation the click came from — for a channel alert, the alert post's
thread. A second click while that request is pending (or being made) asks for nothing more.
Silence is decided at once and the card changes for everyone.
"""

from __future__ import annotations

import logging
from typing import Any

from adapters.store.watch_rows import Alert
from bot.teams.activities import CardActionError, CardActionResult, CardReply
from bot.teams.reporter import QueueReporter
from bot.watch.alerts import Alerter
from commands.alert_actions import AlertRefusal, check_action, silence
from commands.cards.alert import START_ROLLBACK, render_alert_card
from commands.context import Services
from commands.subscribe import channel_reference, channel_root
from commands.types import Actor, Dispatcher, Invocation

log = logging.getLogger(__name__)


class AlertActions:
    """The card handler for the alert card's verbs (bot/teams/card_clicks.py routes them here)."""

    def __init__(
        self,
        services: Services,
        dispatcher: Dispatcher,
        alerter: Alerter,
        reporter: QueueReporter,
    ) -> None:
        self._services = services
        self._dispatcher = dispatcher
        self._alerter = alerter
        self._reporter = reporter
        self._requesting: set[str] = set()  # alert ids with a rollback request being made

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
        checked = await check_action(self._services, verb, data, actor, tenant_id)
        if isinstance(checked, AlertRefusal):
            return CardActionError(checked.code, checked.message)
        alert = checked.alert
        if checked.action.verb == START_ROLLBACK:
            return await self._start_rollback(
                alert, actor, tenant_id, conversation_id, correlation_id
            )
        silenced = await silence(self._services, checked, actor)
        if isinstance(silenced, AlertRefusal):
            return CardActionError(silenced.code, silenced.message)
        await self._alerter.refresh_cards(silenced, final=True)
        return CardReply(self._card(silenced))

    def _card(self, alert: Alert) -> dict[str, Any]:
        return render_alert_card(alert, self._services.config.tz, self._services.now())

    async def _start_rollback(
        self,
        alert: Alert,
        actor: Actor,
        tenant_id: str | None,
        conversation_id: str,
        correlation_id: str,
    ) -> CardActionResult:
        existing = await self._services.store.active_request_from(f"alert:{alert.id}")
        if existing is not None or alert.id in self._requesting:
            which = f" ({existing.id}, {existing.state})" if existing else ""
            return CardActionError(
                "AlreadyRequested",
                f"A rollback of {alert.environment} was already requested from this alert"
                f"{which}: use its approval card in this conversation.",
            )
        self._requesting.add(alert.id)
        invocation = Invocation(
            text=f"rollback {alert.environment}",
            actor=actor,
            tenant_id=tenant_id,
            conversation_id=conversation_id,
            conversation_type=await self._kind(conversation_id),
            correlation_id=correlation_id,
        )
        self._alerter.spawn(self._request(alert, invocation), f"rollback-from:{alert.id}")
        return CardReply(self._card(alert))

    async def _kind(self, conversation_id: str) -> str:
        stored = await self._services.store.get_conversation_ref(conversation_id)
        if stored is not None:
            return str(stored.kind)
        return "channel" if channel_root(conversation_id) != conversation_id else "unknown"

    async def _request(self, alert: Alert, invocation: Invocation) -> None:
        try:
            await self._postable(invocation.conversation_id)
            reply = await self._dispatcher.handle(invocation)
            request_id = reply.extra.get("request_id")
            if isinstance(request_id, str):
                await self._services.store.set_request_origin(request_id, f"alert:{alert.id}")
                await self._services.store.set_alert_rollback(alert.id, request_id)
            await self._reporter.post(
                invocation.conversation_id, reply.text, reply.card, on_sent=reply.on_sent
            )
            fresh = await self._services.store.get_alert(alert.id)
            if fresh is not None and fresh.state == "open":
                await self._alerter.refresh_cards(fresh, final=False)
        except Exception:
            log.exception("rollback request from alert %s failed", alert.id)
        finally:
            self._requesting.discard(alert.id)

    async def _postable(self, conversation_id: str) -> None:
        """Make sure a reply can be posted where the click came from.

        A click on a channel alert comes from the alert post's thread
        (`<channel>;messageid=<alert post>`), which the bot was never addressed in: its
        reference is the channel's, retargeted at that thread (same service URL).
        """
        store = self._services.store
        if await store.get_conversation_ref(conversation_id) is not None:
            return
        channel = await store.get_conversation_ref(channel_root(conversation_id))
        if channel is None:
            return
        await store.save_conversation_ref(
            conversation_id,
            channel_reference(channel.ref_json, conversation_id),
            "channel",
            channel.service_url,
            channel.tenant_id,
        )
