"""Blue/green end to end: chat → two approvals → the lab's hosts and router farm.

Every verdict here reads the lab — the router's farm (which server is enabled and in which
state), the version the public URL answers with, the slot host's release — not the bot's
words; the bot's cards and the store are checked beside them.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.store.rows import Flow
from bench.load import run_load
from tests.card_schema import card_problems
from tests.conftest import ADELE, MEGAN, Chat, ChatSetup, ConfigEdit, card_texts
from tests.teams_factory import ALEX

pytestmark = pytest.mark.slow

PROD, STAGE = "prod-web01", "stage-web01"
VERSION = "1.4.3"


@pytest.fixture
def config_edit() -> ConfigEdit:
    def edit(raw: dict[str, Any]) -> None:
        pair = raw["pairs"]["prod"]
        # A 3-second watch, looked at twice a second: the flow of minutes, in seconds.
        pair["watch"] = {"window_minutes": 0.05, "interval_s": 0.5, "max_error_rate_pct": 1.0}
        # Two people: Megan (operator) asks, Alex (approver of both slots) approves.
        pair["approval"] = {"required": True, "self_approval": False, "ttl_minutes": 15}

    return edit


def farm(chat: Chat) -> dict[str, tuple[bool, str]]:
    """The router's farm as the lab holds it: address → (enabled, runtime state)."""
    servers = chat.lab.farm(chat.lab.router_for("prod"))["servers"]
    return {s["address"]: (s["enabled"], s["state"]) for s in servers}


LIVE_PROD = {PROD: (True, "Available"), STAGE: (False, "Unavailable")}
LIVE_STAGE = {PROD: (False, "Unavailable"), STAGE: (True, "Available")}


async def public_version(chat: Chat) -> str:
    """What users get: the version Health answers with through the router's public URL."""
    url = chat.lab.public_url(chat.lab.router_for("prod")) + "/health"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        return str(json.loads(await response.text())["version"])


async def flow_in(chat: Chat, flow_id: str, *states: str, timeout: float = 40) -> Flow:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        flow = await chat.store.get_flow(flow_id)
        if flow is not None and flow.state in states:
            await chat.settle()
            return flow
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{flow_id} stuck in {flow and flow.state}, wanted {states}")
        await asyncio.sleep(0.05)


async def until(read: Callable[[], Awaitable[list[Any]]], timeout: float = 10) -> list[Any]:
    """Poll an async read until it returns something (work finishing in the background)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not (found := await read()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"nothing within {timeout} s")
        await asyncio.sleep(0.05)
    return found


def card_with(chat: Chat, first_text: str) -> dict[str, Any]:
    return next(c for c in reversed(chat.cards) if card_texts(c)[0].startswith(first_text))


def latest_version_of(chat: Chat, card: dict[str, Any]) -> dict[str, Any]:
    """The newest edit of a posted card (the flow card is edited in place)."""
    message = chat.card_message_id(card)
    puts = chat.puts(message)
    if not puts:
        return card
    content: dict[str, Any] = puts[-1].body["attachments"][0]["content"]
    return content


async def flow_card_reads(chat: Chat, title: str) -> dict[str, Any]:
    """The flow card once its newest edit has `title` (edits are queued in the background)."""
    await chat.eventually(
        lambda: card_texts(latest_version_of(chat, card_with(chat, "Blue/green prod")))[0] == title
    )
    return latest_version_of(chat, card_with(chat, "Blue/green prod"))


def audit_events(chat: Chat) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for path in sorted(Path(chat.config.paths.audit_dir).glob("*.jsonl")):
        lines += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return lines


async def start(chat: Chat, *, approve: bool = True) -> tuple[str, str]:
    """`bluegreen prod 1.4.3` by Megan, approval #1 by Alex; the flow and its deploy id."""
    reply = await chat.say(f"bluegreen prod {VERSION}", user=MEGAN)
    assert "approval #1 of 2" in reply.text, reply.text
    flow_id = reply.text.split()[1]
    card = chat.cards[-1]
    texts = card_texts(card)
    assert texts[0] == f"Deploy InternalStage to {VERSION}?"
    assert any("approval 1 of 2" in t and "serves no user traffic" in t for t in texts)
    flow = await chat.store.get_flow(flow_id)
    assert flow is not None and flow.deploy_request_id
    if approve:
        await chat.click("approve", card, user=ALEX)
    return flow_id, flow.deploy_request_id


