"""Alerts know about runs: the watcher pauses while one is in progress, a run that ends badly
raises its own alert (P1 hosts left changed, P2 put back), and OpsGenie gets every create
in the end — or the audit says the alert resolved first.

Reproduced in the issue: a planned rollback longer than interval × threshold paged
OpsGenie P1 and offered "Start rollback" in the middle of the rollback.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING

from bot.watch.notices import DEFAULT_EVERY_S as NOTICE_EVERY_S
from lab.demo import API, PORTAL
from tests.alert_helpers import lab_runs, watch_config
from tests.conftest import card_texts
from tests.runs.test_rollback_flow import request_rollback
from tests.watch.test_watcher_alerts import events, wait_until

if TYPE_CHECKING:
    from tests.alert_helpers import AlertBot
    from tests.conftest import Chat

pytest_plugins = ["tests.alert_fixtures"]


async def test_the_watcher_measures_but_does_not_raise_while_a_run_is_in_progress(
    alert_bot: AlertBot,
) -> None:
    bot = alert_bot
    chat = await bot.start()
    await chat.say("subscribe Lab")
    host = bot.lab.host_for("Lab")
    # Held with both sites stopped: Health and Swagger are refused for as long as we like.
    bot.lab.hold(host, "pool-control", Action="Recycle", AppPool=API)
    card, request_id = await request_rollback(chat)
    await chat.click("approve", card)
    await wait_until(lambda: bool(bot.lab.held(host)), timeout=10)
    run = await chat.store.run_for_request(request_id)
    assert run is not None

    seen = len(bot.watcher.history)
    runs = await bot.runs_until(lambda rs: len(lab_runs(rs[seen:])) >= 4)
    during = lab_runs(runs[seen:])
    assert all(not r.passed for r in during), "it keeps measuring: the checks fail"
    assert {(r.action, r.why, r.consecutive_failures) for r in during} == {
        ("nothing", "run-in-progress", 0)
    }
    assert bot.alert_cards() == [] and events(chat, "AlertRaised") == []
    await chat.say("status Lab")
    assert f"Watch: watch paused: run {run.id} in progress" in card_texts(chat.cards[-1])
    progress = chat.puts(run.progress_activity_id or "")
    assert f"watch paused: run {run.id} in progress" in " ".join(
        card_texts(progress[-1].body["attachments"][0]["content"])
    )

    # The run ends; the Health check is broken from now on: the streak starts from zero.
    bot.lab.release(host)
    await chat.wait_request(request_id, "succeeded", "failed")
    bot.lab.set_fault(host, "health", "down")
    after = len(bot.watcher.history)
    runs = await bot.runs_until(lambda rs: any(r.action == "raise" for r in lab_runs(rs[after:])))
    failing = [r for r in lab_runs(runs[after:]) if not r.passed]
    assert [(r.consecutive_failures, r.action) for r in failing] == [(1, "nothing"), (2, "raise")]


async def test_an_open_alert_says_the_watch_is_paused_while_its_rollback_runs(
    alert_bot: AlertBot,
) -> None:
    """A broken build raises the alert; its rollback pauses the watch (the card says so)
    and, once the good release runs, the next watcher run resolves it."""
    bot = alert_bot
    chat = await bot.start()
    await chat.say("subscribe Lab")
    host = bot.lab.host_for("Lab")
    bot.lab.set_fault(host, "health", "error", version="1.4.2")
    await bot.runs_until(lambda rs: any(r.action == "raise" for r in lab_runs(rs)))
    await chat.settle()
    [alert_card] = bot.alert_cards()
    alert_id = chat.card_message_id(alert_card)

    bot.lab.hold(host, "site-control", Action="Stop", Site=PORTAL)
    card, request_id = await request_rollback(chat)
    await chat.click("approve", card)
    await wait_until(lambda: bool(bot.lab.held(host)), timeout=10)
    run = await chat.store.run_for_request(request_id)
    assert run is not None

    def paused_shown() -> bool:
        edits = chat.puts(alert_id)
        return bool(edits) and f"Watch: watch paused: run {run.id} in progress" in card_texts(
            edits[-1].body["attachments"][0]["content"]
        )

    await chat.eventually(paused_shown, timeout=10)
    bot.lab.release(host)
    assert (await chat.wait_request(request_id, "succeeded", "failed")).state == "succeeded"
    await bot.runs_until(lambda rs: any(r.action == "resolve" for r in lab_runs(rs)))
    await chat.settle()
    assert len(events(chat, "AlertRaised")) == 1, "no alert raised during the rollback"


async def test_a_failed_run_raises_a_p2_alert_with_the_run_and_the_hosts_in_teams_and_opsgenie(
    alert_bot: AlertBot,
) -> None:
    bot = alert_bot
    chat = await bot.start()
    await chat.say("subscribe Lab")
    host = bot.lab.host_for("Lab")
    bot.lab.set_fault(host, "site", "stuck", name=API, action="Stop", times=1)
    card, request_id = await request_rollback(chat)
    await chat.click("approve", card)
    await chat.wait_request(request_id, "failed")
    run = await chat.store.run_for_request(request_id)
    assert run is not None and run.restore == "restored"

    await bot.opsgenie.wait_for(lambda calls: len(bot.opsgenie.creates()) >= 1)
    [create] = bot.opsgenie.creates()
    [alert] = await chat.store.open_run_alerts("Lab")
    assert create.body["priority"] == "P2" and create.body["alias"] == f"mcms-Lab-{alert.id}"
    assert create.body["details"] == {"run": run.id, "outcome": "restored"}
    assert (
        host in create.body["description"]
        and "as before the run (verified" in create.body["description"]
    )
    await chat.settle()
    posted = [c for c in chat.replies if c.text.startswith(f"P2 Lab run {run.id}")]
    assert len(posted) == 1
    texts = card_texts(posted[0].body["attachments"][0]["content"])
    assert texts[0].startswith(f"⚠️ Rollback of Lab to 1.4.1 failed ({run.id}) — restored")
    assert any(t.startswith(f"{host}: ") for t in texts)
    # The smoke incident is another thing: the watcher's own alert is not this one.
    assert await chat.store.open_alert_for("Lab") is None

    # A later run that succeeds resolves it, in Teams and in OpsGenie.
    card, request_id = await request_rollback(chat)
    await chat.click("approve", card)
    assert (await chat.wait_request(request_id, "succeeded")).state == "succeeded"
    await bot.opsgenie.wait_for(lambda calls: len(bot.opsgenie.closes()) >= 1)
    resolved = await chat.store.get_alert(alert.id)
    assert resolved is not None and resolved.state == "resolved"


async def raised_while_opsgenie_fails(bot: AlertBot, **opsgenie: float) -> Chat:
    """The bot with OpsGenie answering 500 (one attempt per round), and Lab's alert raised."""
    bot.config = watch_config(bot.config, bot.opsgenie.url, opsgenie={"attempts": 1, **opsgenie})
    bot.opsgenie.mode = "error"
    chat = await bot.start()
    bot.lab.set_fault(bot.lab.host_for("Lab"), "health", "down")
    await bot.runs_until(lambda rs: any(r.action == "raise" for r in lab_runs(rs)))
    return chat


