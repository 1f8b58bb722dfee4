"""A run's final card state is kept in the shared store until Teams has it: an instance
that dies while Teams is down leaves it there, and the survivor delivers it once its owner's
lease has run out. Two real bot processes on one PostgreSQL, the fake connector down.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from lab.core import Lab
from tests.fake_connector import ConnectorCall, FakeConnector
from tests.farm import farm_hosts
from tests.runs.test_two_instances import (
    ENV,
    HOST,
    LEASE_S,
    TARGET,
    approve,
    ask_rollback,
    fetch,
    instance,
    wait_for,
)

pytestmark = pytest.mark.slow


async def test_the_survivor_delivers_the_final_card_a_dead_instance_could_not(
    tmp_path: Path, fake_connector: FakeConnector, pg_url: str
) -> None:
    with Lab(farm_hosts({ENV: [HOST]}), tmp_path / "lab", package_versions=[TARGET]) as lab:
        slow = {"timeouts": {"start_s": 60}}
        a = instance(lab, tmp_path, "bot-a", pg_url, **slow)
        b = instance(lab, tmp_path, "bot-b", pg_url, **slow)
        try:
            await asyncio.gather(a.start(), b.start())
            lab.hold(HOST, "site-control", Action="Start")  # near the run's end
            card = await ask_rollback(a, fake_connector)
            assert await a.post(approve(card, fake_connector)) == 200

            async def starting_sites() -> list[Any]:
                return await fetch(
                    pg_url,
                    "SELECT id, progress_activity_id FROM runs WHERE current_step LIKE"
                    " 'start_site:%' AND progress_activity_id IS NOT NULL",
                )

            (run,) = await wait_for("the run reached its last steps", starting_sites, 90, a, b)
            # Teams goes down; the run ends while it is down, its final card undelivered.
            fake_connector.fail_for(600, statuses=(503,))
            lab.release(HOST)

            async def kept() -> list[Any]:
                ended = await fetch(
                    pg_url, "SELECT state FROM runs WHERE id = $1 AND state <> 'running'",
                    run["id"],
                )  # fmt: skip
                rows = await fetch(
                    pg_url, "SELECT * FROM pending_finals WHERE activity_id = $1",
                    run["progress_activity_id"],
                )  # fmt: skip
                return rows if ended and rows else []

            (final,) = await wait_for("the final state kept in the store", kept, 90, a)
            assert final["owner"].startswith("bot-a-")
            assert f"{run['id']}: succeeded" == final["text"]
            a.kill()
            killed_at = asyncio.get_running_loop().time()
            count = len(fake_connector.calls)
            fake_connector.fail_for(0)  # Teams answers again

            async def delivered() -> ConnectorCall | None:
                return next(
                    (c for c in fake_connector.calls[count:]
                     if c.method == "PUT" and c.status < 300
                     and c.activity_id == run["progress_activity_id"]
                     and "succeeded" in json.dumps(c.body)),
                    None,
                )  # fmt: skip

            call = await wait_for("the survivor delivered the final card", delivered, 60, b)
            took = asyncio.get_running_loop().time() - killed_at
            assert took < LEASE_S * 3, f"delivered after {took:.1f} s"
            assert call.body.get("attachments"), "the final card itself, not only its text"

            async def cleared() -> bool:
                return await fetch(pg_url, "SELECT * FROM pending_finals") == []

            assert await wait_for("the kept state dropped once delivered", cleared, 15, b)
        finally:
            fake_connector.fail_for(0)
            await asyncio.gather(a.stop(), b.stop())