async def card_two(chat: Chat, flow_id: str) -> dict[str, Any]:
    """Approval card #2 of this flow, once the bot has posted it."""
    flow = await flow_in(chat, flow_id, "switch-pending")

    def posted() -> dict[str, Any] | None:
        return next(
            (
                c
                for c in chat.cards
                if any(
                    a.get("data", {}).get("request_id") == flow.switch_request_id
                    for a in c.get("actions", [])
                )
            ),
            None,
        )

    await chat.eventually(lambda: posted() is not None)
    card = posted()
    assert card is not None
    return card


async def approve_switch(chat: Chat, flow_id: str, user: Any = ALEX) -> dict[str, Any]:
    card = await card_two(chat, flow_id)
    await chat.click("approve", card, user=user)
    return card


async def test_bluegreen_deploys_gates_switches_and_goes_live_after_two_approvals(
    chat: Chat,
) -> None:
    assert farm(chat) == LIVE_PROD
    assert await public_version(chat) == "1.4.0"

    flow_id, deploy_id = await start(chat)
    request = await chat.wait_request(deploy_id, "succeeded", "failed")
    assert request.state == "succeeded"
    # BG-1 touched only the idle slot; users still get prod's version.
    stage = chat.lab.state(STAGE)
    assert {s["release"] for s in stage["sites"].values()} == {VERSION}
    assert {s["release"] for s in chat.lab.state(PROD)["sites"].values()} == {"1.4.0"}
    assert farm(chat) == LIVE_PROD

    card2 = await card_two(chat, flow_id)
    texts = card_texts(card2)
    assert texts[0] == (
        f"Switch production traffic from InternalProd (1.4.0) to InternalStage ({VERSION})?"
    )
    assert any("DR-SMOKE passed" in t for t in texts)
    assert any(t.startswith("Deploy approved by") and "Alex Wilber" in t for t in texts)
    assert any("Expected impact" in t for t in texts)
    assert any("✅ Approved" in r.body.get("text", "") for r in chat.replies)
    assert farm(chat) == LIVE_PROD  # nothing switched before approval #2

    # Megan asked; she may not approve her own switch (two-person rule of the pair).
    refused = await chat.click("approve", card2, user=MEGAN)
    assert refused["value"]["code"] == "Forbidden"
    assert farm(chat) == LIVE_PROD
    await chat.click("approve", card2, user=ALEX)
    flow = await flow_in(chat, flow_id, "live")

    assert farm(chat) == LIVE_STAGE
    assert await public_version(chat) == VERSION
    # The old slot stays started (warm standby), untouched.
    prod = chat.lab.state(PROD)
    assert {s["release"] for s in prod["sites"].values()} == {"1.4.0"}
    assert all(s["state"] == "Started" for s in prod["sites"].values())
    assert flow.switched_at is not None and flow.switchback_by is None
    switch = await chat.store.get_request(flow.switch_request_id or "")
    assert switch is not None and switch.state == "succeeded"
    live = await chat.store.pair_live("prod")
    assert live is not None and (live.live_slot, live.source) == ("InternalStage", "switch")
    # The flow's own audit lines, in order (the deploy run has its own, with its run id).
    events = [e["event"] for e in audit_events(chat) if e.get("run_id") == flow_id]
    assert [e for e in events if e not in ("Gate", "RouterStep")] == [
        "BlueGreenRequested", "Approved", "Requested", "SwitchStarted", "Switched", "Deployed",
    ]  # fmt: skip
    assert events.count("Gate") == 1 and events.count("RouterStep") == 4
    final = await flow_card_reads(chat, f"Blue/green prod → {VERSION}: LIVE")
    assert [a["verb"] for a in final["actions"]] == ["switchback"]
    # The pair is free again; status reads the router and offers the way back.
    assert await chat.store.active_flow("prod") is None
    await chat.say("status")
    texts = card_texts(chat.cards[-1])
    assert any(t.startswith("Live slot: InternalStage — 1.4.3") for t in texts), texts
    assert any(t.startswith("Switch back: `switchback prod`") for t in texts), texts


async def test_a_gate_failing_on_the_idle_slot_stops_before_card_two_with_nothing_switched(
    chat: Chat,
) -> None:
    flow_id, deploy_id = await start(chat)
    # Not before the deploy: its own smoke must pass. The flow reads the router before its
    # gates; held there, the slot breaks, then the gates run.
    router = chat.lab.router_for("prod")
    chat.lab.hold(router, "arr-read-farm")
    await chat.wait_request(deploy_id, "succeeded", "failed")
    await chat.eventually(lambda: bool(chat.lab.held(router)), timeout=20)
    chat.lab.set_fault(STAGE, "health", "error")
    chat.lab.release(router)
    flow = await flow_in(chat, flow_id, "stopped", "switch-pending")
    assert flow.state == "stopped"
    assert flow.note is not None and "Gate DR-SMOKE failed on InternalStage" in flow.note
    assert flow.switch_request_id is None
    assert not any(card_texts(c)[0].startswith("Switch production") for c in chat.cards)
    assert farm(chat) == LIVE_PROD
    assert await public_version(chat) == "1.4.0"
    assert await chat.store.active_flow("prod") is None
    assert "Switched" not in [e["event"] for e in audit_events(chat)]


