"""`plan`, `history` and `run RUN-ID` in chat: see before doing, and look back.

`plan` shows the approval card's plan without requesting anything (and the same plan hash
the request then binds); `history` lists runs and deployments from the store; `run` shows
a run's progress card again, rebuilt from the store.
"""

from __future__ import annotations

import pytest

from lab.core import Lab
from tests.conftest import MEGAN, STRANGER, Chat, card_texts, table_rows
from tests.runs.test_rollback_bad_paths import MUTATING_OPS

pytestmark = pytest.mark.slow


def mutations(lab: Lab) -> list[str]:
    return [c.op for c in lab.calls(lab.host_for("Lab")) if c.op in MUTATING_OPS]


async def test_plan_shows_the_approval_plan_without_requesting_anything(chat: Chat) -> None:
    reply = await chat.say("plan Lab")
    card = chat.cards[-1]
    texts = card_texts(card)
    assert texts[0] == "Rollback Lab to 1.4.1?"
    assert texts[1].startswith("**Preview: this is the plan `rollback Lab` would ask to approve")
    assert "1. Preflight on every host" in " ".join(texts)
    assert not card.get("actions") and not any(b.get("type") == "Input.Text" for b in card["body"])
    assert "Nothing was requested" in reply.text
    assert await chat.store.count_requests("pending") == 0
    assert mutations(chat.lab) == []

    # The request asked right after binds the very plan the preview showed.
    shown_hash = reply.text.split("plan hash ")[1][:12]
    asked = await chat.say("rollback Lab")
    request_id = asked.text.split("(")[-1].rstrip(").")
    request = await chat.store.get_request(request_id)
    assert request is not None and request.plan_hash.startswith(shown_hash)

    deploy = await chat.say("plan deploy Lab 1.4.3", user=MEGAN)  # an operator may look
    assert "1.4.2 → 1.4.3" in deploy.text


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("plan", "`plan` needs an environment"),
        ("plan Nowhere", "There is no environment `Nowhere`"),
        ("plan deploy Lab", "`plan deploy` needs a version"),
        ("plan Lab 9.9.9", "9.9.9"),
        ("history Lab many", "is not a number of runs"),
        ("run run-00000000", "There is no run `run-00000000`"),
    ],
)
async def test_bad_plan_history_and_run_input_is_answered_and_runs_nothing(
    chat: Chat, text: str, words: str
) -> None:
    reply = await chat.say(text)
    assert words in reply.text
    assert mutations(chat.lab) == []


async def test_plan_needs_the_operator_role(chat: Chat) -> None:
    reply = await chat.say("plan Lab", user=STRANGER)
    assert "operator" in reply.text and mutations(chat.lab) == []


async def test_history_and_run_show_a_finished_rollback(chat: Chat) -> None:
    empty = await chat.say("history Lab")
    assert "No run of Lab yet." in card_texts(chat.cards[-1]) and "0 run(s)" in empty.text
    asked = await chat.say("rollback Lab")
    request_id = asked.text.split("(")[-1].rstrip(").")
    await chat.click("approve", chat.cards[-1])
    request = await chat.wait_request(request_id, "succeeded", "failed")
    assert request.state == "succeeded"
    run = await chat.store.run_for_request(request_id)
    assert run is not None

    history = await chat.say("history Lab")
    assert history.text == "Lab: 1 run(s) shown; current 1.4.1, last stable 1.4.1."
    rows = table_rows(chat.cards[-1])
    assert rows[0] == ["Started", "Change", "Asked by", "Approved by", "Outcome", "Took", "Run"]
    assert rows[1][1:3] == ["rollback 1.4.2 → 1.4.1", "Alex Wilber"]
    assert rows[1][4] == "succeeded" and rows[1][6] == run.id

    shown = await chat.say(f"run {run.id}")
    card = chat.cards[-1]
    assert card_texts(card)[0] == "Rollback Lab 1.4.2 → 1.4.1: succeeded"
    steps = table_rows(card)[1:]
    assert len(steps) == 18 and {r[2] for r in steps} == {"✅ passed"}
    assert shown.text.startswith("✅ Rollback of Lab to 1.4.1 succeeded")
