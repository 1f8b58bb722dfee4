"""`/rollback Lab` → approval card → Approve → progress edits → summary, against the lab.

Through the real CloudAdapter and a fake connector; the lab's state (every component of
the release: the Portal and API sites, the Worker's ImagePath), the audit chain and the
deployment history are checked afterwards.
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


# The demo environment's plan, step by step (Portal + API sites, Worker service).
LAB_STEPS = [
    "preflight",
    "precheck",
    "notify_start",
    "stop_site:MCMS.Portal",
    "stop_site:MCMS.Api",
    "recycle_pool:MCMS.Portal",
    "recycle_pool:MCMS.Api",
    "stop_service:MCMS.Worker",
    "deploy_package",
    "switch",
    "start_pool:MCMS.Portal",
    "start_site:MCMS.Portal",
    "start_pool:MCMS.Api",
    "start_site:MCMS.Api",
    "start_service:MCMS.Worker",
    "smoke",
    "notify_end",
    "timeline",
]


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
    assert f"Hosts: {host} ✅ reachable" in texts
    assert "Components: 2 site(s), 1 service(s): below" in texts
    assert texts[texts.index("**Switches**") + 1] == "\n".join(
        [
            "- site MCMS.Portal (pool MCMS.Portal) → D:\\MCMS\\releases\\1.4.1\\Portal",
            "- site MCMS.Api (pool MCMS.Api) → D:\\MCMS\\releases\\1.4.1\\Api",
            "- service MCMS.Worker → "
            '"D:\\MCMS\\releases\\1.4.1\\Worker\\MCMS.Worker.exe" --service',
        ]
    )
    assert any(t.startswith("Expires: ") and "KST" in t for t in texts)
    plan_text = texts[texts.index("**Plan**") + 1]
    assert plan_text.startswith("1. Preflight on every host, read-only")
    assert any(
        t.startswith("**If it fails** — ") and "R1. switch every component back" in t for t in texts
    )
    assert [a["title"] for a in card["actions"]] == ["Approve", "Reject", "Break glass"]
    before = chat.lab.state(host)
    assert before["sites"]["MCMS.Portal"]["physical_path"].endswith("\\1.4.2\\Portal")

    answer = await chat.click("approve", card)
    assert answer["statusCode"] == 200
    assert "Approved by Alex Wilber" in " ".join(card_texts(answer["value"]))
    assert not answer["value"].get("actions")
    request = await chat.wait_request(request_id, "succeeded", "failed")
    assert request.state == "succeeded", request

    # The lab really runs the previous release — every component of it — and it answers.
    state = chat.lab.state(host)
    for site, folder in (("MCMS.Portal", "Portal"), ("MCMS.Api", "Api")):
        assert state["sites"][site]["physical_path"] == f"D:\\MCMS\\releases\\1.4.1\\{folder}"
        assert state["sites"][site]["state"] == "Started"
        # Lab's pool_action is "recycle" (playbook §6 step 2).
        assert state["app_pools"][site] == {"state": "Started", "recycles": 1}
    worker = state["services"]["MCMS.Worker"]
    assert worker["state"] == "Running" and worker["release"] == "1.4.1"
    assert worker["image_path"] == '"D:\\MCMS\\releases\\1.4.1\\Worker\\MCMS.Worker.exe" --service'
    health = httpx.get(chat.lab.check_base(host, "health") + "/health", timeout=5)
    assert health.status_code == 200 and health.json()["version"] == "1.4.1"
    swagger = httpx.get(chat.lab.check_base(host, "swagger") + "/swagger/index.html", timeout=5)
    assert swagger.status_code == 200 and "MCMS API 1.4.1" in swagger.text

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
    assert [row[2] for row in table_rows(final)[1:]] == ["✅ passed"] * len(LAB_STEPS)
    summary = chat.replies[-1].text
    assert summary.startswith("✅ Rollback of Lab to 1.4.1 succeeded")

    # Every event, in order, and the chain holds.
    events = run_events(chat, request_id)
    names = [e for e, _ in events]
    assert names[:3] == ["Requested", "Approved", "Started"]
    steps = [s for e, s in events if e == "StepSucceeded"]
    assert steps == LAB_STEPS
    assert names.index("RolledBack") < names.index("Deployed")
    assert names.count("StepStarted") == len(LAB_STEPS) and "StepFailed" not in names
    assert verify(Path(chat.config.paths.audit_dir), [AUDIT_KEY_BYTES]).ok

    # The history knows what is current now, and that its smoke passed.
    current = await chat.store.current_deployment("Lab")
    assert current is not None and (current.version, current.stable) == ("1.4.1", True)
    timeline = next(Path(chat.config.paths.timeline_dir).glob("Timeline_*.md")).read_text()
    assert "deployed, smoke passed" in timeline

    # The per-host history says what was switched on this host.
    switches = await chat.store.host_switches("Lab", host)
    assert sorted((s.component, s.reason) for s in switches) == [
        ("MCMS.Api", "switch"),
        ("MCMS.Portal", "switch"),
        ("MCMS.Worker", "switch"),
    ]
    assert all(s.before.find("1.4.2") >= 0 and s.after.find("1.4.1") >= 0 for s in switches)

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
    assert {s["release"] for s in state["sites"].values()} == {"1.4.3"}
    assert state["services"]["MCMS.Worker"]["release"] == "1.4.3"
    assert "1.4.3" in state["releases"]
    names = [e for e, _ in run_events(chat, request_id)]
    # Playbook BG-3: a forward deploy announces Approved, and ends with Deployed.
    assert names.count("Approved") == 2 and "RolledBack" not in names
    assert names.index("Started") < names.index("Deployed")
    steps = {e.get("step"): e for e in audit_events(chat) if e["event"] == "StepSucceeded"}
    assert "expanded (SHA-256 verified on the host)" in steps["deploy_package"]["detail"]
    current = await chat.store.current_deployment("Lab")
    assert current is not None and (current.version, current.stable) == ("1.4.3", True)
