"""help / smoke / status through the real CloudAdapter, a fake connector and the lab.

Each test is a short conversation; refusals also prove that nothing reached WinRM.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from adapters.audit import verify
from tests.conftest import (
    ADELE,
    AUDIT_KEY_BYTES,
    FOREIGN_TENANT,
    MEGAN,
    STRANGER,
    card_texts,
    shown,
    table_rows,
)
from tests.teams_factory import CHANNEL_THREAD

if TYPE_CHECKING:
    from tests.conftest import Chat


def audit_events(chat: Chat) -> list[dict[str, object]]:
    directory = chat.config.paths.audit_dir
    lines = []
    for path in sorted(Path(directory).glob("*.jsonl")):
        lines += [json.loads(line) for line in path.read_text().splitlines()]
    return lines


async def test_help_lists_every_command_with_usage_and_who_may_run_it(chat: Chat) -> None:
    reply = await chat.say("/help")
    rows = table_rows(chat.cards[-1])
    assert rows[0] == ["Command", "What it does", "Who may run it"]
    by_usage = {r[0]: r for r in rows[1:]}
    assert set(by_usage) == {
        "help",
        "status [ENVIRONMENT]",
        "smoke ENVIRONMENT",
        "check ENVIRONMENT [smoke|axe|e2e|zap|all]",
        "rollback ENVIRONMENT [VERSION] [--exclude HOST]",
        "deploy ENVIRONMENT VERSION [--exclude HOST]",
        "bluegreen PAIR VERSION",
        "switchback PAIR",
        "cancel RUN-ID",
        "lock ENVIRONMENT REASON",
        "unlock ENVIRONMENT",
        "plan [rollback|deploy] ENV [VERSION]",
        "history ENVIRONMENT [N]",
        "run RUN-ID",
        "subscribe ENVIRONMENT",
        "unsubscribe ENVIRONMENT",
    }
    assert by_usage["smoke ENVIRONMENT"][2] == "operators"
    rollback = by_usage["rollback ENVIRONMENT [VERSION] [--exclude HOST]"]
    assert rollback[2] == "operators; an approver approves"
    assert by_usage["cancel RUN-ID"][2] == (
        "a run's requester or an approver of its environment; a DR check's operators"
    )
    assert by_usage["help"][2] == "anyone in an allowed tenant"
    assert by_usage["switchback PAIR"][2] == "approvers of the pair"
    assert by_usage["lock ENVIRONMENT REASON"][2] == "approvers of the environment"
    assert by_usage["unlock ENVIRONMENT"][2] == "approvers of the environment"
    # Teams renders a TextBlock's markdown: a `code` span in a summary loses its backticks
    # on screen (the browser e2e caught `unlock` so), so summaries are plain words.
    for usage, summary, _ in rows[1:]:
        assert not set(summary) & set("`*_[]#"), f"markdown in the summary of {usage}"
    assert reply.path.endswith("/activities/" + reply.body["replyToId"])
    assert chat.winrm_requests() == 0


async def test_smoke_lab_replies_with_a_passing_table_and_records_it(chat: Chat) -> None:
    await chat.say("smoke lab")  # environment names are case-insensitive
    card = chat.cards[-1]
    rows = table_rows(card)
    assert rows[0] == ["Check", "Status", "Expected", "Latency ms", "Result"]
    assert [(r[0], r[1], r[4]) for r in rows[1:]] == [
        ("Health", "200", "pass"),
        ("Swagger", "200", "pass"),
        ("Kerberos", "401", "pass"),
    ]
    assert "PASS — 3/3" in card_texts(card)[0]
    logs = list(Path(chat.config.paths.smoke_logs_dir).glob("smoke_*.log"))
    assert len(logs) == 1 and "RESULT PASS 3/3" in logs[0].read_text()
    smoke_lines = [e for e in audit_events(chat) if e["event"] == "Smoke"]
    assert smoke_lines and smoke_lines[-1]["environment"] == "Lab"
    assert smoke_lines[-1]["status"] == "passed"
    last = await chat.runtime.store.last_smoke("Lab")
    assert last is not None and last.passed


async def test_smoke_reports_minus_one_for_a_check_that_is_down(chat: Chat) -> None:
    host = chat.lab.host_for("Lab")
    chat.lab.set_fault(host, "health", "down")
    await chat.say("smoke Lab")
    rows = {r[0]: r for r in table_rows(chat.cards[-1])[1:]}
    assert rows["Health"][1].startswith("-1") and rows["Health"][4] == "FAIL"
    assert rows["Swagger"][4] == "pass"
    assert "FAIL — 2/3" in card_texts(chat.cards[-1])[0]


async def test_smoke_says_service_fully_stopped_when_nothing_answers(chat: Chat) -> None:
    host = chat.lab.host_for("Lab")
    for site in ("MCMS.Portal", "MCMS.Api"):
        stopped = chat.lab.apply(host, "site-control", {"Site": site, "Action": "Stop"})
        assert stopped["state"] == "Stopped", stopped
    await chat.say("smoke Lab")
    rows = table_rows(chat.cards[-1])[1:]
    assert all(r[1].startswith("-1") for r in rows)
    assert "fully stopped" in card_texts(chat.cards[-1])[0]


async def test_status_lab_reads_every_component_over_winrm(chat: Chat) -> None:
    host = chat.lab.host_for("Lab")
    await chat.say("status Lab")
    card = chat.cards[-1]
    facts = card_texts(card)
    assert "Current version: 1.4.2 (from the hosts)" in facts
    assert "Drift: none: every component on every host runs the same release" in facts
    assert any(f.startswith("Last smoke: never run") for f in facts)
    assert "Run in progress: none" in facts
    assert "Watch: every 60 s" in facts
    assert table_rows(card)[1:] == [
        [host, "site MCMS.Portal", "Started, pool Started", "1.4.2"],
        [host, "site MCMS.Api", "Started, pool Started", "1.4.2"],
        [host, "service MCMS.Worker", "Running", "1.4.2"],
    ]
    assert chat.lab.winrm_requests(host) > 0


async def test_status_says_drift_in_words_when_components_disagree(chat: Chat) -> None:
    """The issue's own example: the Worker still runs the release the sites left."""
    host = chat.lab.host_for("Lab")
    root = "D:\\MCMS\\releases"
    switched = chat.lab.apply(
        host,
        "switch-release",
        {
            "SiteNames": ["MCMS.Portal", "MCMS.Api"],
            "SitePaths": [f"{root}\\1.4.1\\Portal", f"{root}\\1.4.1\\Api"],
        },
    )
    assert switched["ok"], switched
    await chat.say("status Lab")
    facts = card_texts(chat.cards[-1])
    drift = f"MCMS.Worker on {host} runs 1.4.2; everything else runs 1.4.1"
    assert f"Drift: {drift}" in facts and f"**Drift:** {drift}" in facts
    assert "Current version: 1.4.1, 1.4.2 (from the hosts)" in facts


