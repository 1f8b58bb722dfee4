"""A blue/green flow whose instance died mid-way is settled by a surviving instance's lease
loop — without any restart: the flow ends `interrupted`, its conversation is told what the
router shows (read then, from the lab), and the pair is free for the next flow."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from adapters.store import Store
from bot.runs.leases import lease_once
from bot.server import QUEUE_KEY
from bot.teams.reporter import QueueReporter
from tests.adapters.test_store_shared import flow
from tests.conftest import MEGAN
from tests.runs.test_bluegreen import flow_in

if TYPE_CHECKING:
    from tests.conftest import Chat

CONVERSATION = "conv-bluegreen"


async def test_a_survivor_settles_a_dead_instances_mid_switch_flow_without_a_restart(
    chat: Chat, tmp_path: Path
) -> None:
    await chat.say("help", conversation_id=CONVERSATION)  # the bot knows the conversation
    store = chat.store
    # The other instance, on another machine (none of its lock files here): it was switching
    # prod's traffic when it died, and its lease has run out.
    dead = await Store.open(store.where, owner="elsewhere", marks=tmp_path / "elsewhere" / "db")
    try:
        left = replace(
            flow("bg-dead", pair="prod", state="switching"),
            from_slot="InternalProd", to_slot="InternalStage", version="1.4.3",
            conversation_id=CONVERSATION, step="drain InternalProd",
        )  # fmt: skip
        assert await dead.create_flow(left) is not None
    finally:
        await dead.close()
    busy = await chat.say("bluegreen prod 1.4.3", user=MEGAN, conversation_id=CONVERSATION)
    assert "approval #1" not in busy.text, "the dead instance's flow holds the pair"

    told_from = len(chat.connector.calls)
    reporter = QueueReporter(chat.runtime.services, chat.client.app[QUEUE_KEY])
    await lease_once(chat.runtime.services, reporter)

    row = await flow_in(chat, "bg-dead", "interrupted", timeout=20)
    assert not row.active
    await chat.eventually(
        lambda: any(
            c.method == "POST" and "bg-dead" in c.text and "Interrupted" in c.text
            for c in chat.connector.calls[told_from:]
        ),
        timeout=20,
    )
    told = next(
        c for c in chat.connector.calls[told_from:]
        if c.method == "POST" and "bg-dead" in c.text and "Interrupted" in c.text
    )  # fmt: skip
    # What the lab's router shows, read by the survivor: nothing was switched yet.
    assert "InternalProd is live" in told.text, told.text
    assert "when another instance took it over" in told.text
    assert "`switchback prod`" in told.text
    again = await chat.say("bluegreen prod 1.4.3", user=MEGAN, conversation_id=CONVERSATION)
    assert "approval #1 of 2" in again.text, again.text
