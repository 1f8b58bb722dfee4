"""Shared by `rollback` and `deploy`: read the hosts, pick the target, plan, ask for approval.

Nothing is requested unless every check passes: the environment is free, at least one
host answers, the target exists in the package store with a matching SHA-256 and holds
every component's folder and executable. A host that cannot be read is excluded with its
reason, as is one named with `--exclude HOST`: the approval card lists both, and the plan
(and so the approval) binds to the exclusion. The reply is the approval card; its message
id is stored once Teams has it, so the card can be edited later.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from adapters.packages import Layout, PackageProblem, PackageStore
from adapters.store.rows import Request
from commands.bluegreen.lock import pair_busy
from commands.cards.approval import POLICY_APPROVER, render_approval_card, with_freezes
from commands.config import Environment
from commands.context import Services, actor_fields
from commands.drift import component_versions, drift_words, release_versions
from commands.freeze import freezes_of, frozen_refusal
from commands.hosts import read_hosts
from commands.plan import Exclusion, Kind, Plan, ScriptBindError, build_plan
from commands.registry import CommandCall
from commands.target import NoTarget, resolve_target
from commands.timefmt import show
from commands.types import Reply

if TYPE_CHECKING:
    from commands.dr.checks import ActiveCheck

EXCLUDE_FLAG = "--exclude"
# A version and up to eight `--exclude HOST` pairs.
MAX_CHANGE_ARGS = 17


def new_request_id() -> str:
    # Short enough to read out at 3 a.m., random enough that a card cannot guess another.
    return "R-" + secrets.token_hex(4)


@dataclass(frozen=True)
class Situation:
    """What the hosts and the history say about an environment right now."""

    current: str | None
    previous_stable: str | None
    kept: tuple[str, ...]
    hosts: tuple[str, ...]  # the hosts the run acts on
    excluded: tuple[Exclusion, ...]


@dataclass(frozen=True)
class ChangeArgs:
    """`rollback ENV [VERSION] [--exclude HOST]...` after the environment."""

    version: str | None
    exclude: tuple[str, ...]


@dataclass(frozen=True)
class Refusal:
    message: str
    reason: str


async def busy_refusal(services: Services, environment: str) -> Refusal | None:
    """Who holds the environment (a run, or a DR check), in words, or None when it is free."""
    check = services.checks.active(environment)
    if check is not None:
        return check_running_refusal(check)
    lock = await services.store.lock_holder(environment)
    if lock is None or lock.holder_run_id is None:
        return None
    run = await services.store.get_run(lock.holder_run_id)
    step = run.current_step if run and run.current_step else "starting"
    since = show(lock.since, services.config.tz) if lock.since else "?"
    return Refusal(
        f"{environment} is busy: run `{lock.holder_run_id}` requested by {lock.holder_name} "
        f"is at step *{step}* (since {since}). Wait for it to finish, or `cancel "
        f"{lock.holder_run_id}`. Nothing was requested.",
        "busy",
    )


def check_running_refusal(check: ActiveCheck) -> Refusal:
    doing = f", now {check.running.id}" if check.running else ""
    return Refusal(
        f"{check.environment} is busy: DR check `{check.run_id}` started by {check.actor.name} "
        f"is testing it{doing}; changing it now would change the site under its tests. Wait "
        f"for its card to finish, or `cancel {check.run_id}`. Nothing was requested.",
        "check-running",
    )


def parse_change_args(args: tuple[str, ...], env: Environment) -> ChangeArgs | str:
    """The version and the hosts to exclude, or why the arguments are wrong (in words)."""
    version: str | None = None
    exclude: list[str] = []
    rest = list(args)
    while rest:
        word = rest.pop(0)
        if word.lower() == EXCLUDE_FLAG:
            if not rest:
                return f"`{EXCLUDE_FLAG}` needs a host name: `{EXCLUDE_FLAG} HOST`."
            name = rest.pop(0)
            known = next((h.name for h in env.hosts if h.name.casefold() == name.casefold()), None)
            if known is None:
                hosts = ", ".join(h.name for h in env.hosts)
                return f"There is no host `{name}` in this environment (its hosts: {hosts})."
            exclude.append(known)
        elif version is None and not word.startswith("--"):
            version = word
        else:
            return f"I do not understand `{word}` here."
    return ChangeArgs(version, tuple(dict.fromkeys(exclude)))


async def read_situation(
    services: Services,
    environment: str,
    env: Environment,
    exclude: tuple[Exclusion, ...] = (),
) -> Situation | Refusal:
    excluded = {e.host: e for e in exclude}
    lines = await read_hosts(services, env, [h.name for h in env.hosts if h.name not in excluded])
    for line in lines:
        if line.state is None:
            excluded[line.host] = Exclusion(line.host, f"unreachable: {line.error}")
    states = [line.state for line in lines if line.state is not None]
    ordered = tuple(excluded[h.name] for h in env.hosts if h.name in excluded)
    if not states:
        reasons = "; ".join(f"{e.host}: {e.reason}" for e in ordered)
        return Refusal(
            f"No host of {environment} can take part ({reasons}). Nothing was requested.",
            "host-unreachable",
        )
    history = await services.store.current_deployment(environment)
    versions = [v for state in states for v in component_versions(state, env)]
    seen = release_versions(versions)
    if history is not None:
        current: str | None = history.version
    elif len(seen) == 1 and None not in seen:
        current = seen.pop()
    else:
        return Refusal(
            f"The hosts of {environment} do not agree on the current version: "
            f"{drift_words(versions) or 'no component runs a release folder'}. "
            "Fix that by hand first. Nothing was requested.",
            "hosts-disagree",
        )
    previous = None
    if current is not None:
        stable = await services.store.previous_stable(environment, current)
        previous = stable.version if stable else None
    # Only a release kept on every host can be switched to without copying.
    kept = set(states[0].releases).intersection(*(s.releases for s in states[1:]))
    return Situation(current, previous, tuple(sorted(kept)), tuple(s.host for s in states), ordered)


def layout_problem(layout: Layout, env: Environment, version: str) -> str | None:
    """Why the package cannot serve every component (a folder or executable not in it)."""
    parts = env.components
    missing = [
        f"folder {s.folder} (site {s.name})" for s in parts.sites if not layout.has(s.folder)
    ]
    missing += [
        f"{s.executable} (service {s.name})"
        for s in parts.services
        if s.executable is not None and not layout.has(s.executable)
    ]
    if not missing:
        return None
    return (
        f"Package {version} does not hold {', '.join(missing)}, so those components could not "
        "be switched to it. Check the components in the configuration against the package. "
        "Nothing was requested."
    )


async def request_change(call: CommandCall, kind: Kind, args: tuple[str, ...]) -> Reply:
    services, environment = call.services, call.env()
    inv = call.invocation
    env = services.config.environments[environment]
    parsed = parse_change_args(args, env)
    requested = parsed.version if isinstance(parsed, ChangeArgs) else None

    async def refuse(refusal: Refusal) -> Reply:
        await services.audit.append(
            "Refused",
            environment=environment,
            actor=actor_fields(inv.actor.name, inv.actor.aad_object_id),
            status=refusal.reason,
            detail={
                "command": kind,
                "version": requested or "",
                "reply": refusal.message,
                "correlation_id": inv.correlation_id,
            },
        )
        return Reply(refusal.message, refused=True, extra={"reason": refusal.reason})

    if isinstance(parsed, str):
        usage = f"`{kind} {environment} [VERSION] [{EXCLUDE_FLAG} HOST]`"
        return await refuse(Refusal(f"{parsed} Usage: {usage}. Nothing was requested.", "usage"))
    if kind == "deploy" and parsed.version is None:
        return await refuse(
            Refusal(
                f"`deploy` needs a version: `deploy {environment} VERSION` (see the package "
                "store). Nothing was requested.",
                "missing-version",
            )
        )
    busy = await busy_refusal(services, environment)
    if busy:
        return await refuse(busy)
    held = await pair_busy(services, environment)
    if held:
        return await refuse(Refusal(held, "pair-busy"))
    freeze = await services.store.freeze_of(environment)
    if freeze is not None and not inv.break_glass:
        return await refuse(
            Refusal(frozen_refusal(freeze, services, kind, parsed.version), "frozen")
        )
    exclude = tuple(Exclusion(h, "excluded by request (--exclude)") for h in parsed.exclude)
    plan = await make_plan(services, kind, environment, parsed.version, exclude)
    if isinstance(plan, Refusal):
        return await refuse(plan)
    return await create_request(call, plan)


async def make_plan(
    services: Services,
    kind: Kind,
    environment: str,
    requested: str | None,
    exclude: tuple[Exclusion, ...] = (),
) -> Plan | Refusal:
    """The plan as it would run now; the executor builds it again to check the approval
    (passing the approved exclusions, so a host excluded then stays excluded)."""
    env = services.config.environments.get(environment)
    if env is None:
        return Refusal(f"Environment {environment} is no longer configured.", "unknown-environment")
    situation = await read_situation(services, environment, env, exclude)
    if isinstance(situation, Refusal):
        return situation
    store = PackageStore(env.package_store)
    target = await resolve_target(
        kind,
        environment,
        store,
        requested=requested,
        current=situation.current,
        previous_stable=situation.previous_stable,
        kept_on_host=situation.kept,
    )
    if isinstance(target, NoTarget):
        return Refusal(target.message, "no-target")
    layout = await store.layout(target.package)
    if isinstance(layout, PackageProblem):
        return Refusal(layout.message + " Nothing was requested.", "no-target")
    problem = layout_problem(layout, env, target.version)
    if problem is not None:
        return Refusal(problem, "package-layout")
    try:
        return build_plan(
            kind,
            environment,
            env,
            current_version=situation.current,
            target_version=target.version,
            sha256=target.package.sha256,
            package=target.package.file_name,
            source=target.source,
            hosts=situation.hosts,
            excluded=situation.excluded,
            expanded_bytes=layout.expanded_bytes,
            smoke_deadline_s=int(env.timeouts.smoke_s),
        )
    except ScriptBindError as exc:
        return Refusal(
            f"{exc}: check its parameters under [environments.{environment}.scripts]. "
            "Nothing was requested.",
            "script-parameter",
        )


async def create_request(call: CommandCall, plan: Plan, origin: str | None = None) -> Reply:
    services, inv = call.services, call.invocation
    now = services.now()
    policy = services.config.environments[plan.environment].approval
    ttl = policy.ttl_minutes
    request = Request(
        id=new_request_id(),
        environment=plan.environment,
        command=plan.kind,
        plan_json=plan.to_json(),
        plan_hash=plan.hash,
        requester_name=inv.actor.name,
        requester_id=inv.actor.aad_object_id,
        conversation_id=inv.conversation_id,
        state="pending",
        created_at=now,
        expires_at=now + timedelta(minutes=ttl),
        version=plan.target_version,
        current_version=plan.current_version,
        required_approvals=policy.required_count,
        origin=origin,
    )
    await services.store.create_request(request)
    await services.audit.append(
        "Requested",
        environment=plan.environment,
        request_id=request.id,
        actor=actor_fields(inv.actor.name, inv.actor.aad_object_id),
        status="pending",
        detail={
            "command": plan.kind,
            "from": plan.current_version,
            "to": plan.target_version,
            "sha256": plan.sha256,
            "source": plan.source,
            "plan_hash": plan.hash,
            "hosts": list(plan.hosts),
            "excluded": [{"host": e.host, "reason": e.reason} for e in plan.excluded],
            "expires_at": request.expires_at.isoformat() if request.expires_at else None,
        },
    )
    await services.timeline.append(
        f"{plan.kind} {plan.environment} {plan.current_version or '?'} → {plan.target_version} "
        f"requested by {inv.actor.name} ({request.id})"
    )

    async def remember_card(activity_id: str) -> None:
        await services.store.set_card_activity(request.id, activity_id)

    if not policy.required:
        return await _approved_by_policy(call, plan, request, remember_card)
    card = render_approval_card(
        request, plan, services.config.tz, now, break_glass=policy.break_glass
    )
    card = with_freezes(card, await freezes_of(services, [plan.environment]), services.config.tz)
    text = (
        f"{plan.kind.capitalize()} {plan.environment} {plan.current_version or '?'} → "
        f"{plan.target_version}: waiting for approval ({request.id})."
    )
    return Reply(text, card=card, extra={"request_id": request.id}, on_sent=remember_card)


async def _approved_by_policy(
    call: CommandCall,
    plan: Plan,
    request: Request,
    remember_card: Callable[[str], Awaitable[None]],
) -> Reply:
    """`approval.required = false`: no card to click — approved now, audited as such, and
    the bot starts the run once this reply is out (Reply.start_run)."""
    services, inv = call.services, call.invocation
    now = services.now()
    await services.store.transition_request(
        request.id,
        ["pending"],
        "approved",
        decided_by_name=POLICY_APPROVER,
        decided_by_id=None,
        decided_at=now,
    )
    await services.audit.append(
        "Approved",
        environment=plan.environment,
        request_id=request.id,
        actor=actor_fields(inv.actor.name, inv.actor.aad_object_id),
        status="approved",
        detail={
            "plan_hash": plan.hash,
            "by_policy": True,
            "policy": f"environments.{plan.environment}.approval.required = false",
        },
    )
    await services.timeline.append(
        f"{plan.kind} {plan.environment} → {plan.target_version} approved by policy "
        f"(no approval required) for {inv.actor.name} ({request.id})"
    )
    approved = await services.store.get_request(request.id)
    card = render_approval_card(approved or request, plan, services.config.tz, now)
    text = (
        f"{plan.kind.capitalize()} {plan.environment} {plan.current_version or '?'} → "
        f"{plan.target_version}: {plan.environment} needs no approval; starting ({request.id})."
    )
    return Reply(
        text,
        card=card,
        extra={"request_id": request.id},
        on_sent=remember_card,
        start_run=request.id,
    )
