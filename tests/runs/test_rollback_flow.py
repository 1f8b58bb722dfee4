"""`/rollback Lab` → approval card → Approve → progress edits → summary, against the lab.

Through the real CloudAdapter and a fake connector; the lab's state, the audit chain and
the deployment history are checked afterwards.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from adapters.audit import verify
from tests.conftest import AUDIT_KEY_BYTES, card_texts, table_rows

if TYPE_CHECKING:
    from tests.conftest import Chat


def audit_events(chat: Chat) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for path in sorted(Path(chat.config.paths.audit_dir).glob("*.jsonl")):
        lines += [json.loads(line) for line in path.read_text().splitlines()]
    return lines


def run_events(chat: Chat, request_id: str) -> list[tuple[str, str | None]]:
    return [
        (e["event"], e.get("step")) for e in audit_events(chat) if e.get("request_id") == request_id
    ]


async def request_rollback(chat: Chat, text: str = "/rollback Lab") -> tuple[dict[str, Any], str]:
    reply = await chat.say(text)
    assert reply.body.get("attachments"), reply.body.get("text")
    card = chat.cards[-1]
    request_id = reply.text.split("(")[-1].rstrip(").")
    return card, request_id


async def test_rollback_lab_end_to_end(chat: Chat) -> None:
    host = chat.lab.host_for("Lab")
    card, request_id = await request_rollback(chat)
    texts = card_texts(card)
    assert texts[0] == "Rollback Lab to 1.4.1?"
    assert "Version: 1.4.2 → 1.4.1" in texts
    assert "Chosen from: newest release kept on the host" in texts
    assert any(t.startswith("Package: MCMS_Setup_1.4.1.zip (SHA-256 ") for t in texts)
    assert f"Hosts: {host}" in texts
    assert any(t.startswith("Expires: ") and "KST" in t for t in texts)
    assert [a["title"] for a in card["actions"]] == ["Approve", "Reject"]
    assert chat.lab.state(host)["sites"]["MCMS"]["physical_path"].endswith("\\1.4.2")

    answer = await chat.click("approve", card)
    assert answer["statusCode"] == 200
    assert "Approved by Alex Wilber" in " ".join(card_texts(answer["value"]))
    assert not answer["value"].get("actions")
    request = await chat.wait_request(request_id, "succeeded", "failed")
    assert request.state == "succeeded", request

    # The lab really runs the previous release, and it answers.
    state = chat.lab.state(host)
    assert state["sites"]["MCMS"]["physical_path"].endswith("\\1.4.1")
    assert state["sites"]["MCMS"]["state"] == "Started"
    # Lab's pool_action is "recycle" (playbook §6 step 2).
    assert state["app_pools"]["MCMS"] == {"state": "Started", "recycles": 1}
    assert state["services"]["MCMS.Worker"] == "Running"
    health = httpx.get(chat.lab.http_base(host) + "/health", timeout=5)
    assert health.status_code == 200 and health.json()["version"] == "1.4.1"

    # The approval card was replaced for everyone, the progress card advanced in place.
    card_id = chat.card_message_id(card)
    assert chat.puts(card_id), "the approval card must be edited for everyone"
    assert "run state" in " ".join(
        card_texts(chat.puts(card_id)[-1].body["attachments"][0]["content"])
    )
    progress = next(c for c in chat.replies if "started" in c.text)
    assert progress.assigned_id is not None
    edits = chat.puts(progress.assigned_id)
    assert len(edits) >= 2
    final = edits[-1].body["attachments"][0]["content"]
    assert "succeeded" in card_texts(final)[0]
    assert all(row[2] == "✅ passed" for row in table_rows(final)[1:])
    summary = chat.replies[-1].text
    assert summary.startswith("✅ Rollback of Lab to 1.4.1 succeeded")

    # Every event, in order, and the chain holds.
    events = run_events(chat, request_id)
    names = [e for e, _ in events]
    assert names[:3] == ["Requested", "Approved", "Started"]
    steps = [s for e, s in events if e == "StepSucceeded"]
    assert steps == [
        "precheck",
        "notify_start",
        "stop_site",
        "stop_pool",
        "stop_worker",
        "deploy_package",
        "switch_site",
        "start_pool",
        "start_site",
        "start_worker",
        "smoke",
        "notify_end",
        "timeline",
    ]
    assert names.index("RolledBack") < names.index("Deployed")
    assert names.count("StepStarted") == 13 and "StepFailed" not in names
    assert verify(Path(chat.config.paths.audit_dir), [AUDIT_KEY_BYTES]).ok

    # The history knows what is current now, and that its smoke passed.
    current = await chat.store.current_deployment("Lab")
    assert current is not None and (current.version, current.stable) == ("1.4.1", True)
    timeline = next(Path(chat.config.paths.timeline_dir).glob("Timeline_*.md")).read_text()
    assert "deployed, smoke passed" in timeline

    # A second rollback goes further back: the history now drives the choice.
    card2, _ = await request_rollback(chat)
    assert card_texts(card2)[0] == "Rollback Lab to 1.4.0?"


async def test_deploy_forward_expands_the_package_and_uses_its_own_events(chat: Chat) -> None:
    host = chat.lab.host_for("Lab")
    reply = await chat.say("deploy Lab 1.4.3")
    card = chat.cards[-1]
    assert card_texts(card)[0] == "Deploy Lab to 1.4.3?"
    assert "Chosen from: requested" in card_texts(card)
    request_id = reply.text.split("(")[-1].rstrip(").")
    await chat.click("approve", card)
    request = await chat.wait_request(request_id, "succeeded", "failed")
    assert request.state == "succeeded"
    state = chat.lab.state(host)
    assert state["sites"]["MCMS"]["physical_path"].endswith("\\1.4.3")
    assert "1.4.3" in state["releases"]
    names = [e for e, _ in run_events(chat, request_id)]
    # Playbook BG-3: a forward deploy announces Approved, and ends with Deployed.
    assert names.count("Approved") == 2 and "RolledBack" not in names
    assert names.index("Started") < names.index("Deployed")
    steps = {e.get("step"): e for e in audit_events(chat) if e["event"] == "StepSucceeded"}
    assert "expanded (SHA-256 verified on the host)" in steps["deploy_package"]["detail"]
    current = await chat.store.current_deployment("Lab")
    assert current is not None and (current.version, current.stable) == ("1.4.3", True)
