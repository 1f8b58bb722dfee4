"""The alert card's buttons and the alert conversations, against the lab.

"Start rollback" yields the same approval card `rollback Lab` would, in the conversation of
the click; "Silence 1 h" mutes the reminder (and only for an hour) and is audited with who
and why. `subscribe` in a channel makes alerts new posts in that channel.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.alert_helpers import lab_runs
from tests.conftest import ADELE, MEGAN, card_texts
from tests.teams_factory import CHANNEL_THREAD, PERSONAL_CONVERSATION, TENANT, make_invoke

if TYPE_CHECKING:
    from tests.alert_helpers import AlertBot
    from tests.conftest import Chat

pytest_plugins = ["tests.alert_fixtures"]

ROLLBACK_TITLE = "Rollback Lab to 1.4.1?"


def events(chat: Chat, name: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted(Path(chat.config.paths.audit_dir).glob("*.jsonl")):
        out += [e for line in path.read_text().splitlines() if (e := json.loads(line))]
    return [e for e in out if e["event"] == name]


async def raised_alert(bot: AlertBot, chat: Chat) -> dict[str, Any]:
    bot.lab.set_fault(bot.lab.host_for("Lab"), "health", "down")
    await bot.runs_until(lambda rs: any(r.action == "raise" for r in lab_runs(rs)))
    await chat.settle()
    [card] = bot.alert_cards()
    return card


async def wait_for_card(chat: Chat, title: str, timeout: float = 10) -> tuple[Any, dict[str, Any]]:
    """(the connector call that posted it, the card) once a card with `title` is posted."""
    async with asyncio.timeout(timeout):
        while True:
            for call in chat.replies:
                for att in call.body.get("attachments") or []:
                    if card_texts(att["content"])[:1] == [title]:
                        return call, att["content"]
            await asyncio.sleep(0.02)


async def test_start_rollback_posts_the_approval_card_in_the_alert_conversation(
    alert_bot: AlertBot,
) -> None:
    bot = alert_bot
    chat = await bot.start()
    await chat.say("subscribe Lab")
    card = await raised_alert(bot, chat)

    refused = await chat.click("start_rollback", card, user=ADELE)  # approver, not operator
    assert refused["statusCode"] == 400 and refused["value"]["code"] == "Forbidden"
    answer = await chat.click("start_rollback", card)
    assert answer["statusCode"] == 200
    assert card_texts(answer["value"])[0].startswith("🔴 Lab")

    call, approval = await wait_for_card(chat, ROLLBACK_TITLE)
    assert call.conversation_id == PERSONAL_CONVERSATION
    assert [a["title"] for a in approval["actions"]] == ["Approve", "Reject", "Break glass"]
    again = await chat.click("start_rollback", card)
    assert again["value"]["code"] == "AlreadyRequested"
    assert "approval card" in again["value"]["message"]

    alert = await chat.store.open_alert_for("Lab")
    assert alert is not None and alert.rollback_request_id is not None
    request = await chat.store.get_request(alert.rollback_request_id)
    assert request is not None
    assert (request.origin, request.state, request.conversation_id) == (
        f"alert:{alert.id}",
        "pending",
        PERSONAL_CONVERSATION,
    )
    assert request.card_activity_id == call.assigned_id  # so its card can be edited later
    await chat.settle()
    edited = chat.puts(chat.card_message_id(card))
    assert any(
        f"Rollback: requested ({request.id})"
        in " ".join(card_texts(e.body["attachments"][0]["content"]))
        for e in edited
    )

    # It is a real approval card: approving it rolls Lab back, and the alert resolves.
    bot.lab.clear_faults()
    assert (await chat.click("approve", approval))["statusCode"] == 200
    done = await chat.wait_request(request.id, "succeeded", "failed")
    assert done.state == "succeeded"
    await bot.runs_until(lambda rs: any(r.action == "resolve" for r in lab_runs(rs)))


async def test_channel_alerts_are_new_posts_and_rollback_lands_in_the_alert_thread(
    alert_bot: AlertBot,
) -> None:
    bot = alert_bot
    chat = await bot.start()
    reply = await chat.say("subscribe Lab", conversation_type="channel")
    assert "as new posts in this channel" in reply.text
    assert await chat.store.subscribers("Lab") == ["team-id"]
    card = await raised_alert(bot, chat)
    post = next(
        c for c in chat.replies if c.body.get("attachments") and c.conversation_id == "team-id"
    )
    # A new post in the channel: addressed to the channel itself, not to the thread the
    # subscribe message was in, at the service URL Teams' activity carried.
    assert CHANNEL_THREAD.startswith("team-id;messageid=")
    assert post.path.startswith("/v3/conversations/team-id/activities")

    thread = f"team-id;messageid={post.assigned_id}"
    invoke = make_invoke(
        "start_rollback",
        card["actions"][0]["data"],
        reply_to_id=post.assigned_id or "",
        service_url=chat.connector.url,
    )
    invoke["conversation"] = {
        "id": thread,
        "conversationType": "channel",
        "isGroup": True,
        "tenantId": TENANT,
    }
    response = await chat.client.post("/api/messages", json=invoke)
    assert (await response.json())["statusCode"] == 200
    call, _ = await wait_for_card(chat, ROLLBACK_TITLE)
    assert call.conversation_id == thread, "the approval card belongs under the alert post"


async def test_silence_mutes_reminders_for_one_hour_and_is_audited(alert_bot: AlertBot) -> None:
    bot = alert_bot
    chat = await bot.start()
    await chat.say("subscribe Lab")
    card = await raised_alert(bot, chat)

    def reminders() -> list[Any]:
        return [c for c in chat.replies if "still failing" in c.text]

    bot.clock.advance(minutes=31)
    await bot.runs_until(lambda rs: any(r.action == "remind" for r in lab_runs(rs)))
    await chat.settle()
    assert len(reminders()) == 1 and "still failing after 31 min" in reminders()[0].text

    data = card["actions"][1]["data"]
    no_reason = await chat.click("silence", card, data={**data, "silence_reason": " "})
    assert no_reason["value"]["code"] == "NoReason"
    assert (await chat.click("silence", card, user=ADELE))["value"]["code"] == "Forbidden"
    answer = await chat.click(
        "silence", card, user=MEGAN, data={**data, "silence_reason": "DB vendor is on it"}
    )
    assert answer["statusCode"] == 200
    banner = " ".join(card_texts(answer["value"]))
    assert "Silenced: until" in banner and "by Megan Bowen: DB vendor is on it" in banner
    await chat.settle()
    assert any(
        "DB vendor is on it" in " ".join(card_texts(e.body["attachments"][0]["content"]))
        for e in chat.puts(chat.card_message_id(card))
    ), "everyone's copy of the card shows the silence"

    bot.clock.advance(minutes=31)  # a reminder would be due now
    advanced = bot.clock()

    def after_advance(runs: list[Any]) -> list[Any]:  # a run in flight kept its old time
        return [r for r in lab_runs(runs) if r.at >= advanced]

    runs = await bot.runs_until(lambda rs: len(after_advance(rs)) >= 2)
    assert {r.why for r in after_advance(runs)} == {"silenced"}
    await chat.settle()
    assert len(reminders()) == 1

    bot.clock.advance(minutes=30)  # 61 min after the silence: it has ended
    await bot.runs_until(lambda rs: [r.action for r in lab_runs(rs)].count("remind") == 2)
    await chat.settle()
    assert len(reminders()) == 2

    [silenced] = events(chat, "AlertSilenced")
    assert silenced["actor"]["name"] == "Megan Bowen"
    assert silenced["detail"]["reason"] == "DB vendor is on it"
    refusals = {e["status"] for e in events(chat, "AlertActionRefused")}
    assert refusals == {"NoReason", "Forbidden"}


async def test_unsubscribe_stops_alerts_and_subscribing_needs_the_operator_role(chat: Chat) -> None:
    refused = await chat.say("subscribe Lab", user=ADELE)
    assert "operator" in refused.text
    assert await chat.store.subscribers("Lab") == []
    assert "Subscribed" in (await chat.say("subscribe lab")).text
    assert "already" in (await chat.say("subscribe Lab")).text
    assert await chat.store.subscribers("Lab") == [PERSONAL_CONVERSATION]
    reply = await chat.say("unsubscribe Lab")
    assert reply.text.startswith("Unsubscribed") and "No conversation gets them now" in reply.text
    assert await chat.store.subscribers("Lab") == []
    assert "was not subscribed" in (await chat.say("unsubscribe Lab")).text


async def test_a_frozen_environment_is_still_watched_and_its_start_rollback_is_refused(
    alert_bot: AlertBot,
) -> None:
    """A freeze stops changes, never the eyes: the watcher alerts (Teams and OpsGenie) and
    `smoke` runs; the alert's Start rollback meets the freeze like a typed rollback."""
    bot = alert_bot
    chat = await bot.start()
    await chat.say("subscribe Lab")
    await chat.say("lock Lab quarter-end close, no changes until Monday")
    assert await chat.store.freeze_of("Lab") is not None

    card = await raised_alert(bot, chat)
    assert card_texts(card)[0].startswith("🔴 Lab: Health failing")
    await bot.opsgenie.wait_for(lambda calls: len(bot.opsgenie.creates()) >= 1)
    assert len(events(chat, "AlertRaised")) == 1
    smoke = await chat.say("smoke Lab")
    assert "FAIL" in smoke.text

    before = len(chat.replies)
    answer = await chat.click("start_rollback", card)
    assert answer["statusCode"] == 200

    def refusal() -> Any:
        return next(
            (c for c in chat.replies[before:] if c.text.startswith("Lab is frozen by Alex")),
            None,
        )

    await chat.eventually(lambda: refusal() is not None, timeout=10)
    assert "Nothing was requested. Ask an approver to `unlock Lab`" in refusal().text
    alert = await chat.store.open_alert_for("Lab")
    assert alert is not None and alert.rollback_request_id is None
