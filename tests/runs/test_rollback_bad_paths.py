"""Every way an approval or a run can go wrong: one decision, at most one run, clear words.

Each test proves both halves: the operator is told what happened, and nothing ran that
should not have (no run row, no WinRM mutation, no second run).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adapters.audit import verify
from tests.conftest import ADELE, AUDIT_KEY_BYTES, MEGAN, card_texts, table_rows
from tests.runs.test_rollback_flow import LAB_STEPS, audit_events, request_rollback, run_events
from tests.teams_factory import make_invoke

if TYPE_CHECKING:
    from tests.conftest import Chat

MUTATING_OPS = {
    "site-control",
    "pool-control",
    "service-control",
    "deploy-release",
    "switch-release",
}


def mutations(chat: Chat) -> list[str]:
    host = chat.lab.host_for("Lab")
    return [c.op for c in chat.lab.calls(host) if c.op in MUTATING_OPS]


async def runs_of(chat: Chat, request_id: str) -> int:
    return 1 if await chat.store.run_for_request(request_id) else 0


async def test_reject_replaces_the_card_and_runs_nothing(chat: Chat) -> None:
    card, request_id = await request_rollback(chat)
    answer = await chat.click(
        "reject", card, data={**card["actions"][1]["data"], "reason": "wrong window"}
    )
    assert answer["statusCode"] == 200
    assert "Rejected by Alex Wilber" in " ".join(card_texts(answer["value"]))
    request = await chat.wait_request(request_id, "rejected")
    assert request.reason == "wrong window"
    assert chat.puts(chat.card_message_id(card)), "everyone's card must say Rejected"
    assert await runs_of(chat, request_id) == 0 and mutations(chat) == []
    assert [e for e, _ in run_events(chat, request_id)] == ["Requested", "Rejected"]


async def test_expired_request_card_turns_expired_and_late_click_is_refused(chat: Chat) -> None:
    card, request_id = await request_rollback(chat)
    chat.clock.advance(minutes=16)  # the demo's TTL is 15 min
    request = await chat.wait_request(request_id, "expired", timeout=5)
    # The sweeper edits the card after recording the expiry: wait for that edit.
    await chat.eventually(lambda: chat.puts(chat.card_message_id(card)))
    edits = chat.puts(chat.card_message_id(card))
    assert edits and "Expired at" in " ".join(
        card_texts(edits[-1].body["attachments"][0]["content"])
    )
    answer = await chat.click("approve", card)
    assert answer["statusCode"] == 400
    assert answer["type"] == "application/vnd.microsoft.error"
    assert (
        "not pending" in answer["value"]["message"]
        or "expired" in answer["value"]["message"].lower()
    )
    assert request.state == "expired"
    assert await runs_of(chat, request_id) == 0 and mutations(chat) == []
    assert "Expired" in [e for e, _ in run_events(chat, request_id)]


async def test_fifty_concurrent_approvals_start_exactly_one_run(chat: Chat) -> None:
    card, request_id = await request_rollback(chat)
    answers = await asyncio.gather(*(chat.click("approve", card) for _ in range(50)))
    assert all(a["statusCode"] == 200 for a in answers)
    assert set(chat.http_statuses) <= {200, 201}
    await chat.wait_request(request_id, "succeeded", "failed")
    events = [e for e, _ in run_events(chat, request_id)]
    assert events.count("Approved") == 1 and events.count("Started") == 1
    assert events.count("DecisionIgnored") == 49, "every losing click is audited too"
    assert await runs_of(chat, request_id) == 1
    assert mutations(chat).count("switch-release") == 1


async def test_a_replayed_invoke_starts_no_second_run(chat: Chat) -> None:
    card, request_id = await request_rollback(chat)
    action = card["actions"][0]
    invoke = make_invoke(
        "approve",
        action["data"],
        reply_to_id=chat.card_message_id(card),
        service_url=chat.connector.url,
    )
    first = await chat.client.post("/api/messages", json=invoke)
    await chat.wait_request(request_id, "succeeded", "failed")
    again = await chat.client.post("/api/messages", json=invoke)  # Teams' retry: same id
    assert (first.status, again.status) == (200, 200)
    replay = await again.json()
    assert replay["statusCode"] == 200 and not replay["value"].get("actions")
    await asyncio.sleep(0.3)
    assert [e for e, _ in run_events(chat, request_id)].count("Started") == 1
    assert mutations(chat).count("switch-release") == 1


async def test_tampered_card_data_is_refused_and_audited(chat: Chat) -> None:
    card, request_id = await request_rollback(chat)
    good = card["actions"][0]["data"]
    tampered = [
        {**good, "request_id": "R-00000000"},
        {**good, "request_id": "R-1; DROP TABLE requests"},
        {**good, "environment": "InternalProd"},
        {**good, "version": "1.3.8"},
        {**good, "plan_hash": "0" * 64},
        {"verb": "approve"},
    ]
    for data in tampered:
        answer = await chat.click("approve", card, data=data)
        assert answer["statusCode"] in (400, 404), answer
        assert answer["type"] == "application/vnd.microsoft.error"
        assert "Nothing was run" in answer["value"]["message"]
    refused = [e for e in audit_events(chat) if e["event"] == "DecisionRefused"]
    assert len(refused) == len(tampered)
    assert (await chat.store.get_request(request_id)).state == "pending"  # type: ignore[union-attr]
    assert mutations(chat) == [] and await runs_of(chat, request_id) == 0


async def test_non_approver_cannot_approve(chat: Chat) -> None:
    card, request_id = await request_rollback(chat)
    answer = await chat.click("approve", card, user=MEGAN)
    assert answer["statusCode"] == 400 and answer["value"]["code"] == "Forbidden"
    assert "approver" in answer["value"]["message"]
    assert (await chat.store.get_request(request_id)).state == "pending"  # type: ignore[union-attr]
    assert mutations(chat) == []


async def test_self_approval_where_forbidden_is_refused_even_with_a_reason(chat: Chat) -> None:
    """A typed reason no longer turns Approve into an override (that is Break glass now)."""
    reply = await chat.say("rollback InternalProd")
    card = chat.cards[-1]
    request_id = reply.text.split("(")[-1].rstrip(").")
    data = {**card["actions"][0]["data"], "reason": "P1 outage, second approver unreachable"}
    for sent in (None, data):
        answer = await chat.click("approve", card, data=sent)
        assert answer["value"]["code"] == "SelfApproval"
    assert (await chat.store.get_request(request_id)).state == "pending"  # type: ignore[union-attr]
    assert await runs_of(chat, request_id) == 0


async def test_another_approver_may_approve_where_self_approval_is_forbidden(chat: Chat) -> None:
    reply = await chat.say("rollback InternalProd", user=MEGAN)
    request_id = reply.text.split("(")[-1].rstrip(").")
    answer = await chat.click("approve", chat.cards[-1], user=ADELE)
    assert answer["statusCode"] == 200
    request = await chat.wait_request(request_id, "succeeded", "failed")
    assert request.decided_by_name == "Adele Vance" and request.state == "succeeded"


async def test_plan_changed_after_approval_voids_it(chat: Chat) -> None:
    card, request_id = await request_rollback(chat)
    # The package of the target is rebuilt: same version, new bytes, new digest.
    package = chat.lab.package_path("1.4.1")
    package.write_bytes(package.read_bytes() + b"rebuilt")
    digest = hashlib.sha256(package.read_bytes()).hexdigest()
    package.with_name(package.name + ".sha256").write_text(f"{digest}  {package.name}\n")
    answer = await chat.click("approve", card)
    assert answer["statusCode"] == 200
    request = await chat.wait_request(request_id, "void")
    assert "sha256" in (request.reason or "")
    final = chat.puts(chat.card_message_id(card))[-1].body["attachments"][0]["content"]
    assert "Void: the plan changed" in " ".join(card_texts(final))
    assert mutations(chat) == [] and await runs_of(chat, request_id) == 0
    assert any("is void" in c.text for c in chat.replies)


async def test_busy_environment_is_refused_naming_the_run(chat: Chat) -> None:
    lock = await chat.store.try_lock("Lab", "run-0badc0de", "Megan Bowen")
    assert lock.acquired
    reply = await chat.say("rollback Lab")
    text = reply.text
    assert "Lab is busy: run `run-0badc0de` requested by Megan Bowen" in text
    assert "Nothing was requested" in text and not reply.body.get("attachments")
    assert mutations(chat) == []


async def test_unknown_or_unhashed_version_is_refused_before_any_request(chat: Chat) -> None:
    reply = await chat.say("rollback Lab 9.9.9")
    assert "no package for 9.9.9" in reply.text
    reply = await chat.say("rollback Lab 1.4.$(whoami)")
    assert "is not a version" in reply.text
    package = chat.lab.package_path("1.4.0")
    package.write_bytes(package.read_bytes() + b"x")
    reply = await chat.say("rollback Lab 1.4.0")
    assert "does not match its digest" in reply.text
    reply = await chat.say("deploy Lab")
    assert "needs a version" in reply.text
    assert not any(e["event"] == "Requested" for e in audit_events(chat))
    assert mutations(chat) == []


async def test_a_step_that_keeps_failing_fails_the_run_and_a_failed_restore_says_where(
    chat: Chat,
) -> None:
    """The Worker will not move at all (stuck for good): the stop fails, the restore puts
    the sites back, cannot start the Worker, and says exactly that — read from the lab."""
    host = chat.lab.host_for("Lab")
    chat.lab.set_fault(host, "service", "stuck")
    card, request_id = await request_rollback(chat)
    await chat.click("approve", card)
    request = await chat.wait_request(request_id, "failed", "succeeded")
    assert request.state == "failed"
    run = await chat.store.run_for_request(request_id)
    assert run is not None and (run.state, run.restore) == ("failed", "restore-failed")
    progress = chat.puts(run.progress_activity_id or "")[-1].body["attachments"][0]["content"]
    texts = " ".join(card_texts(progress))
    assert "FAILED" in card_texts(progress)[0]
    assert "Failed at step 8 'Stop service MCMS.Worker'" in texts
    assert "RESTORE FAILED" in texts
    assert (
        f"{host}: " in texts
        and "NOT as before the run: service MCMS.Worker is StartPending, was Running" in texts
    )
    tables = [r for r in table_rows(progress) if r[0] != "#"]
    states = [row[2] for row in tables]
    assert states[:7] == ["✅ passed"] * 7 and states[7] == "❌ failed"
    assert set(states[8:18]) == {"⏭️ skipped"}
    assert states[18:] == ["✅ passed", "❌ failed", "❌ failed", "✅ passed"]
    lab = chat.lab.state(host)
    assert {s["state"] for s in lab["sites"].values()} == {"Started"}
    assert lab["services"]["MCMS.Worker"]["state"] == "StartPending"
    # The release was never switched (the restore's switch-back wrote nothing either).
    assert {s["release"] for s in lab["sites"].values()} == {"1.4.2"}
    assert await chat.store.host_switches("Lab") == []
    assert await chat.store.lock_holder("Lab") is None
    events = [e for e, _ in run_events(chat, request_id)]
    assert "StepFailed" in events and events[-2:] == ["Failed", "AlertRaised"]
    failed = [e for e in audit_events(chat) if e["event"] == "Failed"][-1]
    assert failed["detail"]["restore"] == "restore-failed"
    raised = [e for e in audit_events(chat) if e["event"] == "AlertRaised"][-1]
    assert raised["detail"]["priority"] == "P1" and raised["run_id"] == run.id
    assert any(
        c.text.startswith("❌ Rollback of Lab to 1.4.1 failed") and "RESTORE FAILED" in c.text
        for c in chat.replies
    )


async def test_cancel_stops_at_the_next_step_boundary(chat: Chat) -> None:
    host = chat.lab.host_for("Lab")
    chat.lab.hold(host, "preflight")  # keeps the first step busy until the cancel is in
    card, request_id = await request_rollback(chat)
    await chat.click("approve", card)
    await chat.eventually(lambda: bool(chat.lab.held(host)))
    run = await chat.store.run_for_request(request_id)
    assert run is not None
    reply = await chat.say(f"cancel {run.id}")
    assert "stops after *preflight* finishes" in reply.text
    assert "puts back whatever it changed" in reply.text
    chat.lab.release(host)
    request = await chat.wait_request(request_id, "cancelled", "succeeded", "failed")
    assert request.state == "cancelled"
    finished = await chat.store.get_run(run.id)
    assert finished is not None and finished.restore == "unchanged"
    assert mutations(chat) == []  # stopped before the first step that touches the host
    assert await chat.store.lock_holder("Lab") is None
    again = await chat.say(f"cancel {run.id}")
    assert "is not running" in again.text
    missing = await chat.say("cancel run-ffffffff")
    assert "There is no run" in missing.text


async def test_throttled_connector_still_gets_every_edit_in_order_none_twice(
    chat: Chat,
) -> None:
    card, request_id = await request_rollback(chat)
    chat.connector.fail_next(2, status=429, retry_after=0.3)
    chat.connector.fail_next(2, status=503)
    await chat.click("approve", card)
    await chat.wait_request(request_id, "succeeded", "failed")
    failed = [c for c in chat.connector.calls if c.status >= 400]
    assert [c.status for c in failed] == [429, 429, 503, 503]
    run = await chat.store.run_for_request(request_id)
    assert run is not None
    edits = chat.puts(run.progress_activity_id or "")
    passed_counts = [
        sum(r[2] == "✅ passed" for r in table_rows(e.body["attachments"][0]["content"])[1:])
        for e in edits
    ]
    assert passed_counts == sorted(passed_counts), "edits must arrive in order"
    assert passed_counts[-1] == len(LAB_STEPS)
    bodies = [json.dumps(e.body["attachments"][0]["content"], sort_keys=True) for e in edits]
    assert len(bodies) == len(set(bodies)), "no edit delivered twice"
    posts = [c.text for c in chat.replies]
    assert len(posts) == len(set(posts)), "no message posted twice"
    assert posts[-1].startswith("✅ Rollback of Lab")


async def test_audit_chain_stays_valid_through_every_bad_path(chat: Chat) -> None:
    card, _ = await request_rollback(chat)
    await chat.click("approve", card, user=MEGAN)
    await chat.click("approve", card, data={"verb": "approve"})
    await chat.click("reject", card)
    assert verify(Path(chat.config.paths.audit_dir), [AUDIT_KEY_BYTES]).ok


def _ids(data: dict[str, Any]) -> str:
    return data.get("request_id", "")
