"""The pair lock in words: a blue/green flow holds its pair, and so both slots, from
`bluegreen` to the end of its watch (or of a switch back).

A flow waiting on a request that can no longer go anywhere (rejected, expired, void, or
whose deploy run ended without success) is settled here, lazily, the first time anyone
asks: it ends `stopped` — nothing was switched — and the pair is free again.
"""

from __future__ import annotations

from adapters.store.rows import Flow
from commands.bluegreen.model import pair_of
from commands.context import Services
from commands.timefmt import show

# A request in one of these states will never move its flow on.
DEAD_REQUEST_STATES = ("rejected", "expired", "void", "failed", "cancelled", "interrupted")
FLOW_WORDS = {
    "deploy-pending": "BG-1, deploying the new version to the idle slot",
    "deploying": "BG-1, deploying the new version to the idle slot",
    "gating": "BG-2, testing the idle slot",
    "switch-pending": "BG-3, waiting for approval to switch traffic",
    "switching": "BG-4, switching traffic at the router",
    "watching": "BG-4, watching after the switch",
    "switching-back": "BG-5, switching traffic back",
}


async def settle_stale(services: Services, flow: Flow) -> Flow | None:
    """The flow if it still holds its pair; None once a dead request has ended it."""
    waiting_on = {
        "deploy-pending": flow.deploy_request_id,
        "switch-pending": flow.switch_request_id,
    }.get(flow.state)
    if waiting_on is None:
        return flow
    request = await services.store.get_request(waiting_on)
    state = request.state if request is not None else "missing"
    dead = state in DEAD_REQUEST_STATES or state == "missing"
    # A deploy that succeeded while nobody was there to go on (the bot restarted at its end).
    orphaned = flow.state == "deploy-pending" and state == "succeeded"
    if not (dead or orphaned):
        return flow
    why = (
        f"request {waiting_on} is {state}"
        if dead
        else f"the deploy {waiting_on} succeeded but the bot restarted before the gates ran"
    )
    note = f"{why}: nothing was switched. {flow.from_slot} still serves users."
    if await services.store.move_flow(flow.id, [flow.state], "stopped", note=note):
        await services.audit.append(
            "BlueGreenStopped",
            environment=flow.pair,
            request_id=waiting_on,
            run_id=flow.id,
            status="stopped",
            detail={"note": note},
        )
        await services.timeline.append(f"bluegreen {flow.pair} → {flow.version} stopped: {note}")
        return None
    fresh = await services.store.get_flow(flow.id)
    return fresh if fresh is not None and fresh.active else None


async def holding_flow(services: Services, pair: str) -> Flow | None:
    flow = await services.store.active_flow(pair)
    return None if flow is None else await settle_stale(services, flow)


def busy_words(services: Services, flow: Flow, subject: str) -> str:
    what = FLOW_WORDS.get(flow.state, flow.state)
    since = show(flow.created_at, services.config.tz)
    return (
        f"{subject} is held by blue/green `{flow.id}` ({flow.pair} → {flow.version}, requested "
        f"by {flow.requester_name} at {since}), now at {what}. Wait for it to end"
        + (
            f", or use `switchback {flow.pair}` to put traffic back on {flow.from_slot}"
            if flow.state == "watching"
            else ""
        )
        + ". Nothing was requested."
    )


async def pair_busy(
    services: Services, environment: str, own_request_id: str | None = None
) -> str | None:
    """Why nothing may change `environment` now because its pair is in a flow, or None.

    `own_request_id`: a request of that flow itself (its deploy) is not refused."""
    pair = pair_of(services.config, environment)
    if pair is None:
        return None
    flow = await holding_flow(services, pair)
    if flow is None or (own_request_id and own_request_id == flow.deploy_request_id):
        return None
    return busy_words(services, flow, f"{environment} is a slot of pair {pair}, which")
