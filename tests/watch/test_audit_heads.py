"""The audit head is published outside the box: at a run's end and daily, in the alert
conversation and the app log; `audit verify --against` checks the log still holds it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from adapters.audit import main_verify
from adapters.audit.verifier import published_heads
from bot.server import HEADS_KEY
from bot.watch.audit_heads import until_next_daily
from tests.conftest import AUDIT_KEY_BYTES
from tests.runs.test_rollback_flow import request_rollback

if TYPE_CHECKING:
    from tests.conftest import Chat


def head_posts(chat: Chat) -> list[str]:
    return [c.text for c in chat.replies if "Audit head" in c.text]


async def test_a_runs_end_publishes_the_head_in_the_alert_chat_and_the_log(
    chat: Chat, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    await chat.say("subscribe Lab")
    card, request_id = await request_rollback(chat)
    with caplog.at_level(logging.INFO, logger="bot.watch.audit_heads"):
        await chat.click("approve", card)
        await chat.wait_request(request_id, "succeeded")
        await chat.eventually(lambda: head_posts(chat))

    [post] = head_posts(chat)
    assert "after Deployed in Lab" in post
    [(seq, digest)] = published_heads(post)
    assert any(published_heads(r.getMessage()) == [(seq, digest)] for r in caplog.records)
    saved = tmp_path / "teams-thread.txt"
    saved.write_text(post, encoding="utf-8")
    audit_dir = Path(chat.config.paths.audit_dir)
    assert main_verify(audit_dir, [AUDIT_KEY_BYTES], saved) == 0
    assert "1 published head(s) match" in capsys.readouterr().out


async def test_the_daily_publication_names_the_current_head(chat: Chat) -> None:
    await chat.say("subscribe InternalProd")
    await chat.say("status Lab")  # some audit lines

    await chat.client.server.app[HEADS_KEY].daily()
    await chat.settle()

    [post] = head_posts(chat)
    [(seq, _)] = published_heads(post)
    assert seq >= 3 and "Audit head of 20" in post


def test_the_daily_publication_is_due_five_past_midnight_local_time(chat: Chat) -> None:
    # 2026-11-27 14:00 UTC = 23:00 KST: due at 00:05 KST, 65 minutes later.
    now = datetime(2026, 11, 27, 14, 0, tzinfo=UTC)
    assert until_next_daily(now, chat.runtime.services) == 65 * 60
