"""`bluegreen PAIR VERSION` and `switchback PAIR`: the chat side of a blue/green release.

`bluegreen` reads the pair's router (never the bot's records) to learn which slot is live,
refuses unless the farm is one clean live slot and the pair and both slots are free, plans
an ordinary deploy of VERSION to the idle slot, takes the pair (the flow row, see
adapters/store/flows.py) and answers with approval card #1. Everything after that deploy
runs in commands/bluegreen/flows.py.

`switchback PAIR` is the flow card's Switch back button typed: approvers of the pair, once,
for the pair's newest flow.
"""

from __future__ import annotations

from adapters.errors import RemoteError
from adapters.store.rows import Flow
from commands.bluegreen.lock import busy_words, holding_flow
from commands.bluegreen.model import new_flow_id
from commands.cards.approval import frozen_words
from commands.change import Refusal, busy_refusal, create_request, make_plan
from commands.context import Services, actor_fields
from commands.freeze import freezes_of
from commands.hosts import read_hosts
from commands.pair_status import slot_version
from commands.registry import Command, CommandCall
from commands.slots import view_pair
from commands.types import Reply


def _pair_or_refusal(services: Services, word: str | None, usage: str) -> str | Refusal:
    pairs = services.config.pairs
    if word is None:
        known = ", ".join(pairs) or "none configured"
        return Refusal(f"Usage: `{usage}` (pairs: {known}). Nothing was requested.", "usage")
    found = services.config.find_pair(word)
    if found is None:
        known = ", ".join(pairs) or "none configured"
        return Refusal(
            f"There is no blue/green pair `{word}` (pairs: {known}). Nothing was requested.",
            "unknown-pair",
        )
    return found


def _may_operate(services: Services, aad_object_id: str | None, pair: str) -> bool:
    config = services.config
    slots = config.pairs[pair].slots
    return config.has_role(aad_object_id, "operator", pair) or all(
        config.has_role(aad_object_id, "operator", slot) for slot in slots
    )


async def _refuse(call: CommandCall, refusal: Refusal, command: str, pair: str | None) -> Reply:
    inv = call.invocation
    await call.services.audit.append(
        "Refused",
        environment=pair,
        actor=actor_fields(inv.actor.name, inv.actor.aad_object_id),
        status=refusal.reason,
        detail={"command": command, "args": list(call.args)[:4], "reply": refusal.message,
                "correlation_id": inv.correlation_id},
    )  # fmt: skip
    return Reply(refusal.message, refused=True, extra={"reason": refusal.reason})


