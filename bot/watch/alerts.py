"""Raise, remind, resolve: the watcher's decisions carried out in Teams and outside it.

Order of a raise: the alert row (the unique index makes it once-only, across restarts), the
audit line, the card queued on the outbound queue for each alert conversation, and only
then OpsGenie and the webhook, in background tasks (bot/forwarder.py): a slow, failing or
hanging sink never blocks or delays a Teams post.
Every Teams post and edit goes through the per-conversation outbound queue (pacing, 429
Retry-After, 5xx backoff). Cards are edited for everyone, final, on silence and recovery.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Sequence
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from adapters.smoke import CheckResult
from adapters.store.watch_rows import Alert
from bot.forwarder import Forwarder
from bot.run_alert_record import new_alert_id
from bot.teams.outbound_queue import OutboundQueue, QueueClosed
from bot.teams.proactive import OutboundError
from bot.teams.reporter import QueueReporter
from commands.cards.alert import alert_text, check_line, failing, render_alert_card
from commands.context import Services
from commands.timefmt import show
from commands.watch_logic import duration_words

log = logging.getLogger(__name__)


def checks_of(results: Sequence[CheckResult]) -> list[dict[str, Any]]:
    return [asdict(r) for r in results]


class Alerter:
    """Carries out raise / remind / resolve for the watcher, and edits alert cards."""

    def __init__(
        self,
        services: Services,
        queue: OutboundQueue,
        reporter: QueueReporter,
        forwarder: Forwarder | None = None,
    ) -> None:
        self.services = self._services = services
        self._queue = queue
        self._reporter = reporter
        self._forwarder = forwarder or Forwarder(services)

    # --- where alerts go -------------------------------------------------------------------

    async def conversations(self, environment: str) -> list[str]:
        """The subscribed conversations, else the configured default, else none."""
        subscribed = await self._services.store.subscribers(environment)
        default = self._services.config.alerts.default_conversation_id
        return subscribed or ([default] if default else [])

    async def enqueue(
        self, conversation_id: str, text: str, card: dict[str, Any] | None
    ) -> asyncio.Task[str] | None:
        """Queue a post now; the task ends with its activity id. None: nowhere to post."""
        stored = await self._services.store.get_conversation_ref(conversation_id)
        if stored is None:
            log.warning("no conversation reference for %s: alert not posted", conversation_id)
            return None
        task = asyncio.create_task(self._queue.post(stored.ref_json, text, card))
        await asyncio.sleep(0)  # let the post take its place in the conversation's lane
        return task

    async def delivered(self, conversation_id: str, task: asyncio.Task[str]) -> str | None:
        try:
            return await task
        except (OutboundError, QueueClosed) as exc:
            log.error("alert post to %s not delivered: %s", conversation_id, exc)
            return None

    # --- the three actions -----------------------------------------------------------------

    async def raise_alert(
        self,
        environment: str,
        results: Sequence[CheckResult],
        failing_since: datetime,
        consecutive: int,
    ) -> Alert | None:
        """Open, record and post the alert; None when one is open already (no duplicate)."""
        services = self._services
        now = services.now()
        checks = checks_of(results)
        alert_id = new_alert_id()
        if not await services.store.open_alert(alert_id, environment, now, failing_since, checks):
            return None
        alert = await services.store.get_alert(alert_id)
        assert alert is not None
        targets = await self.conversations(environment)
        await services.audit.append(
            "AlertRaised",
            environment=environment,
            status="open",
            detail={
                "alert_id": alert_id,
                "failing": [check_line(c) for c in failing(checks)],
                "failing_since": failing_since.isoformat(),
                "consecutive_failures": consecutive,
                "conversations": targets,
            },
        )
        await services.timeline.append(
            f"alert {alert_id} raised: {environment} smoke failed {consecutive} times in a row "
            f"since {show(failing_since, services.config.tz)}"
        )
        if not targets:
            log.warning(
                "alert %s for %s has no conversation: `subscribe %s` in Teams, or set "
                "alerts.default_conversation_id",
                alert_id,
                environment,
                environment,
            )
        card = render_alert_card(alert, services.config.tz, now)
        posts = [(c, await self.enqueue(c, alert_text(alert), card)) for c in targets]
        self._forwarder.forward("raised", alert)  # after the Teams posts are queued, never before
        for conversation_id, task in posts:
            activity_id = None if task is None else await self.delivered(conversation_id, task)
            if activity_id:
                await services.store.add_alert_card(alert_id, conversation_id, activity_id)
        return alert

    async def remind(self, alert_id: str, results: Sequence[CheckResult]) -> None:
        services = self._services
        now = services.now()
        await services.store.set_alert_checks(alert_id, checks_of(results))
        await services.store.mark_alert_reminded(alert_id, now)
        alert = await services.store.get_alert(alert_id)
        if alert is None:
            return
        lasting = duration_words(now - alert.failing_since)
        detail = "; ".join(check_line(c) for c in failing(alert.checks)) or "smoke failing"
        await services.audit.append(
            "AlertReminded",
            environment=alert.environment,
            status="open",
            detail={"alert_id": alert.id, "failing_for": lasting, "failing": detail},
        )
        text = (
            f"⏰ {alert.environment} is still failing after {lasting} (alert {alert.id}): "
            f"{detail}. Start a rollback from the alert card, or silence it there for 1 h."
        )
        await self.refresh_cards(alert, final=False)
        for conversation_id in await self._where_posted(alert):
            task = await self.enqueue(conversation_id, text, None)
            if task is not None:
                await self.delivered(conversation_id, task)

    async def resolve(
        self, alert_id: str, after: timedelta, results: Sequence[CheckResult]
    ) -> None:
        services = self._services
        now = services.now()
        if not await services.store.resolve_alert(alert_id, now):
            return
        alert = await services.store.get_alert(alert_id)
        if alert is None:
            return
        lasting = duration_words(after)
        await services.audit.append(
            "AlertResolved",
            environment=alert.environment,
            status="resolved",
            duration_ms=int(after.total_seconds() * 1000),
            detail={"alert_id": alert.id, "resolved_after": lasting},
        )
        await services.timeline.append(
            f"alert {alert.id} resolved: {alert.environment} smoke passes again after {lasting}"
        )
        text = (
            f"✅ {alert.environment} recovered: resolved after {lasting} (alert {alert.id}); "
            f"all {len(results)} checks pass again."
        )
        await self.refresh_cards(alert, final=True)
        posts = [(c, await self.enqueue(c, text, None)) for c in await self._where_posted(alert)]
        self._forwarder.forward("resolved", alert)
        for conversation_id, task in posts:
            if task is not None:
                await self.delivered(conversation_id, task)

    async def refresh_cards(self, alert: Alert, *, final: bool) -> None:
        """Re-render the alert card in place, for everyone, wherever it was posted."""
        card = render_alert_card(alert, self._services.config.tz, self._services.now())
        for posted in alert.cards:
            await self._reporter.update(
                posted.conversation_id, posted.activity_id, alert_text(alert), card, final=final
            )

    async def _where_posted(self, alert: Alert) -> list[str]:
        posted = list(dict.fromkeys(c.conversation_id for c in alert.cards))
        return posted or await self.conversations(alert.environment)

    async def mark_paused(self, alert: Alert, run_id: str | None) -> None:
        """Say on the alert's cards that the watch is paused by a run (or no longer is)."""
        await self._services.store.set_alert_paused(alert.id, run_id)
        fresh = await self._services.store.get_alert(alert.id)
        if fresh is not None:
            await self.refresh_cards(fresh, final=False)

    def forward(self, event: str, alert: Alert) -> None:
        """Send `event` of `alert` to OpsGenie and the webhook, in the background."""
        self._forwarder.forward(event, alert)

    async def resume(self) -> None:
        """At start: OpsGenie creates a stopped bot had not got accepted are sent again."""
        await self._forwarder.resume()

    async def adopt(self) -> int:
        """While running: OpsGenie creates no process is sending any more (`Forwarder.adopt`)."""
        return await self._forwarder.adopt()

    def spawn(self, work: Coroutine[Any, Any, Any], name: str) -> None:
        """Run `work` in the background; `close()` waits for it (briefly) at shutdown."""
        self._forwarder.spawn(work, name)

    async def close(self) -> None:
        await self._forwarder.close()
