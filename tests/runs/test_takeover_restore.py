"""An instance killed mid-rollback, after it switched the host: the survivor settles the
hosts as the run's own failure would have — with `on_failure = "restore"` it runs the
restore steps and the lab shows every site and service back where it was; with "stop" it
leaves them and reports what they run. Two real bot processes on one PostgreSQL.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from lab.core import Lab
from lab.demo import PORTAL
from tests.fake_connector import ConnectorCall, FakeConnector
from tests.farm import farm_hosts
from tests.runs.test_two_instances import (
    CONVERSATION,
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


def components(lab: Lab) -> dict[str, Any]:
    """What the host runs, as the lab has it: each site's folder and state, each service's
    ImagePath and state."""
    state = lab.state(HOST)
    return {
        "sites": {n: (s["physical_path"], s["state"]) for n, s in state["sites"].items()},
        "services": {n: (s["image_path"], s["state"]) for n, s in state["services"].items()},
    }


@pytest.mark.parametrize("on_failure", ["restore", "stop"])
async def test_the_survivor_settles_the_hosts_of_a_run_killed_after_its_switch(
    tmp_path: Path, fake_connector: FakeConnector, pg_url: str, on_failure: str
) -> None:
    with Lab(farm_hosts({ENV: [HOST]}), tmp_path / "lab", package_versions=[TARGET]) as lab:
        settings = {"on_failure": on_failure, "timeouts": {"start_s": 60}}
        a = instance(lab, tmp_path, "bot-a", pg_url, **settings)
        b = instance(lab, tmp_path, "bot-b", pg_url, **settings)
        try:
            await asyncio.gather(a.start(), b.start())
            before = components(lab)
            # The run stops while starting the Portal again, after the switch.
            lab.hold(HOST, "site-control", Action="Start", Site=PORTAL)
            card = await ask_rollback(a, fake_connector)
            assert await a.post(approve(card, fake_connector)) == 200

            async def at_start_site() -> list[Any]:
                return await fetch(
                    pg_url,
                    "SELECT id FROM runs WHERE current_step = $1"
                    " AND progress_activity_id IS NOT NULL",
                    f"start_site:{PORTAL}",
                )

            (run,) = await wait_for("the run reached start_site", at_start_site, 90, a, b)
            switched = components(lab)
            assert switched["sites"] != before["sites"], "the host was switched"
            assert all(TARGET in path for path, _ in switched["sites"].values()), switched
            a.kill()
            killed_at = asyncio.get_running_loop().time()
            lab.release(HOST)  # the held start finishes on the host, its caller dead
            count = len(fake_connector.calls)

            async def told() -> ConnectorCall | None:
                return next(
                    (c for c in fake_connector.calls[count:]
                     if c.method == "POST" and c.conversation_id == CONVERSATION
                     and run["id"] in c.text and "Hosts now:" in c.text),
                    None,
                )  # fmt: skip

            message = await wait_for("the survivor told the conversation", told, 120, b)
            took = asyncio.get_running_loop().time() - killed_at
            (stored,) = await fetch(
                pg_url, "SELECT state, restore FROM runs WHERE id = $1", run["id"]
            )
            assert await fetch(pg_url, "SELECT * FROM env_locks") == []
            now = components(lab)
            if on_failure == "restore":
                # The lease runs out (LEASE_S), the survivor looks every third of it, then
                # the restore steps run on the host (seconds on the lab).
                assert took < LEASE_S * 2 + 60, f"told after {took:.1f} s"
                assert (stored["state"], stored["restore"]) == ("interrupted", "restored")
                assert now == before, "every site and service is back where it was"
                assert "Restore: restored" in message.text, message.text
                steps = await fetch(
                    pg_url,
                    "SELECT name, state FROM steps WHERE run_id = $1 AND name LIKE 'restore%'"
                    " ORDER BY idx",
                    run["id"],
                )
                assert steps and {s["state"] for s in steps} == {"passed"}, steps
            else:
                assert took < LEASE_S * 3, f"told after {took:.1f} s"
                assert (stored["state"], stored["restore"]) == ("interrupted", "not-restored")
                # Nothing was put back: every site still runs the switched-to release.
                assert {n: p for n, (p, _) in now["sites"].items()} == {
                    n: p for n, (p, _) in switched["sites"].items()
                }, now
                assert "Nothing was restored automatically (on_failure = stop)" in message.text
                assert "Restore: not-restored" in message.text
            # Whatever happened, the message reads the host as the lab has it now.
            for name, site in lab.state(HOST)["sites"].items():
                assert f"{name} {site['state']} {site['release']}" in message.text, message.text
        finally:
            await asyncio.gather(a.stop(), b.stop())