async def test_status_shows_the_last_smoke_and_the_deployment_history(chat: Chat) -> None:
    await chat.say("smoke Lab")
    await chat.runtime.store.record_deployment(
        "Lab", "1.4.2", "ab" * 32, chat.runtime.services.now(), stable=True
    )
    await chat.say("status Lab")
    facts = card_texts(chat.cards[-1])
    assert "Current version: 1.4.2 (deployment history, stable)" in facts
    assert any(f.startswith("Last smoke: PASS at ") and "KST" in f for f in facts)


async def test_status_without_environment_covers_every_environment(chat: Chat) -> None:
    await chat.say("status")
    # Section titles only: a pair's farm table names environments in its cells too.
    titles = [e["text"] for e in chat.cards[-1]["body"] if e.get("size") == "Medium"]
    sections = [t.split(" ")[0] for t in titles if t.split(" ")[0] in chat.config.environments]
    assert sections == ["Lab", "InternalStage", "InternalProd"]


async def test_status_names_an_unreachable_host_instead_of_failing(chat: Chat) -> None:
    host = chat.lab.host_for("Lab")
    chat.lab.set_fault(host, "winrm", "auth")
    await chat.say("status Lab")
    row = table_rows(chat.cards[-1])[1]
    assert row[1] == "unreachable"
    assert host in shown(row[3]) and "lab-password" not in shown(row[3])


