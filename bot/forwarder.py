"""OpsGenie and the webhook, in the background: an alert's raise and recovery forwarded.

Each delivery is its own task, started after the Teams posts are queued, so a slow,
failing or hanging target never delays Teams. Outcomes are values (adapters.alert_sinks):
each is logged when it fails and audited either way (`AlertForwarded`, with attempts,
HTTP status and reason); OpsGenie's state is kept on the alert (created, closed, *-failed).
A create OpsGenie did not take for a reason that may pass (no answer, 429, 5xx) is sent
again, `resend_s` later and then doubling, until it is accepted or the alert resolves; the
audit says which (`delivered` after N rounds, or `abandoned`). A refusal (a wrong key) is
not resent. At shutdown deliveries get a short grace, then are cancelled; a create still
waiting for its next round is sent again at the next start (`resume`). While the bot runs,
creates no process is sending any more — the break-glass CLI's page when it had to exit
before OpsGenie took it, a dead instance's — are adopted once each (`adopt`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from datetime import timedelta
from typing import Any

from adapters.alert_sinks import AlertNotice, AlertSink, Delivery, SinkPolicy
from adapters.opsgenie import OpsGenieSink
from adapters.store.watch_rows import Alert
from adapters.webhook import WebhookSink
from commands.cards.alert import check_line, failing
from commands.config import Config, secret
from commands.context import Services

log = logging.getLogger(__name__)

RESEND_CAP_S = 900.0
# An alert younger than this may still be on its way to this process's own `forward` (the
# raise posts to Teams first): `adopt` leaves it alone.
ADOPT_AFTER_S = 30.0


def alias_of(alert: Alert) -> str:
    """OpsGenie's dedupe key: one per incident, readable in its UI."""
    return f"mcms-{alert.environment}-{alert.id}"


def sinks_for(config: Config, environment: str) -> list[AlertSink]:
    """The outside alert targets of one environment; keys are read now, at the moment of use."""
    sinks: list[AlertSink] = []
    og, hook = config.alerts.opsgenie, config.alerts.webhook
    if og is not None:
        sinks.append(
            OpsGenieSink(
                str(og.base_url),
                secret(og.api_key_env),
                key_env=og.api_key_env,
                priority=og.priority.get(environment, og.default_priority),
                tags=og.tags,
                policy=SinkPolicy(og.attempts, og.timeout_s, og.backoff_s),
            )
        )
    if hook is not None:
        token = secret(hook.token_env) if hook.token_env else None
        policy = SinkPolicy(hook.attempts, hook.timeout_s, hook.backoff_s)
        sinks.append(WebhookSink(str(hook.url), token, policy))
    return sinks


