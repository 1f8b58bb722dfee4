"""`lock ENVIRONMENT REASON` / `unlock ENVIRONMENT` — a freeze, by an approver.

While an environment is frozen no new rollback or deploy is requested for it (a blue/green
flow that would deploy to it neither), and a pending request of it is not approved — except
by break glass (the card's Break glass button, or `mcms-bot rollback|deploy` on the bot's
host), which goes ahead and says it overrode the freeze. The watcher and `smoke` keep
running: a freeze stops changes, never the eyes on the environment. The freeze is shown in
`status` and on every approval card of the environment; locking and unlocking are audited
(`Frozen`, `Unfrozen`), written to the timeline, and announced in the environment's alert
conversations.
"""

from __future__ import annotations

from adapters.entra import GroupLookupFailed
from adapters.store.rows import Freeze, Request
from commands.bluegreen.model import SWITCH_COMMAND
from commands.cards.approval import frozen_words
from commands.cards.elements import plain
from commands.context import Services, actor_fields
from commands.groups import is_approver
from commands.registry import Command, CommandCall
from commands.timefmt import show
from commands.types import Reply

# As long as a break-glass reason: a freeze must say why, in words an auditor can read.
MIN_FREEZE_REASON = 10
MAX_FREEZE_REASON = 300
# Enough words for a sentence of MAX_FREEZE_REASON characters.
MAX_REASON_WORDS = 100


def _glass_allowed(services: Services, environment: str) -> bool:
    env = services.config.environments.get(environment)
    return env is not None and env.approval.break_glass


def frozen_refusal(
    freeze: Freeze, services: Services, kind: str = "rollback", version: str | None = None
) -> str:
    """Why a rollback/deploy of a frozen environment is not requested, and what to do: the
    break-glass command for this very change, only where the environment allows it."""
    env = freeze.environment
    head = (
        f"{env} is {frozen_words(freeze, services.config.tz)}. Nothing was requested. Ask an "
        f"approver to `unlock {env}`"
    )
    if not _glass_allowed(services, env):
        return head + " (break glass is off for this environment)."
    target = f" {version}" if version else (" VERSION" if kind == "deploy" else "")
    return head + (
        f', or use break glass on the bot\'s host (`mcms-bot {kind} {env}{target} --reason "..."`).'
    )


def frozen_approval(freeze: Freeze, services: Services, request: Request) -> str:
    """Why Approve is refused on a card of a frozen environment; break glass is offered only
    where it exists (the environment allows it; a blue/green switch has none)."""
    env = freeze.environment
    head = (
        f"{env} is {frozen_words(freeze, services.config.tz)}. Nothing was approved; the "
        f"request stays pending. Ask an approver to `unlock {env}` first"
    )
    if request.command == SWITCH_COMMAND or not _glass_allowed(services, request.environment):
        return head + "."
    return head + (
        " — or, in an emergency, break glass (the card's Break glass button, or `mcms-bot` "
        "on the bot's host: audited and announced)."
    )


def request_environments(services: Services, request: Request) -> list[str]:
    """The environments a request changes: its own, or both slots of a blue/green switch."""
    if request.command == SWITCH_COMMAND:
        pair = services.config.pairs.get(request.environment)
        return list(pair.slots) if pair else []
    return [request.environment]


async def freezes_of(services: Services, environments: list[str]) -> list[Freeze]:
    found = [await services.store.freeze_of(env) for env in environments]
    return [f for f in found if f is not None]


async def request_freezes(services: Services, request: Request) -> list[Freeze]:
    """The freezes standing on what `request` would change."""
    return await freezes_of(services, request_environments(services, request))


async def _refuse(call: CommandCall, reason: str, text: str) -> Reply:
    inv = call.invocation
    await call.services.audit.append(
        "Refused",
        environment=call.environment,
        actor=actor_fields(inv.actor.name, inv.actor.aad_object_id),
        status=reason,
        detail={"command": inv.text.split(None, 1)[0][:20], "reply": text},
    )
    return Reply(text, refused=True, extra={"reason": reason})