def _e2e_gate(raw: dict[str, Any]) -> None:
    raw["pairs"]["prod"]["gates"] = ["e2e"]


NO_NODE = shutil.which("node") is None and os.environ.get("CI") != "true"


# A DR test the pair lists (the lab's real regression suite, node's test runner) fails on
# the idle slot: no card #2, nothing switched.
@pytest.mark.skipif(NO_NODE, reason="the lab's regression suite needs node")
@pytest.mark.parametrize("chat", [ChatSetup(tweak=_e2e_gate)], indirect=True)
async def test_a_dr_gate_failing_on_the_idle_slot_stops_the_flow(chat: Chat) -> None:
    chat.lab.set_fault(STAGE, "login", "error")  # smoke passes; the user flows do not
    flow_id, deploy_id = await start(chat)
    request = await chat.wait_request(deploy_id, "succeeded", "failed")
    assert request.state == "succeeded"  # the deploy's smoke does not look at the login
    flow = await flow_in(chat, flow_id, "stopped", "switch-pending", timeout=120)
    assert flow.state == "stopped"
    gates = json.loads(flow.gates_json or "[]")
    assert [(g["test"], g["outcome"]) for g in gates] == [
        ("DR-SMOKE", "passed"),
        ("DR-E2E", "failed"),
    ]
    assert flow.note is not None and "Gate DR-E2E failed on InternalStage" in flow.note
    assert farm(chat) == LIVE_PROD
    assert not any(card_texts(c)[0].startswith("Switch production") for c in chat.cards)


async def test_a_failing_watch_switches_back_automatically_and_raises_an_alert(
    chat: Chat,
) -> None:
    flow_id, deploy_id = await start(chat)
    await chat.wait_request(deploy_id, "succeeded", "failed")
    await approve_switch(chat, flow_id)
    await flow_in(chat, flow_id, "watching")
    assert farm(chat) == LIVE_STAGE
    chat.lab.set_fault(STAGE, "health", "error")  # the new slot breaks during the window
    flow = await flow_in(chat, flow_id, "switched-back", "failed", "live")
    assert flow.state == "switched-back"
    assert farm(chat) == LIVE_PROD
    assert await public_version(chat) == "1.4.0"
    assert flow.note is not None and "Switched back automatically" in flow.note
    alerts_now = await until(lambda: chat.store.open_run_alerts("InternalStage"))
    assert [(a.kind, a.run_id) for a in alerts_now] == [("run", flow_id)]
    live = await chat.store.pair_live("prod")
    assert live is not None and live.live_slot == "InternalProd"
    assert "RolledBack" in [e["event"] for e in audit_events(chat)]
    # Automatic: the Switch back button is gone (it was used by the flow itself).
    final = await flow_card_reads(chat, f"Blue/green prod → {VERSION}: SWITCHED BACK")
    assert not final.get("actions")


async def test_switch_back_works_once_and_only_for_approvers_of_the_pair(chat: Chat) -> None:
    flow_id, deploy_id = await start(chat)
    await chat.wait_request(deploy_id, "succeeded", "failed")
    await approve_switch(chat, flow_id)
    await flow_in(chat, flow_id, "live")
    assert farm(chat) == LIVE_STAGE
    card = await flow_card_reads(chat, f"Blue/green prod → {VERSION}: LIVE")
    posted = card_with(chat, f"Blue/green prod → {VERSION}")
    message = chat.card_message_id(posted)

    # Megan is no approver; Adele approves InternalProd only, not both slots.
    for user in (MEGAN, ADELE):
        answer = await chat.click("switchback", card, user=user, reply_to_id=message)
        assert answer["value"]["code"] == "Forbidden", answer
        assert farm(chat) == LIVE_STAGE
    reply = await chat.say("switchback prod", user=MEGAN)
    assert "approver" in reply.text and farm(chat) == LIVE_STAGE

    answer = await chat.click("switchback", card, user=ALEX, reply_to_id=message)
    assert answer["statusCode"] == 200, answer
    flow = await flow_in(chat, flow_id, "switched-back", "failed")
    assert flow.state == "switched-back" and flow.switchback_by == ALEX.name
    assert farm(chat) == LIVE_PROD
    assert await public_version(chat) == "1.4.0"
    # A deliberate switch back raises no alert.
    assert await chat.store.open_run_alerts("InternalStage") == []

    # Once only: the button again, and the command, are refused; the farm does not move.
    again = await chat.click("switchback", card, user=ALEX, reply_to_id=message)
    assert again["value"]["code"] == "AlreadyUsed"
    reply = await chat.say("switchback prod", user=ALEX)
    assert "already switched back" in reply.text
    assert farm(chat) == LIVE_PROD


