"""A break-glass approval from the CLI reaches the alert conversations once Teams answers:
kept in the store while no bot runs and while Teams is down, posted once, then closed. A
CLI run that fails pages OpsGenie from the CLI itself, as a chat run's failure does."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from lab.core import Lab
from tests.alert_helpers import OPSGENIE_KEY, OPSGENIE_KEY_ENV
from tests.fake_connector import FakeConnector
from tests.lab_fixtures import write_lab_config
from tests.runs.test_restart import BotProcess
from tests.teams_factory import make_message
from tests.terminal.cli_process import REASON, acli
from tests.terminal.test_cli_commands import audit
from tests.terminal.test_shared_lock import bot, db_rows, releases

if TYPE_CHECKING:
    from tests.fake_opsgenie import FakeOpsGenie

pytest_plugins = ["tests.lab_fixtures", "tests.fake_opsgenie"]
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


async def test_a_failed_cli_run_raises_its_run_alert_and_pages_opsgenie_without_a_bot(
    lab: Lab, fake_opsgenie: FakeOpsGenie, tmp_path: Path
) -> None:
    extra = (
        f'\n[alerts.opsgenie]\nbase_url = "{fake_opsgenie.url}"\n'
        f'api_key_env = "{OPSGENIE_KEY_ENV}"\ntimeout_s = 2\nattempts = 2\nbackoff_s = 0.05\n'
    )
    config = write_lab_config(lab, tmp_path / "bot", port=0, extra=extra)
    db = config.parent / "var" / "mcms-bot.db"
    lab.set_fault(lab.host_for("Lab"), "op", "fail", name="deploy-release")

    done = await acli(
        config,
        "rollback",
        "Lab",
        "--reason",
        REASON,
        "--json",
        env={OPSGENIE_KEY_ENV: OPSGENIE_KEY},
    )
    assert done.code == 1, done.out + done.err
    assert done.result()["restore"] in ("unchanged", "restored")
    assert releases(lab) == {"1.4.2"}

    (create,) = fake_opsgenie.creates()
    (run,) = db_rows(db, "SELECT * FROM runs")
    (alert,) = db_rows(db, "SELECT * FROM alerts")
    assert (alert["kind"], alert["state"], alert["run_id"]) == ("run", "open", run["id"])
    assert alert["opsgenie_state"] == "created"
    assert create.authorization == f"GenieKey {OPSGENIE_KEY}"
    assert create.body["priority"] == "P2" and run["id"] in create.body["message"]
    raised = next(e for e in audit(config) if e["event"] == "AlertRaised")
    assert raised["run_id"] == run["id"] and raised["detail"]["priority"] == "P2"
    forwarded = next(e for e in audit(config) if e["event"] == "AlertForwarded")
    assert forwarded["status"] == "delivered" and forwarded["detail"]["sink"] == "opsgenie"
    (notice,) = db_rows(db, "SELECT * FROM notices WHERE kind = 'run-failed'")
    assert alert["id"] in notice["text"] and "P2" in notice["text"]
