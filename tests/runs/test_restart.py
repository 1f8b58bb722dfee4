"""The bot process is killed (SIGKILL) in the middle of a lab rollback, then restarted.

The restarted bot marks the run `interrupted`, tells its card and conversation (with the
last completed step), releases the environment lock, and the audit chain still verifies.
The bot runs as a real subprocess (`mcms-bot run`); the lab and the fake connector run in
this test, on loopback.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from adapters.audit import verify
from tests.conftest import AUDIT_KEY, AUDIT_KEY_BYTES, DEMO_CONFIG
from tests.teams_factory import make_invoke, make_message

if TYPE_CHECKING:
    from lab.core import Lab
    from tests.fake_connector import FakeConnector

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(lab: Lab, tmp_path: Path, port: int) -> Path:
    """The demo config as TOML, pointed at this lab, with files under tmp_path."""
    text = DEMO_CONFIG.read_text(encoding="utf-8")
    for name, (winrm, portal, api) in {
        "Lab": (15985, 18081, 18091),
        "InternalStage": (15986, 18082, 18092),
        "InternalProd": (15987, 18083, 18093),
    }.items():
        host = lab.host_for(name)
        text = text.replace(f"http://127.0.0.1:{winrm}/wsman", lab.winrm_url(host))
        text = text.replace(f"http://127.0.0.1:{portal}", lab.check_base(host, "health"))
        text = text.replace(f"http://127.0.0.1:{api}", lab.check_base(host, "swagger"))
    text = text.replace(
        'package_store = "var/lab/packages"', f"package_store = '{lab.packages_dir}'"
    )
    text = text.replace("port = 3978", f"port = {port}")
    for key, rel in [
        ("database", "var/mcms-bot.db"),
        ("audit_dir", "logs/deploy/notifications"),
        ("app_logs_dir", "logs/app"),
        ("smoke_logs_dir", "artifacts/offline/logs"),
        ("timeline_dir", "docs/logs"),
    ]:
        text = text.replace(f'{key} = "{rel}"', f"{key} = '{tmp_path / rel}'")
    text += "\n[metrics]\nport = 0  # any free port: tests run side by side\n"
    path = tmp_path / "bot.toml"
    path.write_text(text, encoding="utf-8")
    return path


class BotProcess:
    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.config, self.port, self.log = config, port, log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        env = dict(
            os.environ,
            MCMS_LAB_WINRM_USER="lab-admin",
            MCMS_LAB_WINRM_PASSWORD="lab-password",
            MCMS_AUDIT_KEY=AUDIT_KEY,
        )
        for name in ("MCMS_BOT_APP_ID", "MCMS_BOT_APP_PASSWORD", "MCMS_BOT_APP_TENANT_ID"):
            env.pop(name, None)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bot.cli", "run", "--config", str(self.config)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        # Generous: on a shared machine, importing and opening everything can take a while.
        deadline = asyncio.get_running_loop().time() + 60
        async with aiohttp.ClientSession() as session:
            while asyncio.get_running_loop().time() < deadline:
                try:
                    async with session.get(self.url + "/healthz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                assert self.proc.poll() is None, self.log.read_text()
                await asyncio.sleep(0.05)
        raise AssertionError("bot did not start:\n" + self.log.read_text())

    async def post(self, activity: dict[str, Any]) -> int:
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url + "/api/messages", json=activity) as response,
        ):
            return response.status

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    async def stop(self) -> None:
        """SIGTERM and wait, without blocking this loop: the fake connector runs on it, and
        the bot may still be delivering its last messages while it shuts down."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            for _ in range(300):
                if self.proc.poll() is not None:
                    return
                await asyncio.sleep(0.05)
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
async def bot_process(
    lab: Lab, fake_connector: FakeConnector, tmp_path: Path
) -> AsyncIterator[BotProcess]:
    # Depends on the connector so the bot stops first: a bot whose connector vanished
    # would spend its shutdown retrying sends.
    port = _free_port()
    process = BotProcess(write_config(lab, tmp_path, port), port, tmp_path / "bot.log")
    yield process
    await process.stop()


def db_row(db: Path, sql: str, *args: object) -> sqlite3.Row | None:
    with sqlite3.connect(db, timeout=5) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(sql, args).fetchone()


