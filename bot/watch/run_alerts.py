"""Alerts about runs: a run that ends badly is an incident of its own (bot.ports.RunAlarm).

A failed run, or one whose hosts were left changed (the restore failed, or `on_failure =
"stop"`), raises an alert in the environment's alert conversations and to OpsGenie: P1
when hosts are left changed and unverified, P2 when they are back as before (restored and
verified, or never changed). It carries the run id and each host's state. Each failed run
is its own alert, beside the watcher's smoke incident; a later run of the environment that
succeeds resolves them. Everything that leaves the bot is queued or runs in the
background: the executor's end is never held up by Teams or OpsGenie.
"""

from __future__ import annotations

import logging

from adapters.store.rows import Flow
from adapters.store.watch_rows import Alert
from bot.ports import RunFailure
from bot.run_alert_record import record_run_alert
from bot.watch.alerts import Alerter
from commands.cards.alert import alert_text, render_alert_card

log = logging.getLogger(__name__)


class RunAlerts:
    """The RunAlarm the executor is given (bot/server.py wires it)."""

    def __init__(self, alerter: Alerter) -> None:
        self._alerter = alerter

    async def run_failed(self, failure: RunFailure) -> None:
        alerter = self._alerter
        targets = await alerter.conversations(failure.environment)
        alert = await record_run_alert(alerter.services, failure, targets)
        alerter.spawn(self._post(alert, targets), f"run-alert:{alert.id}")
        alerter.forward("raised", alert)

    async def _post(self, alert: Alert, targets: list[str]) -> None:
        alerter = self._alerter
        services = alerter.services
        card = render_alert_card(alert, services.config.tz, services.now())
        posts = [(c, await alerter.enqueue(c, alert_text(alert), card)) for c in targets]
        for conversation_id, task in posts:
            activity_id = None if task is None else await alerter.delivered(conversation_id, task)
            if activity_id:
                await services.store.add_alert_card(alert.id, conversation_id, activity_id)

    async def run_succeeded(self, environment: str, run_id: str) -> None:
        alerter = self._alerter
        services = alerter.services
        for alert in await services.store.open_run_alerts(environment):
            if not await services.store.resolve_alert(alert.id, services.now()):
                continue
            await services.audit.append(
                "AlertResolved",
                environment=environment,
                run_id=run_id,
                status="resolved",
                detail={"alert_id": alert.id, "kind": "run", "by_run": run_id},
            )
            resolved = await services.store.get_alert(alert.id)
            if resolved is not None:
                await alerter.refresh_cards(resolved, final=True)
                alerter.forward("resolved", resolved)


class FlowAlerts:
    """The blue/green flows' alarm (commands.bluegreen.flows.FlowAlarm): a switch back the
    flow had to make on its own, or one that did not complete, is a run alert of the slot
    that failed — P2 when the old slot serves users again, P1 when it does not."""

    def __init__(self, runs: RunAlerts) -> None:
        self._runs = runs

    async def switched_back(self, flow: Flow, reason: str, router_now: str, back: bool) -> None:
        await self._runs.run_failed(
            RunFailure(
                environment=flow.to_slot,
                run_id=flow.id,
                request_id=flow.switch_request_id or flow.deploy_request_id or "",
                kind=f"bluegreen {flow.pair}",
                target_version=flow.version,
                state="failed",
                note=f"{reason}; switched back to {flow.from_slot}" if back else reason,
                outcome="restored" if back else "restore-failed",
                hosts=(f"router: {router_now}",),
                priority="P2" if back else "P1",
            )
        )
