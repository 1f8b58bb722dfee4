"""kill -9 during a blue/green drain: the bot, a real subprocess, dies with the old slot
draining; at the next start the flow is `interrupted`, the router is read fresh, and the
conversation is told which slot is live — nothing is switched at start. `switchback` is
then the way out, and the lab's farm shows it took.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from lab.core import Lab
from tests.fake_connector import ConnectorCall, FakeConnector
from tests.lab_fixtures import write_lab_config
from tests.runs.test_restart import BotProcess, _free_port
from tests.teams_factory import make_invoke, make_message

pytestmark = pytest.mark.slow

CONVERSATION = "conv-bluegreen"
PROD, STAGE = "prod-web01", "stage-web01"


def farm(lab: Lab) -> dict[str, tuple[bool, str]]:
    servers = lab.farm(lab.router_for("prod"))["servers"]
    return {s["address"]: (s["enabled"], s["state"]) for s in servers}


def flow_row(db: Path) -> sqlite3.Row:
    with sqlite3.connect(db, timeout=5) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM bluegreen").fetchone()
    assert row is not None
    return row


async def wait_for(
    connector: FakeConnector, after: int, found: Any, what: str, timeout: float = 60
) -> ConnectorCall:
    """The first connector call after index `after` for which `found(call)` holds."""
    for _ in range(int(timeout / 0.05)):
        for call in connector.calls[after:]:
            if found(call):
                return call
        await asyncio.sleep(0.05)
    texts = [c.text for c in connector.calls[after:]]
    raise AssertionError(f"no {what}; the bot posted: {texts}")


def card_title(call: ConnectorCall) -> str:
    attachments = call.body.get("attachments") or []
    if not attachments or call.method != "POST":
        return ""
    body = attachments[0]["content"].get("body") or [{}]
    return str(body[0].get("text", ""))


async def click_approve(bot: BotProcess, connector: FakeConnector, call: ConnectorCall) -> None:
    action = call.body["attachments"][0]["content"]["actions"][0]
    assert action["verb"] == "approve"
    invoke = make_invoke(
        "approve", action["data"], reply_to_id=call.assigned_id or "",
        service_url=connector.url, conversation_id=CONVERSATION,
    )  # fmt: skip
    assert await bot.post(invoke) < 300


async def say(bot: BotProcess, connector: FakeConnector, text: str) -> None:
    message = make_message(text, service_url=connector.url, conversation_id=CONVERSATION)
    assert await bot.post(message) < 300


async def drive_to_the_drain(
    bot: BotProcess, connector: FakeConnector, lab: Lab, router: str, *, wait_s: float
) -> None:
    """`bluegreen prod 1.4.3`, both cards approved, until the switch's drain wait is held on
    the router (the caller holds `arr-wait-drain` there first): the flow is mid-switch."""
    start = len(connector.calls)
    await say(bot, connector, "bluegreen prod 1.4.3")
    card1 = await wait_for(
        connector, start, lambda c: card_title(c).startswith("Deploy InternalStage"),
        "approval card #1",
    )  # fmt: skip
    await click_approve(bot, connector, card1)
    card2 = await wait_for(
        connector, start, lambda c: card_title(c).startswith("Switch production"),
        "approval card #2", timeout=90,
    )  # fmt: skip
    await click_approve(bot, connector, card2)
    try:
        async with asyncio.timeout(wait_s):
            while not lab.held(router):
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(
            "the drain wait never reached the router\n" + bot.log.read_text()
        ) from None


async def test_kill_9_during_the_drain_is_told_truthfully_after_restart(
    lab: Lab, fake_connector: FakeConnector, tmp_path: Path
) -> None:
    port = _free_port()
    config = write_lab_config(lab, tmp_path / "bot", port=port)
    bot = BotProcess(config, port, tmp_path / "bot.log")
    db = tmp_path / "bot" / "var" / "mcms-bot.db"
    router = lab.router_for("prod")
    # The drain wait reaches the router and stays there until released: the bot dies in it.
    lab.hold(router, "arr-wait-drain")
    try:
        await bot.start()
        await drive_to_the_drain(bot, fake_connector, lab, router, wait_s=30)
        # Mid-switch: the new slot is online, the old one draining.
        assert farm(lab) == {PROD: (True, "Drain"), STAGE: (True, "Available")}
        assert flow_row(db)["state"] == "switching"

        bot.kill()
        lab.release(router)  # the script finishes on the router, whoever waits for it
        after_kill = farm(lab)

        told_from = len(fake_connector.calls)
        await bot.start()
        flow_id = flow_row(db)["id"]
        told = await wait_for(
            fake_connector, told_from,
            lambda c: c.method == "POST" and flow_id in c.text and "Interrupted" in c.text,
            "message about the interrupted flow",
        )  # fmt: skip
        # What the router really shows, read at restart: the new slot live, the old draining.
        assert "InternalStage is live" in told.text
        assert "prod-web01 is draining" in told.text
        assert "Nothing was changed at restart" in told.text
        assert "`switchback prod`" in told.text
        row = flow_row(db)
        assert (row["state"], row["active"]) == ("interrupted", 0)
        assert farm(lab) == after_kill  # nothing switched automatically at start

        # The way out the message offers: traffic back on InternalProd, read from the lab.
        await say(bot, fake_connector, "switchback prod")
        for _ in range(600):
            if farm(lab) == {PROD: (True, "Available"), STAGE: (False, "Unavailable")}:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"not switched back: {farm(lab)}\n{bot.log.read_text()}")
        for _ in range(200):
            if flow_row(db)["state"] == "switched-back":
                break
            await asyncio.sleep(0.05)
        assert flow_row(db)["state"] == "switched-back"
    finally:
        lab.release(router)
        await bot.stop()