async def test_the_pair_is_locked_for_the_whole_flow(chat: Chat) -> None:
    flow_id, deploy_id = await start(chat, approve=False)
    card1 = chat.cards[-1]
    await chat.say("status")
    assert any(t.startswith(f"Blue/green: {flow_id} → {VERSION}, at BG-1")
               for t in card_texts(chat.cards[-1]))  # fmt: skip
    for text in ("bluegreen prod 1.4.3", "rollback InternalProd", "deploy InternalStage 1.4.3"):
        reply = await chat.say(text, user=ALEX)
        assert f"blue/green `{flow_id}`" in reply.text, (text, reply.text)
        assert "Nothing was requested." in reply.text
    await chat.click("approve", card1, user=ALEX)
    await chat.wait_request(deploy_id, "succeeded", "failed")
    await flow_in(chat, flow_id, "switch-pending")
    reply = await chat.say("rollback InternalStage", user=ALEX)
    assert "BG-3, waiting for approval to switch traffic" in reply.text


async def test_the_watch_shows_a_countdown_and_its_last_look_on_the_flow_card(
    chat: Chat,
) -> None:
    flow_id, deploy_id = await start(chat)
    await chat.wait_request(deploy_id, "succeeded", "failed")
    await approve_switch(chat, flow_id)
    await flow_in(chat, flow_id, "live")
    posted = card_with(chat, "Blue/green prod")
    edits = [p.body["attachments"][0]["content"] for p in chat.puts(chat.card_message_id(posted))]
    lines = [t for card in edits for t in card_texts(card)]
    countdowns = [t for t in lines if t.startswith("Watch:") and " s left (until " in t]
    assert countdowns, lines
    assert any(t.startswith("Last look:") and "smoke 3/3" in t for t in lines)
    assert any("Router now:" in t and "InternalStage is live" in t for t in lines)
    # Every state of both blue/green cards is a valid Adaptive Card 1.5.
    for card in [*edits, card_with(chat, "Switch production"), *chat.cards]:
        assert card_problems(card) == []


async def test_a_farm_changed_behind_the_bot_before_the_switch_stops_it_unswitched(
    chat: Chat,
) -> None:
    flow_id, deploy_id = await start(chat)
    await chat.wait_request(deploy_id, "succeeded", "failed")
    await flow_in(chat, flow_id, "switch-pending")
    # Someone puts stage into rotation by hand while card #2 waits.
    chat.lab.set_farm_server(chat.lab.router_for("prod"), STAGE, enabled=True, state="Available")
    await approve_switch(chat, flow_id)
    flow = await flow_in(chat, flow_id, "failed", "live", "switched-back")
    assert flow.state == "failed"
    assert flow.note is not None and "no longer shows InternalProd as the live slot" in flow.note
    assert "both InternalProd and InternalStage are online" in flow.note
    # The bot did not touch the farm: it is exactly as the hand left it.
    assert farm(chat) == {PROD: (True, "Available"), STAGE: (True, "Available")}
    assert "SwitchStarted" not in [e["event"] for e in audit_events(chat)]
    # status says so too, read from the router.
    await chat.say("status")
    assert any("both InternalProd and InternalStage are online" in t
               for t in card_texts(chat.cards[-1]))  # fmt: skip