async def test_an_opsgenie_create_is_sent_again_until_it_is_accepted(alert_bot: AlertBot) -> None:
    bot = alert_bot
    chat = await raised_while_opsgenie_fails(bot, resend_s=0.3)
    await bot.opsgenie.wait_for(lambda calls: len(bot.opsgenie.creates()) >= 2, timeout=5)
    first = events(chat, "AlertForwarded")
    assert [(e["status"], e["detail"]["rounds"]) for e in first] == [("failed", 1)]
    assert first[0]["detail"]["next"].startswith("sent again until it is accepted")

    bot.opsgenie.mode = "ok"
    await wait_until(lambda: len(events(chat, "AlertForwarded")) == 2, timeout=5)
    accepted = events(chat, "AlertForwarded")[-1]
    assert accepted["status"] == "delivered" and accepted["detail"]["rounds"] >= 2
    alert = await chat.store.open_alert_for("Lab")
    assert alert is not None and alert.opsgenie_state == "created"


async def test_an_opsgenie_create_stops_being_resent_once_the_alert_resolves(
    alert_bot: AlertBot,
) -> None:
    bot = alert_bot
    chat = await raised_while_opsgenie_fails(bot, resend_s=0.5)
    bot.lab.clear_faults()
    await bot.runs_until(lambda rs: any(r.action == "resolve" for r in lab_runs(rs)))
    await wait_until(
        lambda: any(e["status"] == "abandoned" for e in events(chat, "AlertForwarded")), timeout=8
    )
    abandoned = next(e for e in events(chat, "AlertForwarded") if e["status"] == "abandoned")
    assert abandoned["detail"]["reason"].startswith("the alert resolved before opsgenie accepted")
    creates = len(bot.opsgenie.creates())
    await asyncio.sleep(1.5)  # three resend intervals: none may come
    assert len(bot.opsgenie.creates()) == creates


