"""The approval card of a rollback/deploy request, in each of its states (pure rendering).

Pending: the plan in full — every component it switches, each host and whether it can be
reached (an excluded host with its reason: the approval includes the exclusion), the steps
from Preflight on, and what happens if it fails (the restore steps, or "left as it is") —
how many approvals it has of how many it needs, and Approve / Reject (Action.Execute, with
an Action.Submit fallback for old clients) — plus Break glass where the environment allows
it. Decided, expired or void: the same plan, no buttons, and a banner saying who decided and
when (a break-glass approval says so in capitals) — this card replaces the original for
everyone. Names, reasons and host errors are escaped (`plain`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from adapters.store.rows import Freeze, Request
from commands.cards import elements as cards
from commands.plan import Plan, gate_ids
from commands.timefmt import show

REASON_INPUT = "reason"
# decided_by_name of a request approved by `approval.required = false`, not by a person.
POLICY_APPROVER = "policy"


def approver_words(request: Request) -> str:
    """Who approved, as the card says it: break glass in capitals, a policy, N approvers."""
    name = request.decided_by_name or "?"
    if request.break_glass:
        return f"BREAK GLASS: {name} ({request.reason or 'no reason'})"
    if request.required_approvals > 1 and request.approvers:
        return request.approvers
    return name


def frozen_words(freeze: Freeze, tz: ZoneInfo) -> str:
    """`frozen by Alex Wilber since 2026-12-02 03:12:00 UTC: REASON` (the typed parts escaped)."""
    return (
        f"frozen by {cards.plain(freeze.frozen_by, 100)} since {show(freeze.since, tz)}: "
        f"{cards.plain(freeze.reason, 300)}"
    )


def with_freezes(card: cards.Card, freezes: Sequence[Freeze], tz: ZoneInfo) -> cards.Card:
    """The card with one line per freeze of the environments it changes, under its title:
    while one stands, Approve is refused (break glass still approves)."""
    if not freezes:
        return card
    lines = [
        cards.text(
            f"**🧊 {f.environment} is {frozen_words(f, tz)}** — Approve is refused until an "
            f"approver types `unlock {f.environment}`; only break glass approves.",
            color="Attention",
        )
        for f in freezes
    ]
    body = list(card["body"])
    return {**card, "body": [*body[:1], *lines, *body[1:]]}


def action_data(request: Request, plan: Plan, verb: str) -> dict[str, Any]:
    """What a click sends back; every field is checked against the stored request."""
    return {
        "verb": verb,
        "request_id": request.id,
        "environment": request.environment,
        "version": plan.target_version,
        "plan_hash": request.plan_hash,
    }


def _button(request: Request, plan: Plan, verb: str, title: str, style: str) -> dict[str, Any]:
    return cards.execute_button(verb, title, action_data(request, plan, verb), style)


def decided_banner(request: Request, tz: ZoneInfo) -> tuple[str, str]:
    """Who decided the request and when, and the banner's color (pending: empty)."""
    who = cards.plain(request.decided_by_name or "?", 100)
    when = show(request.decided_at, tz) if request.decided_at else ""
    state = request.state
    reason = cards.plain(request.reason, 300) if request.reason else ""
    if state == "pending":
        return "", "Default"
    if state == "rejected":
        return f"Rejected by {who} at {when}" + (f": {reason}" if reason else ""), "Attention"
    if state == "expired":
        expired = show(request.expires_at, tz) if request.expires_at else ""
        return f"Expired at {expired} — nobody approved it. Ask again if still needed.", "Warning"
    if state == "void":
        return (
            f"Void: the plan changed after approval ({reason or 'plan differs'}). "
            "Nothing was run; request it again to see the new plan.",
            "Attention",
        )
    if request.break_glass:
        return (
            f"BREAK-GLASS: approved alone by {who} at {when}: {reason} — run state: {state}",
            "Warning",
        )
    if request.decided_by_name == POLICY_APPROVER and request.decided_by_id is None:
        return (
            f"Approved by policy at {when}: {request.environment} needs no approval — "
            f"run state: {state}",
            "Good",
        )
    if request.required_approvals > 1 and request.approvers:
        who = cards.plain(request.approvers, 300)
    return f"Approved by {who} at {when} — run state: {state}", "Good"


def _tally(request: Request) -> str:
    names = request.approvers.split(", ") if request.approvers else []
    text = f"{len(names)} of {request.required_approvals} approvals"
    if names:
        text += " (" + ", ".join(cards.plain(n, 100) for n in names) + ")"
    return text + " — distinct approvers, not the requester"


def components_lines(plan: Plan) -> list[str]:
    """`site MCMS.Portal (pool MCMS.Portal) → D:\\MCMS\\releases\\1.4.1\\Portal`, one per
    component: what the run switches."""
    parts = [
        f"site {s.name} (pool {s.app_pool}) → {plan.site_path(s, plan.target_version)}"
        for s in plan.sites
    ]
    for svc in plan.services:
        image = plan.image_path(svc, plan.target_version)
        parts.append(
            f"service {svc.name} → {image}"
            if image
            else f"service {svc.name} (stopped and started; binaries not switched)"
        )
    return parts


