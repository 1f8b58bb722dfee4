"""Approve or reject a request from its card: every rule, then ONE atomic transition.

Card data is untrusted: it is validated into a closed model and every field is compared
with the stored request (a tampered id, environment, version or plan hash is refused).
Rules: approver role for the environment; self-approval only where the environment allows
it, or with a break-glass reason (audited); not after expiry; not while the environment is
busy. The transition `pending → approved|rejected` is one UPDATE, so double clicks,
concurrent clicks and Teams' invoke retries yield exactly one decision; the others see the
decided card. Outcomes are values; nothing here runs anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adapters.store.rows import Request
from commands.change import busy_refusal
from commands.context import Services, actor_fields
from commands.plan import Plan
from commands.types import Actor

Outcome = Literal["approved", "rejected", "decided-already", "refused", "expired"]
# A break-glass reason must say something: "ok" is not a reason an auditor can read.
MIN_REASON = 10


class DecisionAction(BaseModel):
    """The data an Approve/Reject button sends back (card.action_data + the reason input)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    verb: Literal["approve", "reject"]
    request_id: str = Field(pattern=r"^R-[0-9a-f]{8}$")
    environment: str = Field(max_length=64)
    version: str = Field(max_length=64)
    plan_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    reason: str | None = Field(default=None, max_length=300)


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    request: Request | None
    code: str = ""
    message: str = ""

    @property
    def plan(self) -> Plan | None:
        return Plan.from_json(self.request.plan_json) if self.request else None


def parse_action(verb: str, data: dict[str, Any]) -> DecisionAction | None:
    try:
        return DecisionAction.model_validate({**data, "verb": verb})
    except ValidationError:
        return None


async def decide(
    services: Services, verb: str, data: dict[str, Any], actor: Actor, tenant_id: str | None
) -> Decision:
    config = services.config
    action = parse_action(verb, data)
    who = actor_fields(actor.name, actor.aad_object_id)

    async def refuse(code: str, message: str, request: Request | None = None) -> Decision:
        await services.audit.append(
            "DecisionRefused",
            environment=request.environment if request else None,
            request_id=request.id if request else None,
            actor=who,
            status=code,
            detail={"verb": verb, "message": message},
        )
        return Decision("refused", request, code, message)

    if tenant_id not in config.teams.allowed_tenants:
        return await refuse("Forbidden", "This bot is not enabled for your organization.")
    if action is None:
        return await refuse(
            "BadRequest",
            "This card's data is not valid (unknown or tampered). Nothing was "
            "run; ask for a new card with the command.",
        )
    request = await services.store.get_request(action.request_id)
    if request is None:
        return await refuse(
            "NotFound", f"There is no request {action.request_id}. Nothing was run."
        )
    if (request.environment, request.version, request.plan_hash) != (
        action.environment,
        action.version,
        action.plan_hash,
    ):
        return await refuse(
            "BadRequest",
            f"This card's data does not match request {request.id} (tampered or "
            "stale card). Nothing was run.",
            request,
        )
    if request.state in ("expired", "void"):
        message = (
            f"Request {request.id} is {request.state}; nothing was run. Ask again with "
            f"`{request.command} {request.environment}`."
        )
        await refuse("Expired" if request.state == "expired" else "Void", message, request)
        return Decision("expired", request, "Expired", message)
    if request.state != "pending":
        # A double click, a click on a stale copy, or Teams retrying the invoke: the decision
        # already taken stands, and the clicker gets the decided card.
        await services.audit.append(
            "DecisionIgnored",
            environment=request.environment,
            request_id=request.id,
            actor=who,
            status=request.state,
            detail={"verb": verb},
        )
        return Decision("decided-already", request)
    now = services.now()
    if request.expires_at is not None and now >= request.expires_at:
        if await services.store.transition_request(request.id, ["pending"], "expired"):
            await services.audit.append(
                "Expired", environment=request.environment, request_id=request.id, actor=who
            )
        refreshed = await services.store.get_request(request.id)
        message = (
            f"Request {request.id} expired at its deadline; nothing was run. Ask again "
            f"with `{request.command} {request.environment}`."
        )
        await refuse("Expired", message, refreshed)
        return Decision("expired", refreshed, "Expired", message)

    env_policy = config.environments[request.environment].approval
    is_requester = bool(actor.aad_object_id) and (
        (actor.aad_object_id or "").lower() == (request.requester_id or "").lower()
    )
    reason = (action.reason or "").strip()
    if action.verb == "reject":
        # The requester may withdraw their own request; otherwise rejecting is an approver's.
        if not is_requester and not config.has_role(
            actor.aad_object_id, "approver", request.environment
        ):
            return await refuse(
                "Forbidden",
                f"Rejecting needs the approver role for {request.environment}.",
                request,
            )
        return await _transition(services, request, "rejected", actor, reason or None)

    if not config.has_role(actor.aad_object_id, "approver", request.environment):
        return await refuse(
            "Forbidden",
            f"Approving needs the **approver** role for {request.environment}; ask an approver.",
            request,
        )
    break_glass = None
    if is_requester and not env_policy.self_approval:
        if len(reason) < MIN_REASON:
            return await refuse(
                "SelfApproval",
                f"{request.environment} does not allow approving your own request. Ask another "
                f"approver, or — in an emergency — type a break-glass reason (at least "
                f"{MIN_REASON} characters) in the card and approve again; it is audited.",
                request,
            )
        break_glass = reason
    busy = await busy_refusal(services, request.environment)
    if busy:
        return await refuse(
            "Busy",
            busy.message.replace("Nothing was requested.", "The request stays pending."),
            request,
        )
    return await _transition(services, request, "approved", actor, break_glass)


async def _transition(
    services: Services,
    request: Request,
    to: Literal["approved", "rejected"],
    actor: Actor,
    reason: str | None,
) -> Decision:
    now = services.now()
    changed = await services.store.transition_request(
        request.id,
        ["pending"],
        to,
        decided_by_name=actor.name,
        decided_by_id=actor.aad_object_id,
        decided_at=now,
        reason=reason,
    )
    refreshed = await services.store.get_request(request.id)
    if not changed:
        # Lost the race to a concurrent click: that decision stands; this click is recorded.
        await services.audit.append(
            "DecisionIgnored",
            environment=request.environment,
            request_id=request.id,
            actor=actor_fields(actor.name, actor.aad_object_id),
            status=refreshed.state if refreshed else "unknown",
            detail={"verb": to},
        )
        return Decision("decided-already", refreshed)
    event = "Approved" if to == "approved" else "Rejected"
    detail: dict[str, Any] = {"plan_hash": request.plan_hash}
    if reason and to == "approved":
        detail["break_glass_reason"] = reason
    elif reason:
        detail["reason"] = reason
    await services.audit.append(
        event,
        environment=request.environment,
        request_id=request.id,
        actor=actor_fields(actor.name, actor.aad_object_id),
        status=to,
        detail=detail,
    )
    glass = " (break-glass)" if reason and to == "approved" else ""
    await services.timeline.append(
        f"{request.command} {request.environment} → {request.version} {to}{glass} by "
        f"{actor.name} ({request.id})"
    )
    return Decision(to, refreshed)