async def _approver_refusal(call: CommandCall, verb: str) -> Reply | None:
    services, inv, env = call.services, call.invocation, call.env()
    try:
        allowed = await is_approver(services, inv.actor, env, inv.tenant_id)
    except GroupLookupFailed as exc:
        return await _refuse(
            call,
            "role",
            f"I could not check your approver group membership: {exc}. Nothing was changed; "
            "try again in a minute.",
        )
    if allowed:
        return None
    return await _refuse(
        call,
        "role",
        f"`{verb}` needs the **approver** role for {env} (or one of its approver groups). "
        "Ask an approver.",
    )


async def run_lock(call: CommandCall) -> Reply:
    services, inv, env = call.services, call.invocation, call.env()
    reason = " ".join(call.args).strip()
    if len(reason) < MIN_FREEZE_REASON or len(reason) > MAX_FREEZE_REASON:
        return await _refuse(
            call,
            "usage",
            f"`lock {env} REASON`: say why in {MIN_FREEZE_REASON} to {MAX_FREEZE_REASON} "
            f"characters (e.g. `lock {env} quarter-end close, no changes until Monday`): it is "
            "audited and shown on every card. Nothing was changed.",
        )
    refused = await _approver_refusal(call, "lock")
    if refused:
        return refused
    freeze, made = await services.store.freeze(
        env, reason, inv.actor.name, inv.actor.aad_object_id, services.now()
    )
    tz = services.config.tz
    if not made:
        return await _refuse(
            call,
            "already-frozen",
            f"{env} is already {frozen_words(freeze, tz)}. The freeze stands as it is; to "
            f"change its reason, `unlock {env}` and lock it again.",
        )
    who = actor_fields(inv.actor.name, inv.actor.aad_object_id)
    await services.audit.append(
        "Frozen",
        environment=env,
        actor=who,
        status="frozen",
        detail={"reason": reason, "since": freeze.since.isoformat()},
    )
    await services.timeline.append(f"{env} frozen by {inv.actor.name}: {reason}")
    await services.store.add_notice(
        env, "freeze", f"🧊 {env} is {frozen_words(freeze, tz)}. `unlock {env}` lifts it."
    )
    pending = await services.store.pending_requests(env)
    waiting = (
        f" Pending request(s) {', '.join(r.id for r in pending)} cannot be approved until then "
        "(break glass still can)."
        if pending
        else ""
    )
    return Reply(
        f"🧊 {env} is frozen since {show(freeze.since, tz)}: no rollback or deploy will be "
        f"requested or approved until an approver types `unlock {env}` — except by break "
        f"glass. The watcher and `smoke` keep running.{waiting}",
        extra={"freeze_changed": env, "pending": [r.id for r in pending]},
    )


async def run_unlock(call: CommandCall) -> Reply:
    services, inv, env = call.services, call.invocation, call.env()
    refused = await _approver_refusal(call, "unlock")
    if refused:
        return refused
    lifted = await services.store.unfreeze(env)
    if lifted is None:
        return await _refuse(
            call,
            "not-frozen",
            f"{env} is not frozen: rollbacks and deploys are requested as usual. Nothing "
            "was changed.",
        )
    tz = services.config.tz
    was = frozen_words(lifted, tz)
    await services.audit.append(
        "Unfrozen",
        environment=env,
        actor=actor_fields(inv.actor.name, inv.actor.aad_object_id),
        status="unfrozen",
        detail={
            "reason": lifted.reason,
            "frozen_by": lifted.frozen_by,
            "since": lifted.since.isoformat(),
        },
    )
    await services.timeline.append(f"{env} unfrozen by {inv.actor.name} (it was {was})")
    await services.store.add_notice(
        env, "freeze", f"{env} is unfrozen by {plain(inv.actor.name, 100)} (it was {was})."
    )
    return Reply(
        f"{env} is unfrozen (it was {was}): rollbacks and deploys can be requested again.",
        extra={"freeze_changed": env},
    )


LOCK = Command(
    name="lock",
    usage="ENVIRONMENT REASON",
    summary="Freeze an environment: no rollback or deploy is requested or approved (break "
    "glass excepted) until an approver unlocks it; watcher and smoke go on.",
    role=None,
    env_arg="required",
    max_extra_args=MAX_REASON_WORDS,
    run=run_lock,
    who_note="approvers of the environment",
    suggested=False,
)
UNLOCK = Command(
    name="unlock",
    usage="ENVIRONMENT",
    summary="Lift an environment's freeze.",
    role=None,
    env_arg="required",
    max_extra_args=0,
    run=run_unlock,
    who_note="approvers of the environment",
    suggested=False,
)
