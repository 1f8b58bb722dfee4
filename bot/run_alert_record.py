"""The record of a run that ended badly, whoever ran it: the alert row, the audit line and
the timeline line, in that order.

Shared by the bot's RunAlerts (bot/watch/run_alerts.py: then the card in Teams and the
forward to OpsGenie) and the break-glass CLI (bot/terminal/session.py: then the forward to
OpsGenie from its own process and a notice for Teams), so a failed run pages the same way
from either edge, and the bot's next successful run of the environment resolves it.
"""

from __future__ import annotations

import secrets

from adapters.store.watch_rows import Alert
from bot.ports import RunFailure
from commands.context import Services


def new_alert_id() -> str:
    return "A-" + secrets.token_hex(4)


async def record_run_alert(
    services: Services, failure: RunFailure, conversations: list[str]
) -> Alert:
    """Open the run alert of `failure`; `conversations`: where it is (or will be) posted."""
    alert_id, now = new_alert_id(), services.now()
    detail = {
        "priority": failure.priority,
        "kind": failure.kind,
        "to": failure.target_version,
        "state": failure.state,
        "outcome": failure.outcome,
        "note": failure.note,
        "hosts": list(failure.hosts),
        "request_id": failure.request_id,
    }
    await services.store.open_run_alert(alert_id, failure.environment, failure.run_id, now, detail)
    alert = await services.store.get_alert(alert_id)
    assert alert is not None
    await services.audit.append(
        "AlertRaised",
        environment=failure.environment,
        run_id=failure.run_id,
        request_id=failure.request_id,
        status="open",
        detail={
            "alert_id": alert_id,
            "kind": "run",
            "priority": failure.priority,
            "outcome": failure.outcome,
            "hosts": list(failure.hosts),
            "conversations": conversations,
        },
    )
    await services.timeline.append(
        f"alert {alert_id} ({failure.priority}) raised: {failure.kind} {failure.environment} "
        f"{failure.run_id} {failure.state}, {failure.outcome}"
    )
    return alert
