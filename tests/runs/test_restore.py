"""A failed or cancelled run puts the hosts back as they were — or, if asked, leaves them.

Each test reads the lab (every component's state and path) before and after, not the
bot's own words. Cancelling is a restore too, so only the run's requester or an approver
of its environment may cancel (reproduced in the issue: Megan, operator only, cancelled
during stop_pool and left the site stopped).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from adapters.audit import verify
from lab.demo import API, PORTAL, WORKER
from tests.conftest import AUDIT_KEY_BYTES, MEGAN, card_texts, lab_config, open_chat, table_rows
from tests.farm import components
from tests.runs.test_rollback_flow import audit_events, request_rollback

if TYPE_CHECKING:
    from lab.core import Lab
    from tests.conftest import Chat
    from tests.fake_connector import FakeConnector


def final_card(chat: Chat, activity_id: str | None) -> dict[str, object]:
    card: dict[str, object] = chat.puts(activity_id or "")[-1].body["attachments"][0]["content"]
    return card


async def start_and_hold(chat: Chat, op: str, **match: str) -> str:
    """Request and approve `rollback Lab`, hold it at `op`; the run's id."""
    host = chat.lab.host_for("Lab")
    chat.lab.hold(host, op, **match)
    card, request_id = await request_rollback(chat)
    await chat.click("approve", card)
    await chat.eventually(lambda: bool(chat.lab.held(host)), timeout=10)
    run = await chat.store.run_for_request(request_id)
    assert run is not None
    return run.id


async def test_an_operator_who_did_not_ask_cannot_cancel_someone_elses_run(chat: Chat) -> None:
    host = chat.lab.host_for("Lab")
    run_id = await start_and_hold(chat, "pool-control", Action="Recycle", AppPool=PORTAL)

    reply = await chat.say(f"cancel {run_id}", user=MEGAN)

    assert "Only the requester of" in reply.text and "(Alex Wilber)" in reply.text
    assert "or an approver of Lab may cancel it" in reply.text
    run = await chat.store.get_run(run_id)
    assert run is not None and run.cancel_requested_by is None
    refused = [e for e in audit_events(chat) if e["event"] == "Refused"]
    assert refused == [], "the command refused itself; nothing was flagged"
    chat.lab.release(host)
    request = await chat.wait_request(run.request_id, "succeeded", "failed", "cancelled")
    assert request.state == "succeeded"
    assert {s["state"] for s in chat.lab.state(host)["sites"].values()} == {"Started"}


async def test_the_requester_may_cancel_and_the_cancel_restores_what_was_changed(
    chat: Chat,
) -> None:
    host = chat.lab.host_for("Lab")
    before = components(chat.lab.state(host))
    chat.lab.hold(host, "pool-control", Action="Recycle", AppPool=API)
    reply = await chat.say("rollback Lab", user=MEGAN)
    request_id = reply.text.split("(")[-1].rstrip(").")
    await chat.click("approve", chat.cards[-1])
    await chat.eventually(lambda: bool(chat.lab.held(host)), timeout=10)
    run = await chat.store.run_for_request(request_id)
    assert run is not None

    answer = await chat.say(f"cancel {run.id}", user=MEGAN)
    assert "puts back whatever it changed" in answer.text
    chat.lab.release(host)
    request = await chat.wait_request(request_id, "cancelled", "failed", "succeeded")

    assert request.state == "cancelled"
    done = await chat.store.get_run(run.id)
    assert done is not None and done.restore == "restored"
    assert components(chat.lab.state(host)) == before
    card = final_card(chat, done.progress_activity_id)
    texts = " ".join(card_texts(card))
    assert f"Cancelled by {MEGAN.name} before step" in texts
    assert "Restored: every host is back as it was before the run (verified)." in texts
    assert f"{host}: MCMS.Portal Started 1.4.2" in texts and "as before the run (verified" in texts
    restore_rows = [r for r in table_rows(card) if r[1].startswith("Restore:")]
    assert [r[2] for r in restore_rows] == ["✅ passed"] * 4
    cancelled = [e for e in audit_events(chat) if e["event"] == "Cancelled"][-1]
    assert cancelled["detail"]["restore"] == "restored"
    # A cancel that put everything back raises no alert.
    assert not [e for e in audit_events(chat) if e["event"] == "AlertRaised"]
    assert verify(Path(chat.config.paths.audit_dir), [AUDIT_KEY_BYTES]).ok


async def test_an_approver_may_cancel_a_run_someone_else_asked_for(chat: Chat) -> None:
    host = chat.lab.host_for("Lab")
    chat.lab.hold(host, "preflight")
    reply = await chat.say("rollback Lab", user=MEGAN)
    request_id = reply.text.split("(")[-1].rstrip(").")
    await chat.click("approve", chat.cards[-1])
    await chat.eventually(lambda: bool(chat.lab.held(host)), timeout=10)
    run = await chat.store.run_for_request(request_id)
    assert run is not None
    answer = await chat.say(f"cancel {run.id}")  # Alex: an approver of Lab
    assert "Cancel requested" in answer.text
    chat.lab.release(host)
    assert (await chat.wait_request(request_id, "cancelled", "succeeded")).state == "cancelled"