async def test_sigkill_mid_rollback_is_interrupted_told_and_unlocked_after_restart(
    bot_process: BotProcess, lab: Lab, fake_connector: FakeConnector, tmp_path: Path
) -> None:
    db = tmp_path / "var" / "mcms-bot.db"
    host = lab.host_for("Lab")
    await bot_process.start()
    message = make_message("rollback Lab", service_url=fake_connector.url)
    assert await bot_process.post(message) < 300
    calls = await fake_connector.wait_for_calls(1, timeout=15)
    card_call = calls[0]
    card = card_call.body["attachments"][0]["content"]
    approve = next(a for a in card["actions"] if a["verb"] == "approve")

    # The Worker will not stop: the run sits in step 5 while the bot is killed.
    lab.set_fault(host, "service", "stuck")
    invoke = make_invoke(
        "approve",
        approve["data"],
        reply_to_id=card_call.assigned_id or "",
        service_url=fake_connector.url,
    )
    assert await bot_process.post(invoke) == 200
    for _ in range(300):
        row = db_row(db, "SELECT id, current_step, progress_activity_id FROM runs")
        # Chat is never awaited by a run: wait until Teams has the progress card too.
        if (
            row is not None
            and row["current_step"] == "stop_service:MCMS.Worker"
            and row["progress_activity_id"]
        ):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the run never reached stop_worker:\n" + bot_process.log.read_text())
    run_id = row["id"]
    assert db_row(db, "SELECT run_id FROM env_locks WHERE environment = 'Lab'") is not None
    bot_process.kill()
    lab.clear_faults()

    before = len(fake_connector.calls)
    await bot_process.start()
    told = None
    for _ in range(200):
        told = next(
            (
                c
                for c in fake_connector.calls[before:]
                if c.method == "POST" and "interrupted" in c.text.lower()
            ),
            None,
        )
        if told:
            break
        await asyncio.sleep(0.05)
    assert told is not None, "the conversation must be told"
    assert run_id in told.text and "stop_service:MCMS.Worker" in told.text
    assert "last completed: recycle_pool:MCMS.Api" in told.text and "lock is released" in told.text

    run = db_row(db, "SELECT state FROM runs WHERE id = ?", run_id)
    assert run is not None and run["state"] == "interrupted"
    assert db_row(db, "SELECT * FROM env_locks") is None
    progress_edits = [c for c in fake_connector.calls[before:] if c.method == "PUT"]
    assert progress_edits and "interrupted" in str(progress_edits[-1].body)
    report = verify(tmp_path / "logs" / "deploy" / "notifications", [AUDIT_KEY_BYTES])
    assert report.ok, report.problems
    events = (tmp_path / "logs" / "deploy" / "notifications").glob("*.jsonl")
    assert any('"event":"Interrupted"' in p.read_text().replace(" ", "") for p in events)

    # The lock really is free: a new request for Lab gets an approval card.
    count = len(fake_connector.calls)
    assert await bot_process.post(make_message("rollback Lab", service_url=fake_connector.url))
    fresh = (await fake_connector.wait_for_calls(count + 1, timeout=15))[count:]
    assert "waiting for approval" in fresh[0].text, fresh[0].text


async def test_a_pending_approval_still_works_after_a_restart(
    bot_process: BotProcess, lab: Lab, fake_connector: FakeConnector, tmp_path: Path
) -> None:
    db = tmp_path / "var" / "mcms-bot.db"
    await bot_process.start()
    assert await bot_process.post(make_message("rollback Lab", service_url=fake_connector.url))
    card_call = (await fake_connector.wait_for_calls(1, timeout=15))[0]
    card = card_call.body["attachments"][0]["content"]
    approve = next(a for a in card["actions"] if a["verb"] == "approve")
    await bot_process.stop()  # a deploy of the bot itself, between request and approval

    await bot_process.start()
    invoke = make_invoke(
        "approve",
        approve["data"],
        reply_to_id=card_call.assigned_id or "",
        service_url=fake_connector.url,
    )
    assert await bot_process.post(invoke) == 200
    for _ in range(300):
        row = db_row(db, "SELECT state FROM requests")
        if row is not None and row["state"] in ("succeeded", "failed"):
            break
        await asyncio.sleep(0.05)
    assert row is not None and row["state"] == "succeeded"
    assert lab.state(lab.host_for("Lab"))["sites"]["MCMS.Portal"]["release"] == "1.4.1"
