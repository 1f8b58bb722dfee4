"""No secret ever reaches a log, a card, a chat message or the audit."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bot.logs import make_redactor, setup_logging
from lab.demo import DEMO_PASSWORD
from tests.runs.test_rollback_flow import request_rollback

if TYPE_CHECKING:
    from tests.conftest import Chat


def test_app_log_masks_secret_values_in_messages_and_tracebacks(tmp_path: Path) -> None:
    secret = 'pa"ss\\word-1234'
    path = setup_logging(tmp_path / "app", make_redactor([secret, "x"]))
    log = logging.getLogger("test.secrets")
    try:
        log.warning("connecting with %s", secret)
        try:
            raise RuntimeError(f"auth failed for {secret}")
        except RuntimeError:
            log.exception("boom")
        for handler in logging.getLogger().handlers:
            handler.flush()
        text = path.read_text()
        assert secret not in text and json.dumps(secret)[1:-1] not in text
        assert text.count("***") >= 2
    finally:
        for handler in list(logging.getLogger().handlers):
            logging.getLogger().removeHandler(handler)
            handler.close()


async def test_no_password_in_any_file_card_or_log_after_a_busy_session(
    chat: Chat, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await chat.say("status")
    await chat.say("smoke Lab")
    chat.lab.set_fault(chat.lab.host_for("InternalStage"), "winrm", "auth")
    await chat.say("status InternalStage")
    card, request_id = await request_rollback(chat)
    await chat.click("approve", card)
    await chat.wait_request(request_id, "succeeded", "failed")

    written = [
        p
        for d in ("var", "logs", "artifacts", "docs")
        for p in (tmp_path / d).rglob("*")
        if p.is_file()
    ]
    assert {p.suffix for p in written} >= {".db", ".jsonl", ".log", ".md"}
    for path in written:
        assert DEMO_PASSWORD.encode() not in path.read_bytes(), path
    for call in chat.connector.calls:
        assert DEMO_PASSWORD not in json.dumps(call.body), call.path
    assert DEMO_PASSWORD not in caplog.text
