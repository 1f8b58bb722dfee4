"""Chat trouble never fails or delays a run: every post is queued, never awaited by the run.

Reproduced in the issue: with Teams answering 429 three times (Retry-After 2 s) and the
deadlines scaled down, step "Notify Deployed" failed after a fully successful change, and
the "started" post — awaited with no deadline — held the lock while it waited. Here the
connector answers 429 and 503 for a while (30 s scaled down to 4 s) from the moment of the
approval: the run must finish as fast as without trouble, and once Teams answers again the
conversation must get every final state, in order, each once.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from tests.conftest import card_texts
from tests.runs.test_rollback_flow import LAB_STEPS, audit_events, request_rollback

if TYPE_CHECKING:
    from tests.conftest import Chat

OUTAGE_S = 4.0  # the 30 s, scaled down with the deadlines


async def test_a_rollback_during_a_teams_outage_succeeds_on_time_and_tells_everything_after(
    chat: Chat,
) -> None:
    card, request_id = await request_rollback(chat)
    before = len(chat.connector.calls)
    chat.connector.fail_for(OUTAGE_S, statuses=(429, 503), retry_after=0.5)
    started = time.monotonic()
    await chat.click("approve", card)
    # Ended and unlocked while Teams still refuses: nothing in the run waited for chat.
    while (
        (await chat.store.get_request(request_id)).state != "succeeded"  # type: ignore[union-attr]
        or await chat.store.lock_holder("Lab") is not None
    ):
        assert time.monotonic() - started < OUTAGE_S, "the run waited for Teams"
        await asyncio.sleep(0.02)
    took = time.monotonic() - started
    assert chat.connector.in_outage
    succeeded = [e["step"] for e in audit_events(chat) if e["event"] == "StepSucceeded"]
    assert succeeded == LAB_STEPS, "the notify steps do not wait for (or fail with) Teams"

    refused = [c for c in chat.connector.calls[before:] if c.status >= 400]
    assert refused and {c.status for c in refused} == {429, 503}
    await chat.eventually(lambda: not chat.connector.in_outage, timeout=OUTAGE_S + 1)
    await chat.settle()

    delivered = [c for c in chat.connector.calls[before:] if c.status < 300]
    posts = [c for c in delivered if c.method == "POST"]
    texts = [c.text for c in posts]
    run = await chat.store.run_for_request(request_id)
    assert run is not None and run.progress_activity_id, "the card's id is stored once it lands"
    # Every message, in the order the run queued it, each once.
    assert texts[0] == f"{run.id} started"
    notify = [t for t in texts if t.startswith("**")]
    assert [t.split("**")[1] for t in notify] == ["RolledBack", "Deployed"]
    assert texts[-1].startswith("✅ Rollback of Lab to 1.4.1 succeeded")
    assert len(texts) == len(set(texts))
    # The final states: the progress card reads "succeeded", the approval card its end.
    progress = [
        c for c in delivered if c.method == "PUT" and c.activity_id == run.progress_activity_id
    ]
    assert "succeeded" in card_texts(progress[-1].body["attachments"][0]["content"])[0]
    assert delivered.index(progress[-1]) < delivered.index(posts[-1])
    approval = [
        c for c in delivered if c.method == "PUT" and c.activity_id == chat.card_message_id(card)
    ]
    assert "run state: succeeded" in " ".join(
        card_texts(approval[-1].body["attachments"][0]["content"])
    )
    print(f"run took {took:.2f} s during a {OUTAGE_S:g} s outage")
