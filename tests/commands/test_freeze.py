"""`lock ENV REASON` / `unlock ENV` through chat: a freeze refuses new rollbacks and deploys
and the approval of pending ones — except break glass — and is shown wherever a change is
decided. What was (not) requested or run is read from the store and the lab, not from the
bot's words.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import MEGAN, ChatSetup, card_texts, shown
from tests.runs.test_rollback_bad_paths import mutations, runs_of
from tests.runs.test_rollback_flow import request_rollback

if TYPE_CHECKING:
    from tests.conftest import Chat

WHY = "quarter-end close, no changes until Monday"
BREAK = "P1 at 03:10, the release corrupts orders"


def audit(chat: Chat) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for path in sorted(Path(chat.config.paths.audit_dir).glob("*.jsonl")):
        lines += [json.loads(line) for line in path.read_text().splitlines()]
    return lines


def timeline(chat: Chat) -> str:
    return "".join(p.read_text() for p in Path(chat.config.paths.timeline_dir).glob("*.md"))


async def requests_of(chat: Chat) -> int:
    with sqlite3.connect(chat.config.paths.database, timeout=5) as conn:
        return int(conn.execute("SELECT count(*) FROM requests").fetchone()[0])


def latest(chat: Chat, card: dict[str, Any]) -> dict[str, Any]:
    """The newest edit of a posted card (or the card, never edited)."""
    puts = chat.puts(chat.card_message_id(card))
    if not puts:
        return card
    content: dict[str, Any] = puts[-1].body["attachments"][0]["content"]
    return content


def releases(chat: Chat) -> set[str]:
    state = chat.lab.state(chat.lab.host_for("Lab"))
    return {s["release"] for s in state["sites"].values()}


async def test_a_freeze_refuses_new_rollbacks_and_deploys_until_unlocked(chat: Chat) -> None:
    reply = await chat.say(f"lock Lab {WHY}")
    assert not reply.body.get("attachments")
    freeze = await chat.store.freeze_of("Lab")
    assert freeze is not None and (freeze.frozen_by, freeze.reason) == ("Alex Wilber", WHY)
    assert "Lab is frozen since" in reply.text and "`unlock Lab`" in reply.text

    # The break-glass way out is the very change asked for, on the bot's host.
    for text, glass in (
        ("rollback Lab", "rollback Lab"),
        ("deploy Lab 1.4.3", "deploy Lab 1.4.3"),
        ("rollback lab 1.4.0", "rollback Lab 1.4.0"),
    ):
        refused = await chat.say(text)
        words = shown(refused.text)
        assert words.startswith("Lab is frozen by Alex Wilber since "), words
        assert words.endswith(
            f": {WHY}. Nothing was requested. Ask an approver to `unlock Lab`, or use break "
            f'glass on the bot\'s host (`mcms-bot {glass} --reason "..."`).'
        ), words
    assert await requests_of(chat) == 0 and mutations(chat) == []
    refusals = [e for e in audit(chat) if e["event"] == "Refused" and e["status"] == "frozen"]
    assert len(refusals) == 3

    [frozen] = [e for e in audit(chat) if e["event"] == "Frozen"]
    assert frozen["environment"] == "Lab" and frozen["detail"]["reason"] == WHY
    assert frozen["actor"]["name"] == "Alex Wilber"
    assert f"Lab frozen by Alex Wilber: {WHY}" in timeline(chat)

    # status and plan show it; smoke still runs while frozen (it changes nothing).
    await chat.say("status Lab")
    texts = [shown(t) for t in card_texts(chat.cards[-1])]
    assert any(t.startswith("Freeze: 🧊 frozen by Alex Wilber since ") and WHY in t for t in texts)
    await chat.say("plan rollback Lab")
    assert any("Lab is frozen by Alex Wilber" in shown(t) for t in card_texts(chat.cards[-1]))
    smoke = await chat.say("smoke Lab")
    assert "PASS" in smoke.text
    assert (await chat.store.last_smoke("Lab")) is not None

    unlocked = await chat.say("unlock Lab")
    assert "Lab is unfrozen" in unlocked.text and await chat.store.freeze_of("Lab") is None
    [unfrozen] = [e for e in audit(chat) if e["event"] == "Unfrozen"]
    assert unfrozen["detail"]["frozen_by"] == "Alex Wilber"
    assert "Lab unfrozen by Alex Wilber" in timeline(chat)
    card, _ = await request_rollback(chat, "rollback Lab")
    assert not any("frozen" in t for t in card_texts(card))
    assert await requests_of(chat) == 1


async def test_lock_and_unlock_refuse_bad_input_and_never_overwrite(chat: Chat) -> None:
    short = await chat.say("lock Lab drill")
    assert "say why in 10 to 300 characters" in short.text
    missing = await chat.say("lock Lab")
    assert "`lock Lab REASON`" in missing.text
    unknown = await chat.say(f"lock Nowhere {WHY}")
    assert "There is no environment `Nowhere`" in unknown.text
    no_env = await chat.say("unlock")
    assert "`unlock` needs an environment" in no_env.text
    # Megan is an operator, not an approver.
    forbidden = await chat.say(f"lock Lab {WHY}", user=MEGAN)
    assert "needs the **approver** role for Lab" in forbidden.text
    assert await chat.store.freeze_of("Lab") is None
    not_frozen = await chat.say("unlock Lab")
    assert "Lab is not frozen" in not_frozen.text

    await chat.say(f"lock Lab {WHY}")
    again = await chat.say("lock Lab another reason, a different one")
    words = shown(again.text)
    assert words.startswith("Lab is already frozen by Alex Wilber since ") and WHY in words
    freeze = await chat.store.freeze_of("Lab")
    assert freeze is not None and freeze.reason == WHY
    assert await chat.store.freeze_of("Lab") is not None
    forbidden = await chat.say("unlock Lab", user=MEGAN)
    assert "needs the **approver** role" in forbidden.text
    assert await chat.store.freeze_of("Lab") is not None
    assert len([e for e in audit(chat) if e["event"] == "Frozen"]) == 1
    assert [e for e in audit(chat) if e["event"] == "Unfrozen"] == []


async def test_a_pending_request_is_not_approved_while_frozen_but_break_glass_is(
    chat: Chat,
) -> None:
    card, request_id = await request_rollback(chat, "rollback Lab")
    lock = await chat.say(f"lock Lab {WHY}")
    assert f"Pending request(s) {request_id} cannot be approved" in lock.text
    # Everyone's copy of the pending card says why it cannot be approved, before a click.
    await chat.settle()
    line = next(t for t in card_texts(latest(chat, card)) if "frozen by" in t)
    assert shown(line).startswith("**🧊 Lab is frozen by Alex Wilber since ") and WHY in line
    assert [a["verb"] for a in latest(chat, card)["actions"]] == [
        "approve",
        "reject",
        "break_glass",
    ]

    answer = await chat.click("approve", card)
    assert answer["value"]["code"] == "Frozen"
    message = shown(answer["value"]["message"])
    assert message.startswith("Lab is frozen by Alex Wilber since ") and WHY in message
    assert "or, in an emergency, break glass (the card's Break glass button" in message
    assert await runs_of(chat, request_id) == 0 and mutations(chat) == []
    request = await chat.store.get_request(request_id)
    assert request is not None and request.state == "pending"

    data = {**card["actions"][2]["data"], "reason": BREAK}
    glass = await chat.click("break_glass", card, data=data)
    assert glass["statusCode"] == 200
    done = await chat.wait_request(request_id, "succeeded", "failed")
    assert done.state == "succeeded" and done.break_glass
    assert releases(chat) == {"1.4.1"}  # the lab really changed
    [approved] = [e for e in audit(chat) if e["event"] == "Approved"]
    assert "frozen by Alex Wilber" in approved["detail"]["overrode_freeze"]
    assert "overriding the freeze (Lab frozen by Alex Wilber" in timeline(chat)
    assert await chat.store.freeze_of("Lab") is not None  # break glass does not unlock


async def test_unlock_redraws_the_pending_card_and_approve_works_again(chat: Chat) -> None:
    card, request_id = await request_rollback(chat, "rollback Lab")
    await chat.say(f"lock Lab {WHY}")
    await chat.settle()
    assert any("frozen by" in t for t in card_texts(latest(chat, card)))
    await chat.say("unlock Lab")
    await chat.settle()
    assert not any("frozen by" in t for t in card_texts(latest(chat, card)))
    await chat.click("approve", card)
    done = await chat.wait_request(request_id, "succeeded", "failed")
    assert done.state == "succeeded" and not done.break_glass and releases(chat) == {"1.4.1"}


def lab_without_break_glass(raw: dict[str, Any]) -> None:
    raw["environments"]["Lab"]["approval"]["break_glass"] = False


@pytest.mark.parametrize("chat", [ChatSetup(tweak=lab_without_break_glass)], indirect=True)
async def test_a_freeze_offers_only_unlock_where_break_glass_is_off(chat: Chat) -> None:
    # Before the freeze: a pending request, whose Approve the freeze then refuses.
    await chat.say("rollback Lab")
    card = chat.cards[-1]
    await chat.say(f"lock Lab {WHY}")

    refused = shown((await chat.say("deploy Lab 1.4.3")).text)
    assert refused.endswith(
        "Nothing was requested. Ask an approver to `unlock Lab` (break glass is off for this "
        "environment)."
    ), refused
    assert "mcms-bot" not in refused

    answer = await chat.click("approve", card)
    assert answer["value"]["code"] == "Frozen"
    message = shown(answer["value"]["message"])
    assert message.endswith(
        "Nothing was approved; the request stays pending. Ask an approver to `unlock Lab` first."
    ), message
    assert await requests_of(chat) == 1 and mutations(chat) == []