async def test_a_stopped_component_is_stopped_again_after_the_restore(chat: Chat) -> None:
    """The Worker was stopped before the run; the run starts it, then fails its smoke: the
    restore stops it again — "stopped things stopped" — and switches it back."""
    host = chat.lab.host_for("Lab")
    chat.lab.apply(host, "service-control", {"Service": WORKER, "Action": "Stop"})
    before = components(chat.lab.state(host))
    chat.lab.set_fault(host, "health", "error", version="1.4.1")
    card, request_id = await request_rollback(chat)
    await chat.click("approve", card)

    request = await chat.wait_request(request_id, "failed", "succeeded", timeout=30)

    assert request.state == "failed"
    run = await chat.store.run_for_request(request_id)
    assert run is not None and run.restore == "restored"
    after = chat.lab.state(host)
    assert components(after) == before
    assert after["services"][WORKER]["state"] == "Stopped"
    assert after["services"][WORKER]["release"] == "1.4.2"
    steps = {e["step"]: e["detail"] for e in audit_events(chat) if e["event"] == "StepSucceeded"}
    assert f"service {WORKER} stopped" in steps["restore_states"]
    # The history calls current what runs: the run's target is taken back out.
    current = await chat.store.current_deployment("Lab")
    assert current is None or current.version != "1.4.1"
    raised = [e for e in audit_events(chat) if e["event"] == "AlertRaised"][-1]
    assert raised["detail"]["priority"] == "P2" and raised["detail"]["outcome"] == "restored"


async def test_on_failure_stop_leaves_the_hosts_as_the_failing_step_left_them(
    lab: Lab, fake_connector: FakeConnector, tmp_path: Path, lab_credentials: None
) -> None:
    config = lab_config(lab, tmp_path)
    env = config.environments["Lab"].model_copy(update={"on_failure": "stop"})
    config = config.model_copy(update={"environments": {**config.environments, "Lab": env}})
    host = lab.host_for("Lab")
    lab.set_fault(host, "site", "stuck", name=API, action="Start", times=1)
    async with open_chat(lab, fake_connector, config) as chat:
        card, request_id = await request_rollback(chat)
        assert any('on_failure = "stop"' in t for t in card_texts(card))
        await chat.click("approve", card)
        await chat.wait_request(request_id, "failed", "succeeded")
        run = await chat.store.run_for_request(request_id)
        assert run is not None and run.restore == "not-restored"
        state = lab.state(host)
        # Left where the run stopped: switched to the target, the API site still starting.
        assert {s["release"] for s in state["sites"].values()} == {"1.4.1"}
        assert state["sites"][API]["state"] == "Starting"
        texts = " ".join(card_texts(final_card(chat, run.progress_activity_id)))
        assert 'Not restored (on_failure = "stop")' in texts
        assert "NOT as before the run" in texts
        assert not [r for r in table_rows(final_card(chat, run.progress_activity_id))
                    if r[1].startswith("Restore:")]  # fmt: skip
        raised = [e for e in audit_events(chat) if e["event"] == "AlertRaised"][-1]
        assert raised["detail"]["priority"] == "P1"


async def test_a_restore_that_cannot_finish_says_what_is_left_where_and_alerts(
    chat: Chat,
) -> None:
    """The new release fails its smoke, and the host refuses every switch back: the card
    says, component by component, what each host is left running; the alert is P1."""
    host = chat.lab.host_for("Lab")
    chat.lab.set_fault(host, "health", "error", version="1.4.1")
    chat.lab.set_fault(host, "op", "fail", name="switch-release", match={"ReleasesRoot": ""})
    card, request_id = await request_rollback(chat)
    await chat.click("approve", card)
    await chat.wait_request(request_id, "failed", "succeeded", timeout=30)
    run = await chat.store.run_for_request(request_id)
    assert run is not None and run.restore == "restore-failed"
    state = chat.lab.state(host)
    assert state["sites"][PORTAL]["release"] == "1.4.1", "the switch back never happened"
    texts = " ".join(card_texts(final_card(chat, run.progress_activity_id)))
    assert "RESTORE FAILED" in texts
    assert (
        f"{host}: MCMS.Portal Started 1.4.1, MCMS.Api Started 1.4.1, MCMS.Worker Running 1.4.1 "
        "— NOT as before the run: site MCMS.Portal points at "
        "D:\\MCMS\\releases\\1.4.1\\Portal, was D:\\MCMS\\releases\\1.4.2\\Portal"
    ) in texts
    rows = {r[1]: r[2] for r in table_rows(final_card(chat, run.progress_activity_id))}
    assert rows["Restore: switch every component back to its pre-run path"] == "❌ failed"
    assert rows["Restore: read every host back and compare with the pre-run state"] == "❌ failed"
    raised = [e for e in audit_events(chat) if e["event"] == "AlertRaised"][-1]
    assert raised["detail"]["priority"] == "P1" and raised["run_id"] == run.id
    assert any("NOT as before the run" in line for line in raised["detail"]["hosts"])
