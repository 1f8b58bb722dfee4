"""The kill -9 sweep: the bot, a real subprocess, killed with runs at 16 different points.

One bot, one environment per point (each its own lab host and conversation). The lab holds
each run at its point — the operation has reached the host and waits there (a barrier in
the lab, not a hook in the bot) — or, for the smoke steps, keeps the checks slow or
failing. With every run at its point, the bot is killed with SIGKILL; the held operations
then finish on the hosts, as a real host finishes a script whose caller died. After the
restart: every run is `interrupted`, every conversation is told with each host's state read
fresh, every lock is free, `status` shows what the lab really runs, the audit verifies.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from adapters.audit import verify
from lab.core import Lab
from lab.demo import API, PORTAL, WORKER
from tests.conftest import AUDIT_KEY_BYTES, table_rows
from tests.fake_connector import FakeConnector
from tests.farm import farm_hosts, farm_raw, write_toml
from tests.runs.test_restart import BotProcess, _free_port
from tests.teams_factory import make_invoke, make_message

pytestmark = pytest.mark.slow

TARGET = "1.3.9"
ROOT = "D:\\MCMS\\releases"


@dataclass(frozen=True)
class Point:
    """Where a run is when the bot dies: its current step, and how the lab keeps it there."""

    step: str
    hold: Callable[[Lab, str], None]
    env: dict[str, Any] = field(default_factory=dict)  # this environment's own settings


def hold(op: str, **match: str) -> Callable[[Lab, str], None]:
    return lambda lab, host: lab.hold(host, op, **match)


def faults(*pairs: tuple[str, str, dict[str, Any]]) -> Callable[[Lab, str], None]:
    def apply(lab: Lab, host: str) -> None:
        for target, mode, kwargs in pairs:
            lab.set_fault(host, target, mode, **kwargs)

    return apply


def both(*steps: Callable[[Lab, str], None]) -> Callable[[Lab, str], None]:
    def apply(lab: Lab, host: str) -> None:
        for step in steps:
            step(lab, host)

    return apply


BROKEN_TARGET = ("health", "error", {"version": TARGET})
POINTS = [
    Point("preflight", hold("preflight")),
    Point("precheck", faults(("health", "slow", {"delay_s": 120.0}))),
    Point(f"stop_site:{PORTAL}", hold("site-control", Action="Stop", Site=PORTAL)),
    Point(f"stop_site:{API}", hold("site-control", Action="Stop", Site=API)),
    Point(f"recycle_pool:{PORTAL}", hold("pool-control", Action="Recycle", AppPool=PORTAL)),
    Point(f"recycle_pool:{API}", hold("pool-control", Action="Recycle", AppPool=API)),
    Point(f"stop_service:{WORKER}", hold("service-control", Action="Stop")),
    Point("deploy_package", hold("deploy-release")),
    Point("switch", hold("switch-release", ReleasesRoot=ROOT)),
    Point(f"start_pool:{PORTAL}", hold("pool-control", Action="Start", AppPool=PORTAL)),
    Point(f"start_site:{PORTAL}", hold("site-control", Action="Start", Site=PORTAL)),
    Point(f"start_site:{API}", hold("site-control", Action="Start", Site=API)),
    Point(f"start_service:{WORKER}", hold("service-control", Action="Start")),
    Point("smoke", faults(BROKEN_TARGET)),
    # Failed (the target's smoke), and held while switching back.
    Point(
        "restore_switch",
        both(faults(BROKEN_TARGET), hold("switch-release", ReleasesRoot="")),
        {"timeouts": {"smoke_s": 2}},
    ),
    # Failed (a stuck stop), and held while starting the Portal again.
    Point(
        "restore_states",
        both(
            faults(("site", "stuck", {"name": API, "action": "Stop", "times": 1})),
            hold("site-control", Action="Start", Site=PORTAL),
        ),
        {"timeouts": {"stop_s": 2}},
    ),
]


def db_rows(db: Path, sql: str, *args: object) -> list[sqlite3.Row]:
    with sqlite3.connect(db, timeout=5) as conn:
        conn.row_factory = sqlite3.Row
        return list(conn.execute(sql, args).fetchall())


async def test_a_bot_killed_at_sixteen_points_of_a_rollback_recovers_every_run(
    tmp_path: Path, fake_connector: FakeConnector
) -> None:
    assert len({p.step for p in POINTS}) == len(POINTS) >= 10
    layout = {f"Kill{i:02d}": [f"kill{i:02d}-web"] for i in range(1, len(POINTS) + 1)}
    slow = {"preflight_s": 60, "stop_s": 60, "start_s": 60, "deploy_s": 60,
            "precheck_s": 60, "smoke_s": 120, "restore_s": 60}  # fmt: skip
    with Lab(farm_hosts(layout), tmp_path / "lab", package_versions=[TARGET]) as lab:
        raw = farm_raw(
            lab, tmp_path, layout, timeouts=slow,
            per_environment={env: p.env for env, p in zip(layout, POINTS, strict=True)},
        )  # fmt: skip
        for env in raw["environments"].values():
            for check in env["smoke"]:
                check["timeout_s"] = 60  # the precheck's slow Health must not time out
        port = _free_port()
        raw["server"]["port"] = port
        bot = BotProcess(write_toml(raw, tmp_path / "bot.toml"), port, tmp_path / "bot.log")
        try:
            await kill_sweep(bot, lab, fake_connector, layout, tmp_path)
        finally:
            await bot.stop()


async def kill_sweep(
    bot: BotProcess,
    lab: Lab,
    connector: FakeConnector,
    layout: dict[str, list[str]],
    tmp_path: Path,
) -> None:
    db = tmp_path / "var" / "mcms-bot.db"
    await bot.start()
    envs = list(layout)
    for env, point in zip(envs, POINTS, strict=True):
        point.hold(lab, layout[env][0])
    cards = {}
    for env in envs:
        count = len(connector.calls)
        await bot.post(
            make_message(f"rollback {env} {TARGET}", service_url=connector.url,
                         conversation_id=f"conv-{env}")
        )  # fmt: skip
        call = (await connector.wait_for_calls(count + 1, timeout=15))[count]
        assert call.body.get("attachments"), call.text
        cards[env] = call
    for env, call in cards.items():
        approve = call.body["attachments"][0]["content"]["actions"][0]
        invoke = make_invoke(
            "approve", approve["data"], reply_to_id=call.assigned_id or "",
            service_url=connector.url, conversation_id=f"conv-{env}",
        )  # fmt: skip
        assert await bot.post(invoke) == 200

    # Every run at its point (and Teams has its progress card, to edit after the restart).
    for _ in range(1200):
        rows = {
            r["environment"]: r
            for r in db_rows(db, "SELECT environment, current_step, progress_activity_id FROM runs")
        }
        at = {
            env: rows[env]["current_step"] == p.step and bool(rows[env]["progress_activity_id"])
            for env, p in zip(envs, POINTS, strict=True)
            if env in rows
        }
        if len(at) == len(envs) and all(at.values()):
            break
        await asyncio.sleep(0.05)
    else:
        where = {e: r["current_step"] for e, r in rows.items()}
        raise AssertionError(f"not every run reached its point: {where}\n{bot.log.read_text()}")
    runs = {r["environment"]: r["id"] for r in db_rows(db, "SELECT environment, id FROM runs")}
    assert len(db_rows(db, "SELECT * FROM env_locks")) == len(envs)

    bot.kill()
    for env in envs:  # the held operations finish on the hosts; the slow checks end
        lab.clear_faults(layout[env][0])

    before = len(connector.calls)
    await bot.start()
    told: dict[str, str] = {}
    for _ in range(600):
        for call in connector.calls[before:]:
            env = (call.conversation_id or "").removeprefix("conv-")
            if call.method == "POST" and env in runs and runs[env] in call.text:
                told[env] = call.text
        if len(told) == len(envs):
            break
        await asyncio.sleep(0.05)
    assert set(told) == set(envs), f"not told: {set(envs) - set(told)}"
    problems = []
    for env, point in zip(envs, POINTS, strict=True):
        host = layout[env][0]
        text = told[env]
        if f"during step '{point.step}'" not in text or f"Hosts now: {host}: " not in text:
            problems.append(f"{point.step}: {text[:300]}")
        # Stopped in a read-only step: nothing changed, and the message says so.
        quiet = {
            "preflight": "— as before the run: it changed nothing",
            "precheck": "— as before the run (verified: read back just now)",
        }
        if point.step in quiet and not text.endswith(quiet[point.step]):
            problems.append(f"{point.step}: {text[-200:]}")
        state = lab.state(host)
        for name, site in state["sites"].items():
            if f"{name} {site['state']} {site['release']}" not in text:
                problems.append(f"{point.step}: the message does not read {name} as the lab has it")
    assert problems == [], "\n".join(problems)
    states = {r["state"] for r in db_rows(db, "SELECT state FROM runs")}
    assert states == {"interrupted"}
    assert {r["state"] for r in db_rows(db, "SELECT state FROM requests")} == {"interrupted"}
    assert db_rows(db, "SELECT * FROM env_locks") == []

    # `status` shows each component as the lab has it, read fresh.
    for env in envs[:4] + envs[-3:]:
        host = layout[env][0]
        count = len(connector.calls)
        await bot.post(make_message(f"status {env}", service_url=connector.url,
                                    conversation_id=f"conv-{env}"))  # fmt: skip
        calls = await connector.wait_for_calls(count + 1, timeout=15)
        reply = next(c for c in calls[count:] if c.body.get("attachments"))
        rows_seen = table_rows(reply.body["attachments"][0]["content"])[1:]
        state = lab.state(host)
        wanted = [
            [host, f"site {n}", f"{s['state']}, pool {state['app_pools'][s['app_pool']]['state']}",
             s["release"]]
            for n, s in state["sites"].items()
        ] + [
            [host, f"service {n}", s["state"], s["release"]] for n, s in state["services"].items()
        ]  # fmt: skip
        assert rows_seen == wanted, env
    report = verify(tmp_path / "logs" / "deploy" / "notifications", [AUDIT_KEY_BYTES])
    assert report.ok, report.problems