async def run_bluegreen(call: CommandCall) -> Reply:
    services, inv = call.services, call.invocation
    usage = "bluegreen PAIR VERSION"
    found = _pair_or_refusal(services, call.args[0] if call.args else None, usage)
    if isinstance(found, Refusal):
        return await _refuse(call, found, "bluegreen", None)
    name = found
    if len(call.args) != 2:
        return await _refuse(
            call, Refusal(f"Usage: `{usage}`, e.g. `bluegreen {name} 1.4.3`. Nothing was "
                          "requested.", "usage"), "bluegreen", name,
        )  # fmt: skip
    version = call.args[1]
    if not _may_operate(services, inv.actor.aad_object_id, name):
        pair = services.config.pairs[name]
        return await _refuse(
            call,
            Refusal(
                f"`bluegreen` needs the **operator** role for pair {name} (or for both "
                f"{' and '.join(pair.slots)}). Nothing was requested.",
                "role",
            ),
            "bluegreen",
            name,
        )
    pair = services.config.pairs[name]
    held = await holding_flow(services, name)
    if held is not None:
        return await _refuse(
            call, Refusal(busy_words(services, held, f"Pair {name}"), "pair-busy"), "bluegreen",
            name,
        )  # fmt: skip
    for slot in pair.slots:
        busy = await busy_refusal(services, slot)
        if busy:
            return await _refuse(call, busy, "bluegreen", name)
    # A flow deploys to the idle slot, then switches traffic between both: either frozen
    # stops it (there is no break glass for a blue/green flow).
    for freeze in await freezes_of(services, list(pair.slots)):
        refusal = Refusal(
            f"{freeze.environment} is {frozen_words(freeze, services.config.tz)}; a blue/green "
            f"flow would change it. Nothing was requested. Ask an approver to "
            f"`unlock {freeze.environment}`.",
            "frozen",
        )
        return await _refuse(call, refusal, "bluegreen", name)
    try:
        farm = await services.routers(pair.router).read_farm(timeout_s=pair.router.step_timeout_s)
    except RemoteError as exc:
        return await _refuse(
            call,
            Refusal(
                f"The router of {name} ({pair.router.host.name}) could not be read: {exc}. "
                "Which slot is live is only ever taken from the router, so nothing was requested.",
                "router-unreachable",
            ),
            "bluegreen",
            name,
        )
    view = view_pair(name, pair, farm)
    if view.live is None or not view.clean:
        return await _refuse(
            call,
            Refusal(
                f"The router of {name} is not in a clean blue/green state: "
                f"{'; '.join(view.problems)}. Put the farm right (or `switchback {name}` after an "
                "interrupted switch), then ask again. Nothing was requested.",
                "router-unclean",
            ),
            "bluegreen",
            name,
        )
    live, idle = view.live, pair.other_slot(view.live)
    plan = await make_plan(services, "deploy", idle, version)
    if isinstance(plan, Refusal):
        return await _refuse(call, plan, "bluegreen", name)
    live_env = services.config.environments[live]
    lines = await read_hosts(services, live_env, [h.name for h in live_env.hosts])
    now = services.now()
    flow = Flow(
        id=new_flow_id(), pair=name, version=plan.target_version, from_slot=live, to_slot=idle,
        from_version=slot_version(lines, live_env), state="deploy-pending", active=True,
        requester_name=inv.actor.name, requester_id=inv.actor.aad_object_id,
        conversation_id=inv.conversation_id, card_activity_id=None, deploy_request_id=None,
        switch_request_id=None, gates_json=None, step=None, note=None, switched_at=None,
        watch_ends_at=None, switchback_by=None, created_at=now, updated_at=now,
    )  # fmt: skip
    if await services.store.create_flow(flow) is None:
        raced = await holding_flow(services, name)
        words = busy_words(services, raced, f"Pair {name}") if raced else "Pair is busy."
        return await _refuse(call, Refusal(words, "pair-busy"), "bluegreen", name)
    try:
        reply = await create_request(call, plan, origin=f"bluegreen:{flow.id}")
        await services.store.set_flow(flow.id, deploy_request_id=reply.extra["request_id"])
    except BaseException:
        await services.store.move_flow(
            flow.id, ["deploy-pending"], "stopped", note="the deploy request could not be made"
        )
        raise
    await services.audit.append(
        "BlueGreenRequested", environment=name, request_id=reply.extra["request_id"],
        run_id=flow.id, actor=actor_fields(inv.actor.name, inv.actor.aad_object_id),
        status="deploy-pending",
        detail={"live": live, "idle": idle, "from_version": flow.from_version,
                "to_version": flow.version, "router": view.farm.router},
    )  # fmt: skip
    text = (
        f"Blue/green {flow.id} for {name}: the router says {live} ({flow.from_version}) is "
        f"live, so {version} goes to the idle slot {idle} first — approval #1 of 2 below "
        f"({reply.extra['request_id']}). {reply.text}"
    )
    return Reply(
        text,
        card=reply.card,
        extra={**reply.extra, "flow_id": flow.id},
        on_sent=reply.on_sent,
        start_run=reply.start_run,
    )


async def run_switchback(call: CommandCall) -> Reply:
    services, inv = call.services, call.invocation
    found = _pair_or_refusal(services, call.args[0] if call.args else None, "switchback PAIR")
    if isinstance(found, Refusal):
        return await _refuse(call, found, "switchback", None)
    flow = await services.store.latest_flow(found)
    if flow is None:
        return await _refuse(
            call,
            Refusal(f"Pair {found} has had no blue/green switch to go back from.", "no-flow"),
            "switchback",
            found,
        )
    answer = await services.bluegreen.switch_back(flow.id, inv.actor, inv.tenant_id)
    if answer.card is None:
        return Reply(answer.text, refused=True, extra={"reason": answer.code})
    return Reply(answer.text, card=answer.card, extra={"flow_id": flow.id})


BLUEGREEN = Command(
    name="bluegreen",
    usage="PAIR VERSION",
    summary="Blue/green release: deploy to the idle slot, test it, switch traffic, watch.",
    role=None,
    env_arg="none",
    max_extra_args=2,
    run=run_bluegreen,
    who_note="operators of the pair; two approvals (the deploy, then the switch)",
)
SWITCHBACK = Command(
    name="switchback",
    usage="PAIR",
    summary="Put traffic back on the slot the pair's last blue/green switched from (once).",
    role=None,
    env_arg="none",
    max_extra_args=1,
    run=run_switchback,
    who_note="approvers of the pair",
    suggested=False,  # the flow card's Switch back button is the usual way
)