async def test_a_create_still_owed_at_shutdown_is_sent_at_the_next_start(
    alert_bot: AlertBot,
) -> None:
    bot = alert_bot
    chat = await raised_while_opsgenie_fails(bot)
    await wait_until(lambda: bool(events(chat, "AlertForwarded")), timeout=5)
    bot.opsgenie.mode = "ok"
    chat = await bot.restart()
    await wait_until(
        lambda: any(e["status"] == "delivered" for e in events(chat, "AlertForwarded")), timeout=5
    )
    alert = await chat.store.open_alert_for("Lab")
    assert alert is not None and alert.opsgenie_state == "created"


async def test_a_page_nobody_is_sending_is_adopted_by_the_running_bot_once(
    alert_bot: AlertBot,
) -> None:
    # What a break-glass CLI leaves when OpsGenie had not taken its page before it exited:
    # an open alert, its create failed, no process resending it. The bot is already up, so
    # its start-time resume has passed; the running bot must still page, once.
    bot = alert_bot
    chat = await bot.start()
    now = bot.clock()
    await chat.store.open_alert("A-cli00001", "Lab", now - timedelta(minutes=2), now, [])
    await chat.store.set_alert_opsgenie("A-cli00001", "mcms-Lab-A-cli00001", "created-failed")
    # A younger one may still be on its way to the process that raised it: left alone
    # (dated ahead, so it stays young however slowly this machine runs the test).
    young = now + timedelta(minutes=10)
    await chat.store.open_alert("A-young001", "InternalProd", young, young, [])

    await bot.opsgenie.wait_for(lambda calls: len(calls) >= 1, timeout=30)
    (create,) = bot.opsgenie.creates()
    assert create.body["alias"] == "mcms-Lab-A-cli00001"

    async def taken() -> bool:
        alert = await chat.store.get_alert("A-cli00001")
        return alert is not None and alert.opsgenie_state == "created"

    async with asyncio.timeout(10):
        while not await taken():  # the answer is recorded just after OpsGenie has it
            await asyncio.sleep(0.05)
    # Later passes neither send it again nor touch the young one.
    passes = 3
    await asyncio.sleep(passes * NOTICE_EVERY_S)
    assert [c.body["alias"] for c in bot.opsgenie.creates()] == ["mcms-Lab-A-cli00001"]
    # (Lab's checks pass, so the watcher then resolves it: a close, not a second create.)
    raised = [e for e in events(chat, "AlertForwarded") if e["detail"]["event"] == "raised"]
    assert [(e["status"], e["detail"]["alert_id"]) for e in raised] == [("delivered", "A-cli00001")]
