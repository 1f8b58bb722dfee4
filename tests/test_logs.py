"""The application log as operators' tools read it: a level from the config or the command
line, one file per day with the configured retention, and what a line is about (correlation
id, request, run) as JSON fields rather than inside the message text."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from bot.logs import LOG_FILE, log_fields, setup_logging
from tests.bot_process import free_port, start_bot
from tests.lab_fixtures import LAB_CREDENTIALS, write_lab_config
from tests.runs.test_rollback_flow import request_rollback

if TYPE_CHECKING:
    from lab.core import Lab
    from tests.conftest import Chat
    from tests.fake_connector import FakeConnector

pytest_plugins = ["tests.fake_connector", "tests.lab_fixtures"]

DAY_S = 86_400


def lines(path: Path) -> list[dict[str, Any]]:
    for handler in logging.getLogger().handlers:
        handler.flush()
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@contextlib.contextmanager
def bot_logging(directory: Path, keep_days: int = 14) -> Iterator[Path]:
    """The bot's logging set up as `mcms-bot run` does, into `directory`; undone afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield setup_logging(directory, lambda text: text, keep_days=keep_days)
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


@pytest.fixture
def app_log(tmp_path: Path) -> Iterator[Path]:
    with bot_logging(tmp_path / "app") as path:
        yield path


async def test_context_fields_are_fields_not_message_text(app_log: Path) -> None:
    log = logging.getLogger("test.logs")

    async def in_a_task() -> None:
        log.info("from a task started inside")

    with log_fields(correlation_id="act-42", run_id="run-1a2b3c4d"):
        log.info("handled")
        task = asyncio.create_task(in_a_task())
    await task
    log.info("afterwards")
    handled, from_task, after = lines(app_log)
    for entry in (handled, from_task):
        assert (entry["correlation_id"], entry["run_id"]) == ("act-42", "run-1a2b3c4d")
        assert "act-42" not in entry["msg"] and "run-1a2b3c4d" not in entry["msg"]
    assert "correlation_id" not in after and "run_id" not in after


async def test_a_run_logs_its_run_request_and_click_as_fields(chat: Chat, app_log: Path) -> None:
    """Reproduction: run and correlation ids were written into the message text."""
    card, request_id = await request_rollback(chat)
    await chat.click("approve", card)
    await chat.wait_request(request_id, "succeeded")
    run = await chat.store.run_for_request(request_id)
    assert run is not None
    [finished] = [e for e in lines(app_log) if e["msg"] == "run succeeded"]
    assert finished["run_id"] == run.id and finished["request_id"] == request_id
    assert finished["correlation_id"], "the approve click that started the run"
    assert finished["logger"] == "bot.runs.executor"


def test_files_rotate_daily_and_only_the_configured_days_are_kept(tmp_path: Path) -> None:
    directory = tmp_path / "app"
    directory.mkdir()
    now = time.time()
    for age in range(1, 7):  # six earlier days, as rotation names them
        day = time.strftime("%Y-%m-%d", time.gmtime(now - (age + 1) * DAY_S))
        (directory / f"{LOG_FILE}.{day}").write_text("{}\n")
    current = directory / LOG_FILE
    current.write_text('{"msg": "yesterday"}\n')
    os.utime(current, (now - DAY_S, now - DAY_S))  # last written yesterday
    with bot_logging(directory, keep_days=3):
        logging.getLogger("test.logs").warning("today")
    rotated = sorted(p.name for p in directory.iterdir() if p.name != LOG_FILE)
    yesterday = time.strftime("%Y-%m-%d", time.gmtime(now - DAY_S))
    assert len(rotated) == 3 and rotated[-1] == f"{LOG_FILE}.{yesterday}", rotated
    assert '"msg": "yesterday"' in (directory / rotated[-1]).read_text()
    assert [e["msg"] for e in map(json.loads, current.read_text().splitlines())] == ["today"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("configured", "flag", "seen", "unseen"),
    [
        ("WARNING", None, "UNAUTHENTICATED LOCAL MODE", "listening on"),
        ("warning", "debug", "Using selector", None),
        (None, None, "listening on", "Using selector"),
    ],
    ids=["config-warning", "flag-overrides-config", "default-info"],
)
async def test_log_level_comes_from_the_config_or_the_command_line(
    lab: Lab,
    fake_connector: FakeConnector,
    tmp_path: Path,
    configured: str | None,
    flag: str | None,
    seen: str,
    unseen: str | None,
) -> None:
    port = free_port()
    extra = f'\n[logging]\nlevel = "{configured}"\n' if configured else ""
    config = write_lab_config(lab, tmp_path, port=port, extra=extra)
    argv = [str(Path(sys.executable).parent / "mcms-bot"), "run", "--config", str(config)]
    if flag:
        argv += ["--log-level", flag]
    bot = await start_bot(argv, port=port, cwd=tmp_path, env={**os.environ, **LAB_CREDENTIALS})
    assert bot.stop() == 0
    logged = [e["msg"] for e in lines(tmp_path / "logs" / "app" / LOG_FILE)]
    assert any(seen in m for m in logged), logged
    if unseen:
        assert not any(unseen in m for m in logged), logged