class Forwarder:
    """Background deliveries to the outside alert targets (see the module doc)."""

    def __init__(
        self, services: Services, sinks: Callable[[str], Sequence[AlertSink]] | None = None
    ) -> None:
        self._services = services
        self._sinks = sinks or (lambda env: sinks_for(services.config, env))
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = asyncio.Event()
        # Alerts whose raise this process has forwarded: its own tasks resend those.
        self._raised: set[str] = set()
        self._resumed = False  # adopting waits for `resume`, which sends a restart's own

    def spawn(self, work: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def forward(self, event: str, alert: Alert, only: str | None = None) -> None:
        """Deliver `event` ("raised" | "resolved") to every target (or the one named
        `only`), each in its own task."""
        if event == "raised":
            self._raised.add(alert.id)
        for sink in self._sinks(alert.environment):
            if only is None or sink.name == only:
                name = f"{sink.name}:{event}:{alert.id}"
                self.spawn(self._forward_one(sink, event, alert), name)

    async def resume(self) -> None:
        """At start: send again the OpsGenie creates a stopped bot had not got accepted."""
        for alert in await self._services.store.alerts_to_forward():
            self.forward("raised", alert, only="opsgenie")
        self._resumed = True

    async def adopt(self, older_than_s: float = ADOPT_AFTER_S) -> int:
        """While running: send the OpsGenie creates of open alerts this process never
        forwarded and OpsGenie has not taken (the CLI exited first, or an instance died),
        once each — then they resend like our own. OpsGenie dedupes creates on the alias,
        so two instances adopting one alert page once. How many were adopted."""
        if not self._resumed:
            return 0
        cutoff = self._services.now() - timedelta(seconds=older_than_s)
        adopted = 0
        for alert in await self._services.store.alerts_to_forward():
            if alert.id in self._raised or alert.opened_at > cutoff:
                continue
            log.warning(
                "OpsGenie has not taken alert %s (%s): sending it", alert.id, alert.environment
            )
            self.forward("raised", alert, only="opsgenie")
            adopted += 1
        return adopted

    async def _forward_one(self, sink: AlertSink, event: str, alert: Alert) -> None:
        services = self._services
        notice = notice_of(alert, event)
        rounds = 0
        while True:
            rounds += 1
            try:
                delivery = await (
                    sink.raised(notice) if event == "raised" else sink.resolved(notice)
                )
            except Exception:
                log.exception("%s %s of alert %s failed unexpectedly", sink.name, event, alert.id)
                return
            resend = event == "raised" and delivery.worth_resending
            # Audited: the first round, and the round that ends it (accepted or refused).
            if rounds == 1 or delivery.ok or not resend:
                await self._settle(sink, event, alert, notice, delivery, rounds, resend)
            if delivery.ok or not resend:
                return
            if not await self._rest(sink, rounds):
                return  # shutting down: `resume` sends it again at the next start
            fresh = await services.store.get_alert(alert.id)
            if fresh is None or fresh.state != "open":
                await self._abandon(sink, alert, notice, rounds)
                return

    async def _rest(self, sink: AlertSink, rounds: int) -> bool:
        """Wait before the next round; False when the bot is shutting down."""
        og = self._services.config.alerts.opsgenie
        first = og.resend_s if og is not None and sink.name == "opsgenie" else 60.0
        delay = min(RESEND_CAP_S, first * 2 ** (rounds - 1))
        try:
            await asyncio.wait_for(self._closing.wait(), delay)
        except TimeoutError:
            return True
        return False

    async def _abandon(
        self, sink: AlertSink, alert: Alert, notice: AlertNotice, rounds: int
    ) -> None:
        services = self._services
        if sink.name == "opsgenie":
            await services.store.set_alert_opsgenie(alert.id, notice.alias, "created-abandoned")
        await services.audit.append(
            "AlertForwarded",
            environment=alert.environment,
            status="abandoned",
            detail={
                "sink": sink.name,
                "event": "raised",
                "alert_id": alert.id,
                "alias": notice.alias,
                "rounds": rounds,
                "reason": f"the alert resolved before {sink.name} accepted it; not sent again",
            },
        )

    async def _settle(
        self,
        sink: AlertSink,
        event: str,
        alert: Alert,
        notice: AlertNotice,
        delivery: Delivery,
        rounds: int,
        resend: bool,
    ) -> None:
        services = self._services
        outcome = "delivered" if delivery.ok else "failed"
        if sink.name == "opsgenie":
            state = {"raised": "created", "resolved": "closed"}[event]
            await services.store.set_alert_opsgenie(
                alert.id, notice.alias, state if delivery.ok else f"{state}-failed"
            )
        if not delivery.ok:
            log.warning(
                "%s did not take the %s alert %s (%s): %s",
                sink.name,
                event,
                alert.id,
                alert.environment,
                delivery.reason,
            )
        detail: dict[str, Any] = {
            "sink": sink.name,
            "event": event,
            "alert_id": alert.id,
            "alias": notice.alias,
            "attempts": delivery.attempts,
            "http_status": delivery.status,
            "reason": delivery.reason,
            "rounds": rounds,
        }
        if resend and not delivery.ok:
            detail["next"] = "sent again until it is accepted or the alert resolves"
        await services.audit.append(
            "AlertForwarded", environment=alert.environment, status=outcome, detail=detail
        )

    async def close(self, grace_s: float = 5.0) -> None:
        """Give outside deliveries `grace_s` to finish, then cancel them (creates still
        to be resent are sent again at the next start)."""
        self._closing.set()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace_s)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def notice_of(alert: Alert, event: str) -> AlertNotice:
    """What every sink gets about an alert event; a run alert carries its own priority."""
    if alert.kind == "run":
        d = alert.detail
        what = f"{d.get('kind', 'run')} {alert.run_id} to {d.get('to')}"
        return AlertNotice(
            environment=alert.environment,
            alias=alias_of(alert),
            message=(
                f"MCMS {alert.environment}: {what} {d.get('state')}, {d.get('outcome')}"
                if event == "raised"
                else f"MCMS {alert.environment}: a later run succeeded after {alert.run_id}"
            ),
            description=f"{d.get('note', '')}\nHosts now:\n" + "\n".join(d.get("hosts", [])),
            details={"run": str(alert.run_id), "outcome": str(d.get("outcome"))},
            priority=str(d.get("priority")) if d.get("priority") else None,
        )
    bad = "; ".join(check_line(c) for c in failing(alert.checks)) or "smoke failing"
    return AlertNotice(
        environment=alert.environment,
        alias=alias_of(alert),
        message=(
            f"MCMS {alert.environment}: smoke failing ({bad})"
            if event == "raised"
            else f"MCMS {alert.environment}: recovered, smoke passes again"
        ),
        description=f"Alert {alert.id} raised by mcms-bot at {alert.opened_at.isoformat()}",
        details={c["name"]: check_line(c) for c in alert.checks},
    )
