"""OpsGenie and the webhook, in the background: an alert's raise and recovery forwarded.

Each delivery is its own task, started after the Teams posts are queued, so a slow,
failing or hanging target never delays Teams. Outcomes are values (adapters.alert_sinks):
each is logged when it fails and audited either way (`AlertForwarded`, with attempts,
HTTP status and reason); OpsGenie's state is kept on the alert (created, closed, *-failed).
At shutdown deliveries still retrying get a short grace, then are cancelled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from adapters.alert_sinks import AlertNotice, AlertSink, SinkPolicy
from adapters.opsgenie import OpsGenieSink
from adapters.store.watch_rows import Alert
from adapters.webhook import WebhookSink
from commands.cards.alert import check_line, failing
from commands.config import Config, secret
from commands.context import Services

log = logging.getLogger(__name__)


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

    def spawn(self, work: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def forward(self, event: str, alert: Alert) -> None:
        """Deliver `event` ("raised" | "resolved") to every target, each in its own task."""
        for sink in self._sinks(alert.environment):
            self.spawn(self._forward_one(sink, event, alert), f"{sink.name}:{event}:{alert.id}")

    async def _forward_one(self, sink: AlertSink, event: str, alert: Alert) -> None:
        services = self._services
        bad = "; ".join(check_line(c) for c in failing(alert.checks)) or "smoke failing"
        notice = AlertNotice(
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
        try:
            delivery = await (sink.raised(notice) if event == "raised" else sink.resolved(notice))
        except Exception:
            log.exception("%s %s of alert %s failed unexpectedly", sink.name, event, alert.id)
            return
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
        await services.audit.append(
            "AlertForwarded",
            environment=alert.environment,
            status=outcome,
            detail={
                "sink": sink.name,
                "event": event,
                "alert_id": alert.id,
                "alias": notice.alias,
                "attempts": delivery.attempts,
                "http_status": delivery.status,
                "reason": delivery.reason,
            },
        )

    async def close(self, grace_s: float = 5.0) -> None:
        """Give outside deliveries `grace_s` to finish, then cancel them (not resent later)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace_s)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
