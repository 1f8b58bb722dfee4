"""A break-glass approval from the CLI reaches the alert conversations once Teams answers:
kept in the store while no bot runs and while Teams is down, posted once, then closed."""

from __future__ import annotations

import asyncio

import pytest

from lab.core import Lab
from tests.fake_connector import FakeConnector
from tests.runs.test_restart import BotProcess
from tests.teams_factory import make_message
from tests.terminal.cli_process import REASON, acli
from tests.terminal.test_shared_lock import bot, db_rows

pytest_plugins = ["tests.lab_fixtures"]
pytestmark = pytest.mark.slow
__all__ = ["bot"]


async def test_a_cli_break_glass_is_announced_in_the_alert_conversation_once_teams_answers(
    bot: BotProcess, lab: Lab, fake_connector: FakeConnector
) -> None:
    db = bot.config.parent / "var" / "mcms-bot.db"
    await bot.start()
    subscribe = make_message("subscribe Lab", service_url=fake_connector.url)
    assert await bot.post(subscribe) < 300
    await fake_connector.wait_for_calls(1, timeout=30)
    conversation = fake_connector.activities[0].conversation_id
    await bot.stop()  # the bot is down (or Teams is): the CLI goes on alone

    done = await acli(bot.config, "rollback", "Lab", "--reason", REASON)
    assert done.code == 0, done.out + done.err
    (notice,) = db_rows(db, "SELECT * FROM notices")
    assert notice["delivered_at"] is None

    fake_connector.fail_for(3.0, statuses=(503,))  # Teams still failing when the bot is back
    posted_before = len(fake_connector.activities)
    await bot.start()
    for _ in range(600):
        (notice,) = db_rows(db, "SELECT * FROM notices")
        if notice["delivered_at"]:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the notice was never delivered:\n" + bot.log.read_text())
    posted = [
        c
        for c in fake_connector.activities[posted_before:]
        if c.conversation_id == conversation and "BREAK-GLASS" in c.text
    ]
    assert len(posted) == 1, [c.text for c in fake_connector.activities]
    assert REASON in posted[0].text and "break-glass CLI" in posted[0].text
    await asyncio.sleep(6)  # another delivery pass: nothing is posted twice
    again = [c for c in fake_connector.activities if "BREAK-GLASS" in c.text]
    assert len(again) == 1
