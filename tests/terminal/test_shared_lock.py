"""The CLI and the bot, two processes on one store, never run two changes on one
environment: the lock is a row in the shared SQLite database.

Both directions, with real processes: a CLI rollback started while the bot runs one (held
by the lab at its deploy step) is refused with exit 3 and touches nothing; a bot started
while a CLI run is held leaves that run alone (its owner lives), and a chat rollback then is
refused as busy. Each held run then goes on and ends as it would have.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from lab.core import Lab
from tests.fake_connector import FakeConnector
from tests.lab_fixtures import write_lab_config
from tests.runs.test_restart import BotProcess, _free_port
from tests.teams_factory import make_invoke, make_message
from tests.terminal.cli_process import REASON, acli, start_cli

pytest_plugins = ["tests.lab_fixtures"]
pytestmark = pytest.mark.slow

HELD_STEP = "deploy_package"


def db_rows(db: Path, sql: str, *args: object) -> list[sqlite3.Row]:
    """Rows of the store; none while it does not exist yet (or is being created)."""
    if not db.exists():
        return []
    with sqlite3.connect(db, timeout=5) as conn:
        conn.row_factory = sqlite3.Row
        try:
            return list(conn.execute(sql, args).fetchall())
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise


async def until_held(lab: Lab, db: Path, what: str) -> sqlite3.Row:
    """The one run, once it sits at the held deploy step on the lab host."""
    host = lab.host_for("Lab")
    for _ in range(600):
        runs = db_rows(db, "SELECT * FROM runs WHERE state = 'running'")
        if runs and runs[0]["current_step"] == HELD_STEP and lab.held(host):
            return runs[0]
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} never reached {HELD_STEP}")


async def until_done(db: Path, run_id: str) -> str:
    for _ in range(900):
        (run,) = db_rows(db, "SELECT state FROM runs WHERE id = ?", run_id)
        if run["state"] != "running":
            return str(run["state"])
        await asyncio.sleep(0.1)
    raise AssertionError(f"{run_id} never ended")


def releases(lab: Lab) -> set[str]:
    state = lab.state(lab.host_for("Lab"))
    return {s["release"] for s in state["sites"].values()}


def mutating_calls(lab: Lab) -> int:
    ops = {"site-control", "pool-control", "service-control", "deploy-release", "switch-release"}
    return sum(c.op in ops for c in lab.calls(lab.host_for("Lab")))


@pytest.fixture
async def bot(lab: Lab, fake_connector: FakeConnector, tmp_path: Path) -> BotProcess:
    port = _free_port()
    process = BotProcess(
        write_lab_config(lab, tmp_path / "bot", port=port), port, tmp_path / "bot.log"
    )
    yield process  # type: ignore[misc]
    await process.stop()


async def bot_run_held(bot: BotProcess, lab: Lab, connector: FakeConnector) -> sqlite3.Row:
    """Start the bot, ask for `rollback Lab` and approve it in chat; its run, once the lab
    holds it at the deploy step."""
    await bot.start()
    assert await bot.post(make_message("rollback Lab", service_url=connector.url)) < 300
    (card_call,) = await connector.wait_for_calls(1, timeout=30)
    card = card_call.body["attachments"][0]["content"]
    approve = next(a for a in card["actions"] if a["verb"] == "approve")
    lab.hold(lab.host_for("Lab"), "deploy-release")
    invoke = make_invoke(
        "approve", approve["data"], reply_to_id=card_call.assigned_id or "",
        service_url=connector.url,
    )  # fmt: skip
    assert await bot.post(invoke) == 200
    return await until_held(lab, bot.config.parent / "var" / "mcms-bot.db", "the bot's run")


async def chat_rollback(bot: BotProcess, connector: FakeConnector) -> str:
    """`rollback Lab` in chat; the reply's text (an approval card's, or a refusal)."""
    before = len(connector.activities)
    assert await bot.post(make_message("rollback Lab", service_url=connector.url)) < 300
    calls = await connector.wait_for_calls(before + 1, timeout=30)
    return calls[before].text


async def test_a_cli_rollback_while_the_bot_runs_one_is_refused_and_touches_nothing(
    bot: BotProcess, lab: Lab, fake_connector: FakeConnector
) -> None:
    db = bot.config.parent / "var" / "mcms-bot.db"
    host = lab.host_for("Lab")
    bots_run = await bot_run_held(bot, lab, fake_connector)
    calls_before = mutating_calls(lab)

    refused = await acli(bot.config, "rollback", "Lab", "--reason", REASON, "--json")

    assert refused.code == 3, refused.out + refused.err
    assert refused.result()["reason"] == "busy"
    assert f"Lab is busy: run `{bots_run['id']}`" in refused.result()["text"]
    assert mutating_calls(lab) == calls_before  # the CLI changed nothing on the host
    # The CLI's start did not take the bot's run for a dead one.
    (still,) = db_rows(db, "SELECT state, owner FROM runs WHERE id = ?", bots_run["id"])
    assert still["state"] == "running" and still["owner"] == bots_run["owner"]
    assert len(db_rows(db, "SELECT * FROM env_locks")) == 1

    lab.release(host)
    assert await until_done(db, bots_run["id"]) == "succeeded"
    assert releases(lab) == {"1.4.1"}


async def test_a_chat_rollback_while_a_cli_run_is_held_is_refused_and_a_bot_start_spares_it(
    bot: BotProcess, lab: Lab, fake_connector: FakeConnector, tmp_path: Path
) -> None:
    db = bot.config.parent / "var" / "mcms-bot.db"
    host = lab.host_for("Lab")
    lab.hold(host, "deploy-release")
    cli = start_cli(
        bot.config, "rollback", "Lab", "--reason", REASON, "--json", log=tmp_path / "cli.out"
    )
    try:
        clis_run = await until_held(lab, db, "the CLI's run")
        # The bot starts now: its recovery must leave a run whose owner lives alone.
        await bot.start()
        calls_before = mutating_calls(lab)
        reply = await chat_rollback(bot, fake_connector)
        assert f"Lab is busy: run `{clis_run['id']}`" in reply
        assert mutating_calls(lab) == calls_before
        (still,) = db_rows(db, "SELECT state FROM runs WHERE id = ?", clis_run["id"])
        assert still["state"] == "running"
        assert db_rows(db, "SELECT state FROM requests WHERE state = 'pending'") == []

        lab.release(host)
        code = await asyncio.to_thread(cli.wait, 120)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
        assert cli.stdin is not None
        cli.stdin.close()
    assert code == 0, (tmp_path / "cli.out").read_text()
    assert await until_done(db, clis_run["id"]) == "succeeded"
    assert releases(lab) == {"1.4.1"}


async def test_the_cli_cancels_a_run_of_the_bot_and_the_bot_restores_it(
    bot: BotProcess, lab: Lab, fake_connector: FakeConnector
) -> None:
    db = bot.config.parent / "var" / "mcms-bot.db"
    host = lab.host_for("Lab")
    bots_run = await bot_run_held(bot, lab, fake_connector)

    cancelled = await acli(bot.config, "cancel", bots_run["id"], "--json")

    assert cancelled.code == 0, cancelled.out + cancelled.err
    assert "Cancel requested" in cancelled.result()["text"]
    lab.release(host)
    assert await until_done(db, bots_run["id"]) == "cancelled"
    (run,) = db_rows(db, "SELECT restore, cancel_requested_by FROM runs")
    assert run["restore"] == "restored" and run["cancel_requested_by"] == "Alex Wilber"
    assert releases(lab) == {"1.4.2"}


async def test_the_cli_settles_a_dead_bots_run_restoring_its_hosts_and_teams_is_told(
    bot: BotProcess, lab: Lab, fake_connector: FakeConnector
) -> None:
    db = bot.config.parent / "var" / "mcms-bot.db"
    host = lab.host_for("Lab")
    await bot.start()
    assert await bot.post(make_message("rollback Lab", service_url=fake_connector.url)) < 300
    (card_call,) = await fake_connector.wait_for_calls(1, timeout=30)
    card = card_call.body["attachments"][0]["content"]
    approve = next(a for a in card["actions"] if a["verb"] == "approve")
    # The bot's run stops while starting the Portal again, after its switch; then it dies.
    lab.hold(host, "site-control", Action="Start", Site="MCMS.Portal")
    invoke = make_invoke(
        "approve", approve["data"], reply_to_id=card_call.assigned_id or "",
        service_url=fake_connector.url,
    )  # fmt: skip
    assert await bot.post(invoke) == 200
    for _ in range(600):
        # Chat is never awaited by a run: wait until Teams has the progress card too.
        shown = db_rows(db, "SELECT id FROM runs WHERE progress_activity_id IS NOT NULL")
        if lab.held(host) and shown:
            break
        await asyncio.sleep(0.1)
    (dead,) = db_rows(db, "SELECT id FROM runs")
    assert releases(lab) == {"1.4.1"}, "the bot's run switched the host"
    bot.kill()
    lab.release(host)

    done = await acli(bot.config, "rollback", "Lab", "--reason", REASON, "--json", timeout=180)

    assert done.code == 0, done.out + done.err
    # Settled as the bot would have: restored (read back and compared with the pre-run
    # state by its restore_verify step), the outcome recorded, and the lock passed on.
    (settled,) = db_rows(db, "SELECT state, restore FROM runs WHERE id = ?", dead["id"])
    assert (settled["state"], settled["restore"]) == ("interrupted", "restored")
    switched_back = db_rows(
        db, "SELECT * FROM host_switches WHERE run_id = ? AND reason = 'restore'", dead["id"]
    )
    assert switched_back, "the restore switched the host back"
    assert any(dead["id"] in n["text"] for n in db_rows(db, "SELECT text FROM notices"))
    # Teams is told once the bot is back: the card's final state and the message.
    count = len(fake_connector.calls)
    await bot.start()
    for _ in range(300):
        told = [c for c in fake_connector.calls[count:] if dead["id"] in str(c.body)]
        if any("Restore: restored" in c.text for c in told) and any(
            c.method == "PUT" and "interrupted" in str(c.body) for c in told
        ):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"Teams was not told: {fake_connector.calls[count:]}")
