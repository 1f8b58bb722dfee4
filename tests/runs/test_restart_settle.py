"""A restart that is itself killed while restoring a killed run's hosts: the next start
settles the run again, and the lab shows every site and service back where it was.

Settling holds the environment lock until its restore outcome is recorded; a run left
`interrupted` without one, its lock's owner gone, is the next taker's to settle. The bot
runs as a real subprocess (`mcms-bot run`, SQLite); the lab runs in this test.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from lab.demo import PORTAL
from tests.runs.test_restart import BotProcess, _free_port, db_row, write_config
from tests.teams_factory import make_invoke, make_message

if TYPE_CHECKING:
    from lab.core import Lab
    from tests.fake_connector import FakeConnector

pytestmark = pytest.mark.slow


def components(lab: Lab, host: str) -> dict[str, Any]:
    """What the host runs, as the lab has it: each site's folder and state, each service's
    ImagePath and state."""
    state = lab.state(host)
    return {
        "sites": {n: (s["physical_path"], s["state"]) for n, s in state["sites"].items()},
        "services": {n: (s["image_path"], s["state"]) for n, s in state["services"].items()},
    }


async def _until(what: str, check: Any, bot: BotProcess, timeout_s: float = 90) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        found = check()
        if found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} never happened:\n" + bot.log.read_text())


async def test_a_restore_killed_mid_way_is_settled_again_by_the_next_start(
    lab: Lab, fake_connector: FakeConnector, tmp_path: Path
) -> None:
    db = tmp_path / "var" / "mcms-bot.db"
    host = lab.host_for("Lab")
    port = _free_port()
    bot = BotProcess(write_config(lab, tmp_path, port), port, tmp_path / "bot.log")
    try:
        await bot.start()
        before = components(lab, host)
        assert await bot.post(make_message("rollback Lab", service_url=fake_connector.url)) < 300
        card_call = (await fake_connector.wait_for_calls(1, timeout=15))[0]
        card = card_call.body["attachments"][0]["content"]
        approve = next(a for a in card["actions"] if a["verb"] == "approve")
        # The run stops while starting the Portal again, after the switch.
        lab.hold(host, "site-control", Action="Start", Site=PORTAL)
        invoke = make_invoke(
            "approve", approve["data"], reply_to_id=card_call.assigned_id or "",
            service_url=fake_connector.url,
        )  # fmt: skip
        assert await bot.post(invoke) == 200
        await _until("the run held at start_site", lambda: lab.held(host), bot)
        run = db_row(db, "SELECT id FROM runs")
        assert run is not None
        assert components(lab, host) != before, "the host was switched"
        bot.kill()
        lab.release(host)  # the held start finishes on the host, its caller dead

        # The restart settles the run: its restore stops while switching the host back.
        lab.hold(host, "switch-release")
        await bot.start()
        await _until("the restore held at its switch back", lambda: lab.held(host), bot)
        restoring = db_row(db, "SELECT state, restore FROM runs WHERE id = ?", run["id"])
        assert restoring is not None
        assert (restoring["state"], restoring["restore"]) == ("interrupted", None)
        bot.kill()  # the settling process dies mid-restore
        lab.release(host)  # its switch back may finish on the host; the rest never ran
        assert db_row(db, "SELECT run_id FROM env_locks") is not None, "the lock is still held"

        # The next start settles it again: every host is back as it was, the lock free.
        await bot.start()

        def settled() -> Any:
            row = db_row(db, "SELECT restore FROM runs WHERE id = ?", run["id"])
            return row is not None and row["restore"] is not None and row

        row = await _until("the run settled again", settled, bot)
        assert row["restore"] == "restored"
        assert components(lab, host) == before, "every site and service is back where it was"
        assert db_row(db, "SELECT * FROM env_locks") is None

        def told() -> bool:
            return any(
                c.method == "POST" and run["id"] in c.text and "Restore: restored" in c.text
                for c in fake_connector.calls
            )

        await _until("the conversation told the outcome", told, bot, 30)
    finally:
        lab.release(host)
        await bot.stop()