def failure_words(plan: Plan) -> str:
    """What a failure or a cancel after a change does, in the plan's own terms."""
    if not plan.restore_steps:
        return (
            'on_failure = "stop": the run stops at the failing step and leaves every host as '
            "it is, for inspection."
        )
    restore = "; ".join(
        f"R{i}. {s.title.removeprefix('Restore: ')}" for i, s in enumerate(plan.restore_steps, 1)
    )
    return (
        "nothing is stopped when Preflight fails. After a change, a failure or a `cancel` "
        f"restores the pre-run state read by Preflight: {restore}."
    )


def render_approval_card(
    request: Request,
    plan: Plan,
    tz: ZoneInfo,
    now: datetime,
    *,
    break_glass: bool = False,
    preview: bool = False,
) -> cards.Card:
    """The card for `request`; `break_glass`: the environment allows it (a third button);
    `preview`: the plan as `plan` shows it — the same card, no buttons, nothing requested."""
    title = "Rollback" if plan.kind == "rollback" else "Deploy"
    current = plan.current_version or "unknown"
    hosts = [f"{h} ✅ reachable" for h in plan.hosts]
    hosts += [f"{e.host} ❌ EXCLUDED — {cards.plain(e.reason, 300)}" for e in plan.excluded]
    pairs = [
        ("Request", "none — a preview (`plan`): nothing was requested" if preview else request.id),
        ("Environment", plan.environment),
        ("Version", f"{current} → {plan.target_version}"),
        ("Chosen from", plan.source),
        ("Package", f"{plan.package} (SHA-256 {plan.sha256[:12]}…)"),
        ("Components", f"{len(plan.sites)} site(s), {len(plan.services)} service(s): below"),
        ("Hosts", "; ".join(hosts)),
        (
            "Shown to" if preview else "Requested by",
            f"{cards.plain(request.requester_name, 100)} at {show(request.created_at, tz)}",
        ),
    ]
    if plan.gates:
        pairs.append(
            (
                "DR gates",
                f"{', '.join(gate_ids(plan.gates))} after smoke: each must pass, or the run fails",
            )
        )
    if request.expires_at and request.state == "pending":
        pairs.append(("Expires", show(request.expires_at, tz)))
    if request.state == "pending" and request.required_approvals > 1:
        pairs.append(("Approvals", _tally(request)))
    # Titles hold configured paths and script parameters: shown as typed, never as markdown.
    steps = "\n".join(
        f"{i}. {cards.plain(step.title)}" for i, step in enumerate(plan.steps, start=1)
    )
    body: list[cards.Element] = [
        cards.title(f"{title} {plan.environment} to {plan.target_version}?"),
        cards.facts(pairs),
    ]
    if request.origin and request.origin.startswith("bluegreen:"):
        body.append(
            cards.text(
                f"**Blue/green {request.origin.removeprefix('bluegreen:')}, approval 1 of 2**: "
                f"deploy to the idle slot {plan.environment} — it serves no user traffic. "
                "Its gates run next; switching traffic is a second approval.",
                color="Accent",
            )
        )
    if plan.excluded:
        body.append(
            cards.text(
                f"**Approving runs it without {', '.join(e.host for e in plan.excluded)}**: "
                "excluded hosts are not touched and keep what they run now.",
                color="Warning",
            )
        )
    switches = "\n".join(f"- {line}" for line in components_lines(plan))
    body += [
        cards.text("**Switches**"),
        cards.text(switches),
        cards.text("**Plan**"),
        cards.text(steps),
        cards.text(f"**If it fails** — {failure_words(plan)}"),
    ]
    banner, color = decided_banner(request, tz)
    actions: list[cards.Element] = []
    if preview:
        body.insert(
            1,
            cards.text(
                f"**Preview: this is the plan `{plan.kind} {plan.environment}` would ask to "
                "approve now. Nothing was requested; the hosts were only read.**",
                color="Accent",
            ),
        )
    elif request.state == "pending":
        body.append(
            {
                "type": "Input.Text",
                "id": REASON_INPUT,
                "placeholder": "Reason (to reject, or for a break-glass approval)"
                if break_glass
                else "Reason (optional, to reject)",
                "maxLength": 300,
            }
        )
        actions = [
            _button(request, plan, "approve", "Approve", "positive"),
            _button(request, plan, "reject", "Reject", "destructive"),
        ]
        if break_glass:
            actions.append(_button(request, plan, "break_glass", "Break glass", "destructive"))
    else:
        body.insert(1, cards.text(f"**{banner}**", color=color))
    return cards.card(body, actions)
