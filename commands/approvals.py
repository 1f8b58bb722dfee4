"""Approve, reject or break glass from a request's card: every rule, then ONE atomic step.

Card data is untrusted: it is validated into a closed model and every field is compared
with the stored request (a tampered id, environment, version or plan hash is refused).
Rules, per environment (`approval` in the config):
- approving needs the approver role, or membership of one of `approver_groups` (asked of
  Microsoft Graph; when it cannot be asked, the approval is refused, never guessed);
- `required_count` distinct approvers, none the requester; each approval is a row, and the
  move to `approved` happens with the Nth, in the same transaction (adapters/store/runs.py);
- approving your own request only where `self_approval = true` (and one approver is enough);
- break glass: a holder of the break_glass role approves alone — own request or not, short
  of the count — where `break_glass = true`, with a reason of 10+ characters; it is marked
  in the audit, the timeline and the card, and announced in the alert conversations;
- not after expiry; not while the environment is busy; not while it is frozen (`lock`),
  except by break glass, which then records the freeze it overrode.
Double clicks, concurrent clicks and Teams' invoke retries yield exactly one decision; the
others see the card as it stands. Outcomes are values; nothing here runs anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adapters.entra import GroupLookupFailed
from adapters.store.rows import ApprovalTally, Freeze, Request
from commands.bluegreen.lock import pair_busy
from commands.bluegreen.model import SWITCH_COMMAND, is_pair_approver_by_role
from commands.cards.approval import frozen_words
from commands.cards.elements import plain
from commands.change import busy_refusal
from commands.config import Approval, Config
from commands.context import Services, actor_fields
from commands.freeze import frozen_approval, request_freezes
from commands.groups import is_approver
from commands.types import Actor

# "partial": an approval was recorded and the request still needs more approvers.
Outcome = Literal["approved", "partial", "rejected", "decided-already", "refused", "expired"]
Verb = Literal["approve", "reject", "break_glass"]
VERBS: tuple[Verb, ...] = ("approve", "reject", "break_glass")
# A break-glass reason must say something: "ok" is not a reason an auditor can read.
MIN_REASON = 10


class DecisionAction(BaseModel):
    """The data an Approve/Reject button sends back (card.action_data + the reason input)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    verb: Verb
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
    # True when this decision approved the request by break glass (announce it).
    break_glass: bool = False


def approval_policy(config: Config, request: Request) -> Approval:
    """The rules a request is approved by: its environment's, or for a blue/green switch
    (approval card #2, `environment` = the pair) the pair's."""
    if request.command == SWITCH_COMMAND:
        return config.pairs[request.environment].approval
    return config.environments[request.environment].approval


async def may_approve(
    services: Services, actor: Actor, request: Request, tenant_id: str | None
) -> bool:
    """The approver role for the request's environment (for a switch: the pair by name, or
    both its slots), or membership of one of its approver groups. Raises
    GroupLookupFailed when the groups cannot be asked."""
    if request.command != SWITCH_COMMAND:
        return await is_approver(services, actor, request.environment, tenant_id)
    config = services.config
    if is_pair_approver_by_role(config, actor.aad_object_id, request.environment):
        return True
    groups = config.pairs[request.environment].approval.approver_groups
    if not groups or not actor.aad_object_id:
        return False
    return bool(await services.groups.member_of(actor.aad_object_id, groups, tenant_id))


async def _busy(services: Services, request: Request) -> str | None:
    """Why the request cannot be approved now: its environment (for a switch: either slot)
    is busy with a run, or its pair is held by a blue/green flow it is not part of."""
    if request.command == SWITCH_COMMAND:
        environments = list(services.config.pairs[request.environment].slots)
    else:
        environments = [request.environment]
    for environment in environments:
        busy = await busy_refusal(services, environment)
        if busy:
            return busy.message.replace("Nothing was requested.", "The request stays pending.")
    if request.command != SWITCH_COMMAND:
        held = await pair_busy(services, request.environment, own_request_id=request.id)
        if held:
            return held.replace("Nothing was requested.", "The request stays pending.")
    return None


