"""Two bot processes on one PostgreSQL: the clicks land on either, either may die.

Each instance is a real `mcms-bot run` subprocess with its own port, files and instance id,
sharing the throwaway cluster's database and the lab. What is checked is what the lab and
the database hold, not what the bot says about itself.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from lab.core import Lab
from tests.fake_connector import ConnectorCall, FakeConnector
from tests.farm import farm_hosts, farm_raw, write_toml
from tests.runs.test_restart import BotProcess, _free_port
from tests.teams_factory import make_invoke, make_message

pytestmark = pytest.mark.slow

TARGET = "1.3.9"
ENV, HOST, CONVERSATION = "Ha", "ha-web", "conv-ha"
LEASE_S = 4.0  # short, so the takeover comes soon; renewed every third of it


async def fetch(url: str, sql: str, *args: object) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def instance(lab: Lab, tmp_path: Path, name: str, url: str, **env: Any) -> BotProcess:
    root = tmp_path / name
    root.mkdir()
    raw = farm_raw(lab, root, {ENV: [HOST]}, per_environment={ENV: env})
    port = _free_port()
    raw["server"]["port"] = port
    raw["metrics"] = {"port": _free_port()}
    raw["store"] = {"url": url, "instance_id": name, "lease_s": LEASE_S}
    return BotProcess(write_toml(raw, root / "bot.toml"), port, root / "bot.log")


async def ask_rollback(bot: BotProcess, connector: FakeConnector) -> ConnectorCall:
    count = len(connector.calls)
    await bot.post(
        make_message(f"rollback {ENV} {TARGET}", service_url=connector.url,
                     conversation_id=CONVERSATION)
    )  # fmt: skip
    card = (await connector.wait_for_calls(count + 1, timeout=30))[count]
    assert card.body.get("attachments"), card.text
    return card


def approve(card: ConnectorCall, connector: FakeConnector) -> dict[str, Any]:
    data = card.body["attachments"][0]["content"]["actions"][0]["data"]
    return make_invoke(
        "approve", data, reply_to_id=card.assigned_id or "", service_url=connector.url,
        conversation_id=CONVERSATION,
    )  # fmt: skip


async def wait_for(what: str, check: Any, timeout: float, *logs: BotProcess) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if result := await check():
            return result
        await asyncio.sleep(0.1)
    output = "\n".join(f"--- {b.log}\n{b.log.read_text()[-4000:]}" for b in logs)
    raise AssertionError(f"{what}: not within {timeout} s\n{output}")


async def test_fifty_approve_clicks_spread_over_two_instances_start_one_run(
    tmp_path: Path, fake_connector: FakeConnector, pg_url: str
) -> None:
    with Lab(farm_hosts({ENV: [HOST]}), tmp_path / "lab", package_versions=[TARGET]) as lab:
        a = instance(lab, tmp_path, "bot-a", pg_url)
        b = instance(lab, tmp_path, "bot-b", pg_url)
        try:
            await asyncio.gather(a.start(), b.start())
            card = await ask_rollback(a, fake_connector)
            click = approve(card, fake_connector)
            statuses = await asyncio.gather(*((a, b)[i % 2].post(click) for i in range(50)))
            assert set(statuses) == {200}

            async def ended() -> list[Any]:
                runs = await fetch(pg_url, "SELECT id, state, owner FROM runs")
                return runs if runs and all(r["state"] != "running" for r in runs) else []

            runs = await wait_for("the run ended", ended, 120, a, b)
            assert [r["state"] for r in runs] == ["succeeded"], runs
            # The lab saw one deployment and one switch, whichever instance ran it.
            ops = [c.op for c in lab.calls(HOST)]
            assert ops.count("deploy-release") == 1, ops
            assert ops.count("switch-release") == 1, ops
            requests = await fetch(pg_url, "SELECT state FROM requests")
            assert [r["state"] for r in requests] == ["succeeded"]
        finally:
            await asyncio.gather(a.stop(), b.stop())


async def test_the_survivor_reports_a_run_whose_instance_was_killed_mid_step(
    tmp_path: Path, fake_connector: FakeConnector, pg_url: str
) -> None:
    with Lab(farm_hosts({ENV: [HOST]}), tmp_path / "lab", package_versions=[TARGET]) as lab:
        slow = {"timeouts": {"deploy_s": 60}}
        a = instance(lab, tmp_path, "bot-a", pg_url, **slow)
        b = instance(lab, tmp_path, "bot-b", pg_url, **slow)
        try:
            await asyncio.gather(a.start(), b.start())
            lab.hold(HOST, "deploy-release")  # the run stops inside its deploy step
            card = await ask_rollback(a, fake_connector)
            assert await a.post(approve(card, fake_connector)) == 200

            async def at_deploy() -> list[Any]:
                return await fetch(
                    pg_url,
                    "SELECT id, owner FROM runs WHERE current_step = 'deploy_package'"
                    " AND progress_activity_id IS NOT NULL",
                )

            (run,) = await wait_for("the run reached its deploy", at_deploy, 60, a, b)
            # The owner is bot-a's process: its instance id, process id and a nonce.
            assert run["owner"].startswith("bot-a-"), run["owner"]
            a.kill()
            killed_at = asyncio.get_running_loop().time()
            lab.clear_faults(HOST)  # the held deploy finishes on the host, its caller dead

            before = len(fake_connector.calls)

            async def told() -> ConnectorCall | None:
                return next(
                    (c for c in fake_connector.calls[before:]
                     if c.method == "POST" and run["id"] in c.text and "Hosts now:" in c.text),
                    None,
                )  # fmt: skip

            message = await wait_for("the survivor told the conversation", told, 60, b)
            took = asyncio.get_running_loop().time() - killed_at
            # The lease runs out within LEASE_S; the survivor looks every third of it.
            assert took < LEASE_S * 3, f"told after {took:.1f} s"
            assert "bot-a" in message.text and "during step 'deploy_package'" in message.text
            state = lab.state(HOST)
            for name, site in state["sites"].items():
                assert f"{name} {site['state']} {site['release']}" in message.text, message.text
            (stored,) = await fetch(pg_url, "SELECT state FROM runs WHERE id = $1", run["id"])
            assert stored["state"] == "interrupted"
            assert await fetch(pg_url, "SELECT * FROM env_locks") == []
            (request,) = await fetch(pg_url, "SELECT state FROM requests")
            assert request["state"] == "interrupted"

            # The environment is free again: the survivor runs the next rollback itself.
            card = await ask_rollback(b, fake_connector)
            assert await b.post(approve(card, fake_connector)) == 200

            async def second_ended() -> list[Any]:
                rows = await fetch(
                    pg_url, "SELECT state, owner FROM runs WHERE id <> $1", run["id"]
                )
                return rows if rows and rows[0]["state"] != "running" else []

            (second,) = await wait_for("the second run ended", second_ended, 120, b)
            assert second["state"] == "succeeded" and second["owner"].startswith("bot-b-")
        finally:
            await asyncio.gather(a.stop(), b.stop())


async def test_the_watcher_moves_to_the_survivor_and_an_incident_is_alerted_once(
    tmp_path: Path, fake_connector: FakeConnector, pg_url: str
) -> None:
    watch = {"watch": {"enabled": True, "interval_s": 5, "failure_threshold": 2}}
    with Lab(farm_hosts({ENV: [HOST]}), tmp_path / "lab", package_versions=[TARGET]) as lab:
        a = instance(lab, tmp_path, "bot-a", pg_url, **watch)
        b = instance(lab, tmp_path, "bot-b", pg_url, **watch)
        bots = {"bot-a": a, "bot-b": b}
        try:
            lab.set_fault(HOST, "health", "error")  # the incident: Health fails from now on
            await asyncio.gather(a.start(), b.start())

            async def alerted() -> list[Any]:
                return await fetch(pg_url, "SELECT id, state FROM alerts WHERE kind = 'smoke'")

            (alert,) = await wait_for("an alert", alerted, 60, a, b)
            (lease,) = await fetch(pg_url, "SELECT owner FROM leases WHERE name = 'watch:Ha'")
            holder = "bot-a" if lease["owner"].startswith("bot-a-") else "bot-b"
            survivor_name = "bot-b" if holder == "bot-a" else "bot-a"
            bots[holder].kill()
            (before,) = await fetch(pg_url, "SELECT last_run_at FROM watch_state")

            async def moved() -> bool:
                rows = await fetch(pg_url, "SELECT owner FROM leases WHERE name = 'watch:Ha'")
                (state,) = await fetch(pg_url, "SELECT last_run_at FROM watch_state")
                return rows[0]["owner"].startswith(f"{survivor_name}-") and state[0] > before[0]

            # The lease runs out (LEASE_S), then the survivor's next tick (one interval).
            await wait_for("the survivor watches", moved, LEASE_S + 5 + 15, bots[survivor_name])
            # Still failing: the open incident goes on, no second alert.
            await asyncio.sleep(6)
            assert await alerted() == [alert]

            lab.clear_faults(HOST)

            async def resolved() -> list[Any]:
                rows = await alerted()
                return rows if rows and rows[0]["state"] == "resolved" else []

            (after,) = await wait_for("the survivor resolves it", resolved, 30, bots[survivor_name])
            assert after["id"] == alert["id"]
        finally:
            await asyncio.gather(a.stop(), b.stop())
