"""The watcher against the lab: Health breaks → one alert (Teams + OpsGenie), a restart adds
nothing, Health comes back → one recovery post, the card updated, OpsGenie closed.

Real loopback servers throughout: the lab's portal and fault API, the fake Bot Connector,
the fake OpsGenie; the bot's watcher runs on its own schedule (every 0.3 s here).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from adapters.audit import verify
from bot.server import QUEUE_KEY
from tests.alert_helpers import OPSGENIE_KEY, lab_runs, watch_config
from tests.conftest import AUDIT_KEY_BYTES, card_texts, table_rows
from tests.teams_factory import PERSONAL_CONVERSATION

if TYPE_CHECKING:
    from tests.alert_helpers import AlertBot
    from tests.conftest import Chat

pytest_plugins = ["tests.alert_fixtures"]


def audit(chat: Chat) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for path in sorted(Path(chat.config.paths.audit_dir).glob("*.jsonl")):
        lines += [json.loads(line) for line in path.read_text().splitlines()]
    return lines


def events(chat: Chat, name: str) -> list[dict[str, Any]]:
    return [e for e in audit(chat) if e["event"] == name]


async def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def test_health_down_alerts_once_survives_a_restart_and_recovers_once(
    alert_bot: AlertBot,
) -> None:
    bot = alert_bot
    chat = await bot.start()
    assert "Subscribed" in (await chat.say("subscribe Lab")).text
    host = bot.lab.host_for("Lab")
    await bot.runs_until(lambda runs: any(r.passed for r in lab_runs(runs)))
    before = len(lab_runs(bot.watcher.history))
    bot.lab.set_fault(host, "health", "down")

    runs = await bot.runs_until(lambda rs: any(r.action == "raise" for r in lab_runs(rs)))
    failing = [r for r in lab_runs(runs)[before:] if not r.passed]
    # The decision of each failing run: nothing after the 1st, the alert after the 2nd.
    assert [(r.consecutive_failures, r.action) for r in failing] == [(1, "nothing"), (2, "raise")]
    assert failing[0].why == "below-threshold"
    await chat.settle()
    [card] = bot.alert_cards()
    texts = card_texts(card)
    assert texts[0] == "🔴 Lab: Health failing (1 of 3 checks)"
    assert any(t.startswith("Failing since: ") for t in texts)
    health = next(row for row in table_rows(card) if row[0] == "Health")
    assert health[1].startswith("-1 (") and health[4] == "FAIL" and health[3].isdigit()
    assert [a["title"] for a in card["actions"]] == ["Start rollback", "Silence 1 h"]
    alert_post = next(c for c in chat.replies if c.body.get("attachments") and "alert" in c.text)
    assert alert_post.conversation_id == PERSONAL_CONVERSATION

    await bot.opsgenie.wait_for(lambda calls: len(calls) >= 1)
    [create] = bot.opsgenie.creates()
    alert = await chat.store.open_alert_for("Lab")
    assert alert is not None and alert.id in alert_post.text
    assert create.body["alias"] == f"mcms-Lab-{alert.id}"
    assert create.authorization == f"GenieKey {OPSGENIE_KEY}"
    assert create.body["priority"] == "P4"
    assert set(create.body["tags"]) == {"mcms", "playbook", "Lab"}
    assert create.body["details"]["Health"].startswith("Health -1")
    assert "Health" in create.body["message"]

    # Restart while still failing: the incident continues, nothing is raised again.
    chat = await bot.restart()
    later = await bot.runs_until(lambda rs: len(lab_runs(rs)) >= 2)
    assert [(r.passed, r.action, r.why) for r in lab_runs(later)[:2]] == [
        (False, "nothing", "reminder-not-due"),
        (False, "nothing", "reminder-not-due"),
    ]
    assert lab_runs(later)[0].consecutive_failures >= 3
    await chat.settle()
    assert len(bot.alert_cards()) == 1
    assert len(bot.opsgenie.creates()) == 1

    bot.clock.advance(minutes=7)
    bot.lab.clear_faults()
    await bot.runs_until(lambda rs: any(r.action == "resolve" for r in lab_runs(rs)))
    await chat.settle()
    recovered = [c for c in chat.replies if "recovered" in c.text]
    assert len(recovered) == 1
    assert "resolved after 7 min" in recovered[0].text
    assert recovered[0].conversation_id == PERSONAL_CONVERSATION
    edits = chat.puts(alert_post.assigned_id or "")
    assert edits, "the alert card must be updated for everyone"
    final = edits[-1].body["attachments"][0]["content"]
    assert card_texts(final)[0] == "✅ Lab recovered — resolved after 7 min"
    assert not final.get("actions")
    await bot.opsgenie.wait_for(lambda calls: len(bot.opsgenie.closes()) >= 1)
    [close] = bot.opsgenie.closes()
    assert close.path == f"/v2/alerts/mcms-Lab-{alert.id}/close"
    assert close.query == {"identifierType": "alias"}

    await wait_until(lambda: len(events(chat, "AlertForwarded")) == 2)
    assert len(events(chat, "AlertRaised")) == 1 and len(events(chat, "AlertResolved")) == 1
    assert {e["status"] for e in events(chat, "AlertForwarded")} == {"delivered"}
    resolved = await chat.store.get_alert(alert.id)
    assert resolved is not None and resolved.state == "resolved"
    assert resolved.opsgenie_state == "closed"
    assert verify(Path(chat.config.paths.audit_dir), [AUDIT_KEY_BYTES]).ok


@pytest.mark.parametrize("mode", ["error", "hang"])
async def test_opsgenie_failing_or_hanging_never_delays_the_teams_alert(
    alert_bot: AlertBot, mode: str
) -> None:
    """The Teams card must not wait for any of OpsGenie's attempts or backoff."""
    bot = alert_bot
    # Either way OpsGenie takes over a second to give up: 500, wait ≥ 1 s, 500; or two
    # attempts that each time out after 1.2 s.
    opsgenie = {"attempts": 2, "backoff_s": 2.0 if mode == "error" else 0.1, "timeout_s": 1.2}
    bot.config = watch_config(bot.config, bot.opsgenie.url, opsgenie=opsgenie)
    bot.opsgenie.mode = "error" if mode == "error" else "hang"
    bot.opsgenie.hang_s = 2.0
    chat = await bot.start()
    await chat.say("subscribe Lab")

    async def card_arrival() -> datetime:
        while not bot.alert_cards():
            await asyncio.sleep(0.005)
        return datetime.now(UTC)

    arrival = asyncio.create_task(card_arrival())
    bot.lab.set_fault(bot.lab.host_for("Lab"), "health", "down")
    runs = await bot.runs_until(lambda rs: any(r.action == "raise" for r in lab_runs(rs)))
    raised = next(r for r in lab_runs(runs) if r.action == "raise")
    # From the start of the run that raised it to the card at the connector, while OpsGenie
    # needs over a second to give up.
    delay = (await asyncio.wait_for(arrival, 5) - raised.at).total_seconds()
    assert delay < 1.0, delay
    assert len(bot.alert_cards()) == 1
    assert not [e for e in events(chat, "AlertForwarded")], "OpsGenie is still being tried"

    await wait_until(lambda: bool(events(chat, "AlertForwarded")), timeout=8)
    [forwarded] = events(chat, "AlertForwarded")
    assert forwarded["status"] == "failed"
    assert forwarded["detail"]["attempts"] == 2
    assert forwarded["detail"]["reason"].startswith("gave up after 2 attempts")
    assert len(bot.opsgenie.creates()) == 2
    alert = await chat.store.open_alert_for("Lab")
    assert alert is not None and alert.opsgenie_state == "created-failed"


async def test_alert_posts_ride_the_outbound_queue_through_a_429(alert_bot: AlertBot) -> None:
    bot = alert_bot
    chat = await bot.start()
    await chat.say("subscribe Lab")
    chat.connector.fail_next(1, status=429, retry_after=0.1)
    bot.lab.set_fault(bot.lab.host_for("Lab"), "health", "down")
    await bot.runs_until(lambda rs: any(r.action == "raise" for r in lab_runs(rs)))
    await chat.settle()
    throttled = [c for c in chat.connector.calls if c.status == 429]
    assert len(throttled) == 1 and throttled[0].body["attachments"], "the alert card got the 429"
    assert len(bot.alert_cards()) == 1, "retried after Retry-After, delivered once"
    stats = chat.client.server.app[QUEUE_KEY].stats
    assert (stats.throttled_total, stats.retries_total) == (1, 1)