def break_glass_notice(request: Request) -> str:
    """The break-glass announcement for the alert conversations; the reason and the names
    are escaped (typed by a person)."""
    who = plain(request.decided_by_name or "?", 100)
    own = (request.requester_id or "").lower() == (request.decided_by_id or "").lower()
    whose = "their own request" if own else f"{plain(request.requester_name, 100)}'s request"
    return (
        f"🚨 BREAK-GLASS approval in {request.environment}: {who} approved {whose} "
        f"{request.id} ({request.command} to {request.version}) alone. Reason: "
        f"{plain(request.reason or '', 300)}"
    )


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

    policy = approval_policy(config, request)
    is_requester = bool(actor.aad_object_id) and (
        (actor.aad_object_id or "").lower() == (request.requester_id or "").lower()
    )
    reason = (action.reason or "").strip()
    env = request.environment
    if action.verb == "reject":
        # The requester may withdraw their own request; otherwise rejecting is an approver's.
        try:
            allowed = is_requester or await may_approve(services, actor, request, tenant_id)
        except GroupLookupFailed as exc:
            return await refuse("GroupLookupFailed", _lookup_failed(exc), request)
        if not allowed:
            return await refuse(
                "Forbidden", f"Rejecting needs the approver role for {env}.", request
            )
        return await _transition(services, request, "rejected", actor, reason or None)

    if action.verb == "break_glass":
        if not policy.break_glass:
            return await refuse(
                "BreakGlassOff",
                f"{env} does not allow break-glass approvals; ask an approver. Nothing was run.",
                request,
            )
        if not config.has_role(actor.aad_object_id, "break_glass", env):
            return await refuse(
                "Forbidden",
                f"Break glass needs the **break_glass** role for {env}; ask an approver. "
                "Nothing was run.",
                request,
            )
        if len(reason) < MIN_REASON:
            return await refuse(
                "ReasonRequired",
                f"Type why in the card (at least {MIN_REASON} characters), then click Break "
                "glass again: it is audited and announced in the alert channel.",
                request,
            )
    else:
        try:
            approver = await may_approve(services, actor, request, tenant_id)
        except GroupLookupFailed as exc:
            return await refuse("GroupLookupFailed", _lookup_failed(exc), request)
        if not approver:
            return await refuse(
                "Forbidden",
                f"Approving needs the **approver** role for {env}; ask an approver.",
                request,
            )
        if is_requester and (not policy.self_approval or policy.required_count > 1):
            glass = (
                " or — in an emergency — type a reason and click Break glass (needs the "
                "break_glass role; audited and announced)"
                if policy.break_glass
                else ""
            )
            return await refuse(
                "SelfApproval",
                f"{env} does not allow approving your own request. Ask another approver{glass}.",
                request,
            )
    freezes = await request_freezes(services, request)
    if freezes and action.verb != "break_glass":
        return await refuse("Frozen", frozen_approval(freezes[0], services, request), request)
    busy = await _busy(services, request)
    if busy:
        return await refuse("Busy", busy, request)
    return await _approve(
        services,
        request,
        actor,
        policy.required_count,
        reason if action.verb == "break_glass" else None,
        freezes,
    )


def _lookup_failed(exc: GroupLookupFailed) -> str:
    return (
        f"I could not check your approver group membership: {exc}. Nothing was approved; "
        "try again in a minute, or ask an approver named in the bot's config."
    )


async def _approve(
    services: Services,
    request: Request,
    actor: Actor,
    required: int,
    break_glass_reason: str | None,
    freezes: list[Freeze],
) -> Decision:
    who = actor_fields(actor.name, actor.aad_object_id)
    tally = await services.store.add_approval(
        request.id,
        actor.aad_object_id or "",
        actor.name,
        services.now(),
        required=required,
        break_glass_reason=break_glass_reason,
    )
    refreshed = await services.store.get_request(request.id)
    if not tally.recorded:
        # A second click of the same approver, a stale card, or a lost race: what stands, stands.
        await services.audit.append(
            "DecisionIgnored",
            environment=request.environment,
            request_id=request.id,
            actor=who,
            status=tally.state,
            detail={"verb": "approve", "approvals": f"{tally.count} of {tally.required}"},
        )
        outcome: Outcome = "partial" if tally.state == "pending" else "decided-already"
        return Decision(outcome, refreshed)
    if not tally.decided:
        await services.audit.append(
            "ApprovalRecorded",
            environment=request.environment,
            request_id=request.id,
            actor=who,
            status="pending",
            detail={
                "plan_hash": request.plan_hash,
                "approvals": f"{tally.count} of {tally.required}",
                "approvers": list(tally.names),
            },
        )
        await services.timeline.append(
            f"{request.command} {request.environment} → {request.version}: approval "
            f"{tally.count} of {tally.required} by {actor.name} ({request.id})"
        )
        return Decision("partial", refreshed)
    await _record_approved(services, request, actor, tally, break_glass_reason, freezes)
    return Decision("approved", refreshed, break_glass=break_glass_reason is not None)


async def _record_approved(
    services: Services,
    request: Request,
    actor: Actor,
    tally: ApprovalTally,
    break_glass_reason: str | None,
    freezes: list[Freeze],
) -> None:
    tz = services.config.tz
    # Only break glass approves while frozen: the record says which freeze it overrode.
    overrode = "; ".join(f"{f.environment} {frozen_words(f, tz)}" for f in freezes)
    detail: dict[str, Any] = {
        "plan_hash": request.plan_hash,
        "approvers": list(tally.names),
        "required": tally.required,
        "break_glass": break_glass_reason is not None,
    }
    if break_glass_reason is not None:
        detail["break_glass_reason"] = break_glass_reason
    if overrode:
        detail["overrode_freeze"] = overrode
    await services.audit.append(
        "Approved",
        environment=request.environment,
        request_id=request.id,
        actor=actor_fields(actor.name, actor.aad_object_id),
        status="approved",
        detail=detail,
    )
    glass = " by BREAK GLASS" if break_glass_reason is not None else ""
    by = " + ".join(tally.names) if tally.required > 1 and not glass else actor.name
    await services.timeline.append(
        f"{request.command} {request.environment} → {request.version} approved{glass} by "
        f"{by} ({request.id})"
        + (f": {break_glass_reason}" if break_glass_reason else "")
        + (f" — overriding the freeze ({overrode})" if overrode else "")
    )


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
    if reason:
        detail["reason"] = reason
    await services.audit.append(
        event,
        environment=request.environment,
        request_id=request.id,
        actor=actor_fields(actor.name, actor.aad_object_id),
        status=to,
        detail=detail,
    )
    await services.timeline.append(
        f"{request.command} {request.environment} → {request.version} {to} by "
        f"{actor.name} ({request.id})"
    )
    return Decision(to, refreshed)