async def test_card_two_expired_or_clicked_twice_switches_nothing_more(chat: Chat) -> None:
    flow_id, deploy_id = await start(chat)
    await chat.wait_request(deploy_id, "succeeded", "failed")
    card2 = await card_two(chat, flow_id)
    chat.clock.advance(minutes=16)  # past the pair's 15-minute ttl
    answer = await chat.click("approve", card2, user=ALEX)
    assert answer["value"]["code"] == "Expired"
    flow = await flow_in(chat, flow_id, "stopped")
    assert flow.note is not None and "is expired: nothing was switched" in flow.note
    assert farm(chat) == LIVE_PROD
    assert await chat.store.active_flow("prod") is None  # the pair is free again
    chat.clock.advance(minutes=-16)

    # A new flow; its card #2 approved twice (a double click): one switch.
    flow_id, deploy_id = await start(chat)
    await chat.wait_request(deploy_id, "succeeded", "failed")
    card2 = await approve_switch(chat, flow_id)
    again = await chat.click("approve", card2, user=ALEX)
    assert again["statusCode"] == 200  # the decided card, as for any request
    await flow_in(chat, flow_id, "live")
    assert farm(chat) == LIVE_STAGE
    events = [e for e in audit_events(chat) if e.get("run_id") == flow_id]
    assert [e["event"] for e in events].count("SwitchStarted") == 1


def _long_watch(raw: dict[str, Any]) -> None:
    raw["pairs"]["prod"]["watch"] = {"window_minutes": 5, "interval_s": 1}


@pytest.mark.parametrize("chat", [ChatSetup(tweak=_long_watch)], indirect=True)
async def test_switch_back_during_the_watch_window_ends_it_at_once(chat: Chat) -> None:
    flow_id, deploy_id = await start(chat)
    await chat.wait_request(deploy_id, "succeeded", "failed")
    await approve_switch(chat, flow_id)
    await flow_in(chat, flow_id, "watching")
    assert farm(chat) == LIVE_STAGE
    reply = await chat.say("switchback prod", user=ALEX)
    assert "Switching prod back to InternalProd" in reply.text, reply.text
    # Well inside the 5-minute window: the watch stops and traffic goes back.
    flow = await flow_in(chat, flow_id, "switched-back", "failed", timeout=30)
    assert flow.state == "switched-back" and flow.switchback_by == ALEX.name
    assert farm(chat) == LIVE_PROD
    assert await public_version(chat) == "1.4.0"
    switch = await chat.store.get_request(flow.switch_request_id or "")
    assert switch is not None and switch.state == "succeeded"  # it did switch; undone on request
    assert await chat.store.open_run_alerts("InternalStage") == []


async def test_users_see_no_failed_request_while_the_chat_flow_switches(chat: Chat) -> None:
    """Card #2 is approved under a steady load through the router: every answer is a 2xx,
    and both slots served some of them (the switch really happened under the load)."""
    flow_id, deploy_id = await start(chat)
    await chat.wait_request(deploy_id, "succeeded", "failed")
    card2 = await card_two(chat, flow_id)

    async def approve() -> None:
        await chat.click("approve", card2, user=ALEX)

    url = chat.lab.public_url(chat.lab.router_for("prod")) + "/health"
    load = await run_load(url, rate=50, count=400, started=approve)
    await flow_in(chat, flow_id, "live")
    assert load.sent == 400
    assert load.failed == 0, load
    assert load.served_by[PROD] > 0 and load.served_by[STAGE] > 0, load.served_by
    assert farm(chat) == LIVE_STAGE


async def test_a_frozen_slot_refuses_a_new_flow_and_the_approval_of_its_switch(
    chat: Chat,
) -> None:
    why = "audit of the production farm until noon"
    await chat.say(f"lock InternalStage {why}", user=ALEX)
    refused = await chat.say(f"bluegreen prod {VERSION}", user=MEGAN)
    assert refused.text.startswith("InternalStage is frozen by Alex Wilber since "), refused.text
    assert "a blue/green flow would change it. Nothing was requested." in refused.text
    assert await chat.store.active_flow("prod") is None
    await chat.say("unlock InternalStage", user=ALEX)

    flow_id, deploy_id = await start(chat)
    await chat.wait_request(deploy_id, "succeeded", "failed")
    card2 = await card_two(chat, flow_id)
    # Frozen after card #2 was posted: the switch moves InternalProd's users too.
    await chat.say(f"lock InternalProd {why}", user=ALEX)
    answer = await chat.click("approve", card2, user=ALEX)
    assert answer["value"]["code"] == "Frozen", answer
    assert "InternalProd is frozen by Alex Wilber" in answer["value"]["message"]
    await asyncio.sleep(0.5)
    assert farm(chat) == LIVE_PROD  # nothing switched
    flow = await chat.store.get_flow(flow_id)
    assert flow is not None and flow.state == "switch-pending"
    await chat.say("unlock InternalProd", user=ALEX)
    await chat.click("approve", card2, user=ALEX)
    await flow_in(chat, flow_id, "live")
    assert farm(chat) == LIVE_STAGE
