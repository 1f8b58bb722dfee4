"""A final card state the outbound queue gave up on (Teams refused it, or retries ran out)
is released, not renewed forever by the process that kept it: the next `resume_finals` pass
— this process's own — tries it again, and one Teams refuses for good is dropped after
FINAL_ATTEMPTS tries. Real aiohttp app, real queue, the fake connector refusing."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bot.server import QUEUE_KEY
from bot.teams.reporter import FINAL_ATTEMPTS, QueueReporter
from tests.adapters.test_store import read

if TYPE_CHECKING:
    from tests.conftest import Chat

CONVERSATION = "conv-finals"
CARD = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "x"}]}


async def kept_becomes(chat: Chat, want: list[tuple[object, ...]]) -> None:
    """Wait until the kept finals (owner, attempts, text) are `want` (the queue's give-up
    reaches the store in the background)."""
    database = Path(chat.config.paths.database)
    deadline = asyncio.get_running_loop().time() + 10
    while (
        rows := await read(database, "SELECT owner, attempts, text FROM pending_finals")
    ) != want:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"pending finals are {rows}, wanted {want}")
        await asyncio.sleep(0.02)


async def test_a_refused_final_is_retried_by_the_next_pass_and_dropped_after_its_attempts(
    chat: Chat, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="bot.teams.reporter")
    await chat.say("help", conversation_id=CONVERSATION)  # the bot knows the conversation
    queue = chat.client.app[QUEUE_KEY]
    reporter = QueueReporter(chat.runtime.services, queue)
    key = await reporter.post(CONVERSATION, "run-1: running", CARD)
    assert key is not None
    await chat.eventually(lambda: queue.delivered_id(key) is not None)
    message = queue.delivered_id(key)

    chat.connector.fail_for(600, statuses=(403,))  # refused: not retried by the queue
    await reporter.update(CONVERSATION, key, "run-1: succeeded", CARD, final=True)
    await queue.flush(CONVERSATION)
    await kept_becomes(chat, [("", 1, "run-1: succeeded")])

    chat.connector.fail_for(0)  # Teams takes it now
    count = len(chat.connector.calls)
    assert await reporter.resume_finals() == 1, "released: this process's next pass claims it"
    await queue.flush(CONVERSATION)
    delivered = [
        c for c in chat.connector.calls[count:]
        if c.method == "PUT" and c.status < 300 and c.activity_id == message
    ]  # fmt: skip
    assert len(delivered) == 1 and "run-1: succeeded" in str(delivered[0].body)
    await kept_becomes(chat, [])

    # Refused for good: tried FINAL_ATTEMPTS times in all, then dropped and logged.
    chat.connector.fail_for(600, statuses=(403,))
    await reporter.update(CONVERSATION, key, "run-1: closed", CARD, final=True)
    await queue.flush(CONVERSATION)
    for attempt in range(1, FINAL_ATTEMPTS):
        await kept_becomes(chat, [("", attempt, "run-1: closed")])
        assert await reporter.resume_finals() == 1
        await queue.flush(CONVERSATION)
    await kept_becomes(chat, [])
    assert f"not delivered after {FINAL_ATTEMPTS} attempts" in caplog.text
    assert await reporter.resume_finals() == 0
