"""The watcher's alert card, in each of its states (pure rendering).

Open: which checks fail (status, expected, latency), since when, and two buttons —
"Start rollback" (asks for the rollback; its approval card follows in the same conversation)
and "Silence 1 h" (needs a reason: it is audited). Resolved: the same facts, no buttons, and
how long the incident lasted. The card replaces every copy of itself when it changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from adapters.smoke import NO_ANSWER
from adapters.store.watch_rows import Alert
from commands.cards import elements as cards
from commands.timefmt import show
from commands.watch_logic import duration_words

START_ROLLBACK = "start_rollback"
SILENCE = "silence"
ALERT_VERBS = (START_ROLLBACK, SILENCE)
SILENCE_INPUT = "silence_reason"
SILENCE_HOURS = 1


def action_data(alert: Alert, verb: str) -> dict[str, Any]:
    """What a click sends back; the bot checks it against the stored alert."""
    return {"verb": verb, "alert_id": alert.id, "environment": alert.environment}


def _button(alert: Alert, verb: str, title: str, style: str) -> cards.Element:
    return cards.execute_button(verb, title, action_data(alert, verb), style)


def failing(checks: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [c for c in checks if c.get("status") not in (c.get("expect") or [])]


def check_line(check: Mapping[str, Any]) -> str:
    """`Health -1 (connection refused), 12 ms` — for texts where a table does not fit."""
    status = check.get("status")
    shown = f"-1 ({check.get('error') or 'no answer'})" if status == NO_ANSWER else str(status)
    return f"{check.get('name')} {shown}, {check.get('latency_ms')} ms"


def _error(check: Mapping[str, Any]) -> str:
    return cards.plain(check.get("error") or "no answer", 200)


def _table(checks: Sequence[Mapping[str, Any]]) -> cards.Element:
    rows, colors = [], []
    for c in checks:
        ok = c.get("status") in (c.get("expect") or [])
        status = c.get("status")
        shown = f"-1 ({_error(c)})" if status == NO_ANSWER else str(status)
        expect = "/".join(str(s) for s in c.get("expect") or [])
        rows.append(
            [str(c.get("name")), shown, expect, str(c.get("latency_ms")), "pass" if ok else "FAIL"]
        )
        colors.append("Good" if ok else "Attention")
    return cards.table(["Check", "Status", "Expected", "Latency ms", "Result"], rows, colors)


def render_alert_card(alert: Alert, tz: ZoneInfo, now: datetime) -> cards.Card:
    if alert.kind == "run":
        return render_run_alert_card(alert, tz)
    bad = failing(alert.checks)
    names = ", ".join(str(c.get("name")) for c in bad) or "smoke"
    resolved = alert.state == "resolved"
    if resolved:
        end = alert.resolved_at or now
        title = cards.title(
            f"✅ {alert.environment} recovered — resolved after "
            f"{duration_words(end - alert.failing_since)}",
            "Good",
        )
    else:
        title = cards.title(
            f"🔴 {alert.environment}: {names} failing ({len(bad)} of {len(alert.checks)} checks)",
            "Attention",
        )
    pairs = [
        ("Alert", alert.id),
        ("Environment", alert.environment),
        (
            "Failing since",
            f"{show(alert.failing_since, tz)} ({duration_words(now - alert.failing_since)})"
            if not resolved
            else show(alert.failing_since, tz),
        ),
        ("Alert raised", show(alert.opened_at, tz)),
    ]
    if resolved and alert.resolved_at:
        pairs.append(("Resolved", show(alert.resolved_at, tz)))
    if alert.silenced_until and not resolved and now < alert.silenced_until:
        pairs.append(
            (
                "Silenced",
                f"until {show(alert.silenced_until, tz)} by {cards.plain(alert.silenced_by, 100)}: "
                f"{cards.plain(alert.silence_reason, 300)}",
            )
        )
    if alert.rollback_request_id:
        pairs.append(("Rollback", f"requested ({alert.rollback_request_id}): see its card"))
    if alert.paused_by and not resolved:
        pairs.append(("Watch", f"watch paused: run {alert.paused_by} in progress"))
    body: list[cards.Element] = [title, cards.facts(pairs)]
    if alert.checks:
        body += [cards.text("**Last failing run**"), _table(alert.checks)]
    if resolved:
        return cards.card(body)
    body.append(
        {
            "type": "Input.Text",
            "id": SILENCE_INPUT,
            "placeholder": f"Why silence reminders for {SILENCE_HOURS} h? (required, audited)",
            "maxLength": 300,
        }
    )
    actions = [
        _button(alert, START_ROLLBACK, "Start rollback", "destructive"),
        _button(alert, SILENCE, f"Silence {SILENCE_HOURS} h", "default"),
    ]
    return cards.card(body, actions)


def render_run_alert_card(alert: Alert, tz: ZoneInfo) -> cards.Card:
    """A run that ended badly: which, what it left on each host, and how urgent (P1/P2)."""
    d = alert.detail
    what = f"{str(d.get('kind', 'run')).capitalize()} of {alert.environment} to {d.get('to')}"
    if alert.state == "resolved":
        title = cards.title(f"✅ {what} ({alert.run_id}): resolved — a later run succeeded", "Good")
    elif d.get("priority") == "P1":
        title = cards.title(
            f"🔴 {what} {d.get('state')} ({alert.run_id}) — hosts NOT back as before", "Attention"
        )
    else:
        title = cards.title(
            f"⚠️ {what} {d.get('state')} ({alert.run_id}) — {d.get('outcome')}", "Warning"
        )
    pairs = [
        ("Alert", f"{alert.id} ({d.get('priority')})"),
        ("Run", f"{alert.run_id} (request {d.get('request_id')})"),
        ("Raised", show(alert.opened_at, tz)),
        ("What happened", str(d.get("note", ""))),
    ]
    if alert.resolved_at:
        pairs.append(("Resolved", show(alert.resolved_at, tz)))
    body: list[cards.Element] = [title, cards.facts(pairs), cards.text("**Hosts now**")]
    body += [cards.text(str(line), subtle=True) for line in d.get("hosts", [])]
    return cards.card(body)


def alert_text(alert: Alert) -> str:
    """The message summary (notifications, chat list) of the alert card."""
    if alert.kind == "run":
        d = alert.detail
        state = "resolved" if alert.state == "resolved" else f"{d.get('state')}, {d.get('outcome')}"
        return (
            f"{d.get('priority')} {alert.environment} run {alert.run_id} {state} (alert {alert.id})"
        )
    if alert.state == "resolved":
        return f"✅ {alert.environment} recovered (alert {alert.id})"
    bad = failing(alert.checks)
    detail = "; ".join(check_line(c) for c in bad) or "smoke failing"
    return f"🔴 {alert.environment} alert {alert.id}: {detail}"
