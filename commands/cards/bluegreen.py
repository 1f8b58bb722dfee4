"""The blue/green cards (pure): approval card #2 (the switch) and the flow's progress card.

Card #2 asks the one question the playbook asks — "Switch production traffic from X (v) to
Y (v)?" — with the gate results, who approved the deploy, and what users will notice. The
progress card is edited in place through the whole flow: each gate, each router step, the
watch's countdown and last look, the end in words, and — while it may be used — the
Switch back button (approvers of the pair, once).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from adapters.store.rows import Flow, Request
from commands.bluegreen.model import SWITCHBACK_VERB, GateLine, SwitchProposal
from commands.cards import elements as cards
from commands.cards.approval import REASON_INPUT, decided_banner
from commands.timefmt import show

GATE_ICONS = {"passed": "✅", "failed": "❌", "cancelled": "⛔", "not-run": "⏭️", "running": "▶️"}
STATE_TITLES = {
    "deploy-pending": ("BG-1 deploy to the idle slot", "Accent"),
    "deploying": ("BG-1 deploy to the idle slot", "Accent"),
    "gating": ("BG-2 gates on the idle slot", "Accent"),
    "switch-pending": ("BG-3 waiting for approval to switch", "Accent"),
    "switching": ("BG-4 switching at the router", "Accent"),
    "watching": ("BG-4 watching", "Accent"),
    "switching-back": ("BG-5 switching back", "Warning"),
    "live": ("LIVE", "Good"),
    "switched-back": ("SWITCHED BACK", "Warning"),
    "stopped": ("stopped before the switch", "Warning"),
    "failed": ("FAILED", "Attention"),
    "interrupted": ("interrupted", "Warning"),
}


def switch_action_data(request: Request, verb: str) -> dict[str, Any]:
    """What a click on card #2 sends back; every field is checked against the stored request."""
    return {
        "verb": verb,
        "request_id": request.id,
        "environment": request.environment,
        "version": request.version or "",
        "plan_hash": request.plan_hash,
    }


def gate_lines(gates: tuple[GateLine, ...]) -> str:
    return "\n".join(
        f"- {GATE_ICONS.get(g.outcome, '•')} {g.test} {g.outcome}"
        + (f" — {cards.plain(g.summary, 300)}" if g.summary else "")
        for g in gates
    )


def render_switch_card(
    request: Request,
    proposal: SwitchProposal,
    tz: ZoneInfo,
    now: datetime,
    *,
    break_glass: bool = False,
) -> cards.Card:
    """Approval card #2 for `request` (command "switch"), in each of its states."""
    pairs = [
        ("Request", request.id),
        ("Blue/green", f"{proposal.flow_id}, pair {proposal.pair}"),
        ("From", f"{proposal.from_slot} ({proposal.from_version}) — serves users now"),
        ("To", f"{proposal.to_slot} ({proposal.to_version}) — deployed and tested, idle"),
        ("Router", proposal.router),
        (
            "Deploy approved by",
            f"{cards.plain(proposal.deploy_approved_by, 200)} ({proposal.deploy_request_id})",
        ),
        (
            "Requested by",
            f"{cards.plain(request.requester_name, 100)} at {show(request.created_at, tz)}",
        ),
    ]
    if request.expires_at and request.state == "pending":
        pairs.append(("Expires", show(request.expires_at, tz)))
    body: list[cards.Element] = [
        cards.title(proposal.question),
        cards.facts(pairs),
        cards.text("**Gates on the idle slot**"),
        cards.text(gate_lines(proposal.gates) or "none"),
        cards.text(f"**Expected impact** — {proposal.impact}"),
    ]
    actions: list[cards.Element] = []
    if request.state == "pending":
        body.append(
            {
                "type": "Input.Text",
                "id": REASON_INPUT,
                "placeholder": "Reason (optional, to reject)",
                "maxLength": 300,
            }
        )
        actions = [
            cards.execute_button(
                "approve", "Approve switch", switch_action_data(request, "approve"), "positive"
            ),
            cards.execute_button(
                "reject", "Reject", switch_action_data(request, "reject"), "destructive"
            ),
        ]
        if break_glass:
            actions.append(
                cards.execute_button(
                    "break_glass",
                    "Break glass",
                    switch_action_data(request, "break_glass"),
                    "destructive",
                )
            )
    else:
        banner, color = decided_banner(request, tz)
        body.insert(1, cards.text(f"**{banner}**", color=color))
    return cards.card(body, actions)


@dataclass(frozen=True)
class FlowView:
    """The flow card's content: the stored flow plus what the running flow knows now."""

    flow: Flow
    gates: tuple[GateLine, ...] = ()
    steps: tuple[str, ...] = ()  # router steps done, in words (✅/❌ first)
    seconds_left: float | None = None  # the watch's countdown
    last_look: str | None = None  # the watch's last tick in words
    live_now: str | None = None  # what the router says now, in words
    switch_approved_by: str | None = None
    switchback_open: bool = False  # the Switch back button may be offered


def render_flow_card(view: FlowView, tz: ZoneInfo) -> cards.Card:
    flow = view.flow
    words, color = STATE_TITLES.get(flow.state, (flow.state, "Default"))
    pairs = [
        ("Blue/green", f"{flow.id}, pair {flow.pair}"),
        (
            "Traffic",
            f"{flow.from_slot} ({flow.from_version or '?'}) → {flow.to_slot} ({flow.version})",
        ),
        (
            "Requested by",
            f"{cards.plain(flow.requester_name, 100)} at {show(flow.created_at, tz)}",
        ),
        ("Deploy (approval #1)", flow.deploy_request_id or "—"),
    ]
    if flow.switch_request_id:
        who = (
            f", approved by {cards.plain(view.switch_approved_by, 200)}"
            if (view.switch_approved_by)
            else ""
        )
        pairs.append(("Switch (approval #2)", f"{flow.switch_request_id}{who}"))
    if flow.switched_at:
        pairs.append(("Switched at", show(flow.switched_at, tz)))
    if view.seconds_left is not None and flow.state == "watching":
        left = max(0, int(view.seconds_left))
        until = show(flow.watch_ends_at, tz) if flow.watch_ends_at else "?"
        pairs.append(("Watch", f"{left // 60} min {left % 60:02d} s left (until {until})"))
    if view.last_look:
        pairs.append(("Last look", cards.plain(view.last_look, 400)))
    if view.live_now:
        pairs.append(("Router now", cards.plain(view.live_now, 600)))
    if flow.switchback_by:
        pairs.append(("Switch back", f"requested by {cards.plain(flow.switchback_by, 100)}"))
    body: list[cards.Element] = [
        cards.title(f"Blue/green {flow.pair} → {flow.version}: {words}", color),
        cards.facts(pairs),
    ]
    if view.gates:
        body += [cards.text("**Gates on the idle slot**"), cards.text(gate_lines(view.gates))]
    if view.steps:
        body += [
            cards.text("**Router steps**"),
            cards.text("\n".join(f"- {cards.plain(s, 300)}" for s in view.steps)),
        ]
    if flow.note:
        body.append(cards.text(cards.plain(flow.note, 1000), color=color))
    actions: list[cards.Element] = []
    if view.switchback_open:
        actions.append(
            cards.execute_button(
                SWITCHBACK_VERB,
                f"Switch back to {flow.from_slot}",
                {"verb": SWITCHBACK_VERB, "flow_id": flow.id, "pair": flow.pair},
                "destructive",
            )
        )
    return cards.card(body, actions)
