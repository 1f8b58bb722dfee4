"""The card of any approval request, whichever command made it: a rollback/deploy plan, or
a blue/green switch (approval card #2)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from adapters.store.rows import Freeze, Request
from commands.bluegreen.model import SWITCH_COMMAND, SwitchProposal
from commands.cards import elements as cards
from commands.cards.approval import render_approval_card, with_freezes
from commands.cards.bluegreen import render_switch_card
from commands.plan import Plan


def render_request_card(
    request: Request,
    tz: ZoneInfo,
    now: datetime,
    *,
    break_glass: bool = False,
    freezes: Sequence[Freeze] = (),
) -> cards.Card:
    """`freezes`: those standing on the environments the request changes (shown while
    the request is pending: they are why Approve is refused)."""
    if request.command == SWITCH_COMMAND:
        proposal = SwitchProposal.from_json(request.plan_json)
        card = render_switch_card(request, proposal, tz, now, break_glass=break_glass)
    else:
        plan = Plan.from_json(request.plan_json)
        card = render_approval_card(request, plan, tz, now, break_glass=break_glass)
    return with_freezes(card, freezes, tz) if request.state == "pending" else card
