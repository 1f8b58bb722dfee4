"""The watcher's pure decision and the alert card, as tables."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.smoke import CheckResult
from adapters.store.watch_rows import Alert, WatchState
from commands.cards.alert import alert_text, render_alert_card
from commands.config import Watch
from commands.watch_logic import Nothing, RaiseAlert, Remind, Resolve, decide, duration_words
from tests.conftest import card_texts

T0 = datetime(2026, 11, 27, 1, 0, tzinfo=UTC)
WATCH = Watch(failure_threshold=2, reminder_minutes=30)
KST = ZoneInfo("Asia/Seoul")


def state(failures: int = 0, since: datetime | None = None) -> WatchState:
    return WatchState("Lab", failures, since, None, None if failures == 0 else False)


def alert(**fields: object) -> Alert:
    base = Alert("A-0000abcd", "Lab", "open", T0, T0 - timedelta(minutes=1))
    return replace(base, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("previous", "passed", "minutes", "open_alert", "expected"),
    [
        (state(), True, 0, None, Nothing("passing")),
        (state(), False, 0, None, Nothing("below-threshold")),
        (state(1, T0), False, 1, None, RaiseAlert(T0)),
        (state(5, T0), False, 1, None, RaiseAlert(T0)),  # alert resolved by hand? raise anew
        (state(2, T0), False, 29, alert(), Nothing("reminder-not-due")),
        (state(2, T0), False, 30, alert(), Remind("A-0000abcd")),
        (state(9, T0), False, 61, alert(last_reminder_at=T0 + timedelta(minutes=31)),
         Remind("A-0000abcd")),
        (state(9, T0), False, 45, alert(last_reminder_at=T0 + timedelta(minutes=31)),
         Nothing("reminder-not-due")),
        (state(2, T0), False, 45, alert(silenced_until=T0 + timedelta(minutes=60)),
         Nothing("silenced")),
        (state(2, T0), False, 61, alert(silenced_until=T0 + timedelta(minutes=60)),
         Remind("A-0000abcd")),
        (state(3, T0), True, 7, alert(), Resolve("A-0000abcd", timedelta(minutes=8))),
    ],
    ids=[
        "passing", "first-failure", "second-failure-raises", "streak-without-alert-raises",
        "open-no-reminder-yet", "reminder-at-30-min", "next-reminder-30-min-after-last",
        "not-30-min-since-last-reminder", "silenced", "silence-over", "pass-resolves",
    ],
)  # fmt: skip
def test_decide(
    previous: WatchState, passed: bool, minutes: int, open_alert: Alert | None, expected: object
) -> None:
    now = T0 + timedelta(minutes=minutes)
    decision = decide(previous, passed, now, open_alert, WATCH)
    assert decision.action == expected
    assert decision.state.last_run_at == now and decision.state.last_passed is passed
    if passed:
        assert (decision.state.consecutive_failures, decision.state.failing_since) == (0, None)
    else:
        assert decision.state.consecutive_failures == previous.consecutive_failures + 1
        assert decision.state.failing_since == (previous.failing_since or now)


@given(st.lists(st.booleans(), max_size=40), st.integers(min_value=1, max_value=5))
def test_a_streak_raises_exactly_once_per_incident(outcomes: list[bool], threshold: int) -> None:
    """Whatever the sequence, raises == incidents that reached the threshold (one open max)."""
    watch = Watch(failure_threshold=threshold)
    current, open_alert, raises, expected, streak = state(), None, 0, 0, 0
    for i, passed in enumerate(outcomes):
        now = T0 + timedelta(minutes=i)
        decision = decide(current, passed, now, open_alert, watch)
        current = decision.state
        streak = 0 if passed else streak + 1
        expected += int(streak == threshold)
        if isinstance(decision.action, RaiseAlert):
            raises += 1
            open_alert = alert(opened_at=now, failing_since=decision.action.failing_since)
        elif isinstance(decision.action, Resolve):
            open_alert = None
    assert raises == expected


@pytest.mark.parametrize(
    ("delta", "words"),
    [(timedelta(seconds=5), "1 min"), (timedelta(minutes=7, seconds=10), "7 min"),
     (timedelta(minutes=65), "1 h 5 min")],
)  # fmt: skip
def test_duration_words(delta: timedelta, words: str) -> None:
    assert duration_words(delta) == words


def checks() -> tuple[dict[str, object], ...]:
    results = [
        CheckResult("Health", "http://h/health", -1, (200,), 12, "connection refused"),
        CheckResult("Swagger", "http://h/swagger", 200, (200,), 8),
        CheckResult("Kerberos", "http://h/kerberos", 401, (200, 401), 9),
    ]
    return tuple(asdict(r) for r in results)


def test_open_card_names_the_failing_check_and_has_both_buttons() -> None:
    card = render_alert_card(alert(checks=checks()), KST, T0 + timedelta(minutes=4))
    texts = card_texts(card)
    assert texts[0] == "🔴 Lab: Health failing (1 of 3 checks)"
    assert "Failing since: 2026-11-27 09:59:00 KST (5 min)" in texts
    assert "-1 (connection refused)" in texts
    verbs = [(a["verb"], a["data"]) for a in card["actions"]]
    data = {"alert_id": "A-0000abcd", "environment": "Lab"}
    assert verbs == [("start_rollback", {"verb": "start_rollback", **data}),
                     ("silence", {"verb": "silence", **data})]  # fmt: skip
    assert any(e.get("id") == "silence_reason" for e in card["body"])


def test_silenced_and_resolved_cards() -> None:
    silenced = alert(
        checks=checks(),
        silenced_until=T0 + timedelta(hours=1),
        silenced_by="Megan Bowen",
        silence_reason="vendor on it",
    )
    texts = card_texts(render_alert_card(silenced, KST, T0))
    assert "Silenced: until 2026-11-27 11:00:00 KST by Megan Bowen: vendor on it" in texts
    done = replace(silenced, state="resolved", resolved_at=T0 + timedelta(minutes=6))
    card = render_alert_card(done, KST, T0 + timedelta(minutes=6))
    assert card_texts(card)[0] == "✅ Lab recovered — resolved after 7 min"
    assert "actions" not in card and not any(e.get("id") for e in card["body"])
    assert not any(t.startswith("Silenced") for t in card_texts(card))
    assert alert_text(done) == "✅ Lab recovered (alert A-0000abcd)"
    assert alert_text(silenced) == "🔴 Lab alert A-0000abcd: Health -1 (connection refused), 12 ms"


ALERTING_COMMANDS = (
    "commands.watch_logic, commands.cards.alert, commands.alert_actions, "
    "commands.grafana_alert, commands.subscribe, commands.unsubscribe"
)


def test_alerting_commands_never_import_io_libraries() -> None:
    code = (
        f"import sys, {ALERTING_COMMANDS}; "
        "print(','.join(m for m in ('aiohttp', 'botbuilder', 'aiosqlite', 'winrm') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