async def test_channel_mention_is_answered_in_its_thread(chat: Chat) -> None:
    reply = await chat.say("status Lab", conversation_type="channel")
    assert reply.conversation_id == CHANNEL_THREAD
    assert chat.cards[-1]["body"][0]["text"].startswith("Lab")


async def test_unknown_command_suggests_the_closest_and_runs_nothing(chat: Chat) -> None:
    reply = await chat.say("smok Lab")
    assert "I don't know the command `smok`" in reply.text
    assert "Did you mean `smoke`?" in reply.text
    assert "help" in reply.text
    assert chat.winrm_requests() == 0


async def test_unknown_environment_suggests_the_closest_and_runs_nothing(chat: Chat) -> None:
    reply = await chat.say("status internalprd")
    assert "There is no environment `internalprd`" in reply.text
    assert "Did you mean `status InternalProd`?" in reply.text
    reply = await chat.say("smoke")
    assert "`smoke` needs an environment" in reply.text
    reply = await chat.say("smoke Lab now please")
    assert "Nothing was run" in reply.text
    assert chat.winrm_requests() == 0
    assert not list(Path(chat.config.paths.smoke_logs_dir).glob("*.log"))


async def test_foreign_tenant_is_refused_before_any_command(chat: Chat) -> None:
    reply = await chat.say("status Lab", tenant=FOREIGN_TENANT)
    assert f"tenant `{FOREIGN_TENANT}`" in reply.text
    assert "allowed_tenants" in reply.text
    assert not reply.body.get("attachments")
    reply = await chat.say("help", tenant=FOREIGN_TENANT)
    assert "not enabled for your organization" in reply.text
    assert chat.winrm_requests() == 0
    refused = [e for e in audit_events(chat) if e["event"] == "Refused"]
    assert [e["status"] for e in refused] == ["tenant", "tenant"]


async def test_missing_role_is_refused_naming_the_role(chat: Chat) -> None:
    reply = await chat.say("status Lab", user=STRANGER)
    assert "not on this bot's people list" in reply.text
    assert "**operator** role" in reply.text
    assert STRANGER.aad_object_id in reply.text
    reply = await chat.say("smoke InternalProd", user=ADELE)
    assert "needs the **operator** role for InternalProd" in reply.text
    assert "You have: approver" in reply.text
    assert chat.winrm_requests() == 0
    assert not list(Path(chat.config.paths.smoke_logs_dir).glob("*.log"))
    # help stays open to anyone from an allowed tenant
    await chat.say("help", user=STRANGER)
    assert table_rows(chat.cards[-1])


async def test_operator_without_approver_role_may_still_run_status(chat: Chat) -> None:
    await chat.say("status Lab", user=MEGAN)
    assert table_rows(chat.cards[-1])[1][2] == "Started, pool Started"


async def test_every_command_and_refusal_is_audited_in_a_valid_chain(chat: Chat) -> None:
    await chat.say("help")
    await chat.say("smok")
    await chat.say("status Lab", user=STRANGER)
    events = [(e["event"], e.get("status")) for e in audit_events(chat)]
    assert events == [
        ("Command", None),
        ("Command", None),
        ("Refused", "unknown-command"),
        ("Command", None),
        ("Refused", "role"),
    ]
    first = audit_events(chat)[0]
    assert first["actor"] == {
        "name": "Alex Wilber",
        "aad_object_id": "00000000-0000-0000-0000-0000000000020",
    }
    assert verify(Path(chat.config.paths.audit_dir), [AUDIT_KEY_BYTES]).ok
