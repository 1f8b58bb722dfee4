"""The alert card's buttons, checked: "Start rollback" and "Silence 1 h".

Card data is untrusted: it is validated into a closed model and compared with the stored
alert. Both buttons need the operator role for the alert's environment (the role `rollback`
and `subscribe` need) and an open alert. Silencing needs a reason and is audited with who
and why; it only mutes reminders — the recovery post still comes. Outcomes are values;
refusals are audited and say what to do instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adapters.store.watch_rows import Alert
from commands.cards.alert import SILENCE_HOURS
from commands.context import Services, actor_fields
from commands.types import Actor

# A reason an auditor can read later: "x" is not one.
MIN_SILENCE_REASON = 5


class AlertAction(BaseModel):
    """What an alert card button sends back (action_data + the silence reason input)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    verb: Literal["start_rollback", "silence"]
    alert_id: str = Field(pattern=r"^A-[0-9a-f]{8}$")
    environment: str = Field(max_length=64)
    silence_reason: str | None = Field(default=None, max_length=300)


@dataclass(frozen=True)
class AlertRefusal:
    code: str
    message: str


@dataclass(frozen=True)
class Accepted:
    action: AlertAction
    alert: Alert


async def check_action(
    services: Services, verb: str, data: dict[str, Any], actor: Actor, tenant_id: str | None
) -> Accepted | AlertRefusal:
    """Tenant, data, alert, role: the click may go ahead, or why not (audited)."""
    config = services.config

    async def refuse(code: str, message: str, environment: str | None = None) -> AlertRefusal:
        await services.audit.append(
            "AlertActionRefused",
            environment=environment,
            actor=actor_fields(actor.name, actor.aad_object_id),
            status=code,
            detail={"verb": verb[:40], "message": message},
        )
        return AlertRefusal(code, message)

    if tenant_id not in config.teams.allowed_tenants:
        return await refuse("Forbidden", "This bot is not enabled for your organization.")
    try:
        action = AlertAction.model_validate({**data, "verb": verb})
    except ValidationError:
        return await refuse(
            "BadRequest", "This alert card's data is not valid (unknown or tampered). Nothing done."
        )
    alert = await services.store.get_alert(action.alert_id)
    if alert is None or alert.environment != action.environment:
        return await refuse(
            "NotFound",
            f"There is no alert {action.alert_id} for {action.environment}; nothing done. "
            f"`status {action.environment}` shows how it is now.",
        )
    if not config.has_role(actor.aad_object_id, "operator", alert.environment):
        return await refuse(
            "Forbidden",
            f"This needs the **operator** role for {alert.environment}; ask an operator.",
            alert.environment,
        )
    if alert.state != "open":
        rollback = action.verb == "start_rollback"
        hint = f" If you still want one, type `rollback {alert.environment}`." if rollback else ""
        return await refuse(
            "Resolved",
            f"Alert {alert.id} is resolved already: its checks pass again. Nothing done.{hint}",
            alert.environment,
        )
    return Accepted(action, alert)


async def silence(services: Services, accepted: Accepted, actor: Actor) -> Alert | AlertRefusal:
    """Mute the alert's reminders for SILENCE_HOURS; the reason is required and audited."""
    alert, reason = accepted.alert, (accepted.action.silence_reason or "").strip()
    who = actor_fields(actor.name, actor.aad_object_id)
    if len(reason) < MIN_SILENCE_REASON:
        message = (
            f"Type why you silence {alert.environment}'s reminders in the card (at least "
            f"{MIN_SILENCE_REASON} characters), then press Silence again. Nothing changed."
        )
        await services.audit.append(
            "AlertActionRefused",
            environment=alert.environment,
            actor=who,
            status="NoReason",
            detail={"verb": "silence", "alert_id": alert.id, "message": message},
        )
        return AlertRefusal("NoReason", message)
    until = services.now() + timedelta(hours=SILENCE_HOURS)
    if not await services.store.silence_alert(alert.id, until, actor.name, reason):
        return AlertRefusal("Resolved", f"Alert {alert.id} was resolved meanwhile. Nothing done.")
    await services.audit.append(
        "AlertSilenced",
        environment=alert.environment,
        actor=who,
        status="silenced",
        detail={"alert_id": alert.id, "reason": reason, "until": until.isoformat()},
    )
    await services.timeline.append(
        f"alert {alert.id} ({alert.environment}) silenced for {SILENCE_HOURS} h by "
        f"{actor.name}: {reason}"
    )
    silenced = await services.store.get_alert(alert.id)
    return silenced if silenced is not None else alert
