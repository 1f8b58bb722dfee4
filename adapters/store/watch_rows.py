"""The rows of the watcher's tables, as frozen values (no database library imported here,
so commands/ can use them: the decision logic and the alert card are pure).

Times are aware datetimes; an alert's cards, its last failing checks and when its failures
began are kept in the row's `detail_json`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from adapters.store.rows import DbRow, from_text


@dataclass(frozen=True)
class WatchState:
    """An environment's smoke streak as the watcher last left it."""

    environment: str
    consecutive_failures: int = 0
    failing_since: datetime | None = None
    last_run_at: datetime | None = None
    last_passed: bool | None = None


@dataclass(frozen=True)
class AlertCard:
    """One posted alert card: where, and the message id to edit it."""

    conversation_id: str
    activity_id: str


@dataclass(frozen=True)
class Alert:
    """One incident of one environment: open until its checks pass again."""

    id: str
    environment: str
    state: str  # open | resolved
    opened_at: datetime
    failing_since: datetime
    checks: tuple[dict[str, Any], ...] = ()
    cards: tuple[AlertCard, ...] = ()
    resolved_at: datetime | None = None
    last_reminder_at: datetime | None = None
    silenced_until: datetime | None = None
    silenced_by: str | None = None
    silence_reason: str | None = None
    opsgenie_alias: str | None = None
    opsgenie_state: str | None = None
    rollback_request_id: str | None = None
    kind: str = "smoke"  # smoke: the watcher's incident; run: a run that ended badly
    run_id: str | None = None
    # A run alert: its priority and what it says (message, hosts' state, restore outcome).
    detail: dict[str, Any] = field(default_factory=dict)
    paused_by: str | None = None  # the run holding the environment while the watch is paused


def alert_from_row(row: DbRow) -> Alert:
    """An Alert from its `alerts` row (cards, checks and failing_since come from detail_json)."""
    detail: dict[str, Any] = json.loads(row["detail_json"] or "{}")
    cards = tuple(
        AlertCard(c["conversation_id"], c["activity_id"]) for c in detail.get("cards", [])
    )

    def at(name: str) -> datetime | None:
        return from_text(row[name]) if row[name] else None

    opened = from_text(row["opened_at"])
    since = detail.get("failing_since")
    return Alert(
        id=row["id"],
        environment=row["environment"],
        state=row["state"],
        opened_at=opened,
        failing_since=from_text(since) if since else opened,
        checks=tuple(detail.get("checks", [])),
        cards=cards,
        resolved_at=at("resolved_at"),
        last_reminder_at=at("last_reminder_at"),
        silenced_until=at("silenced_until"),
        silenced_by=row["silenced_by"],
        silence_reason=row["silence_reason"],
        opsgenie_alias=row["opsgenie_alias"],
        opsgenie_state=row["opsgenie_state"],
        rollback_request_id=detail.get("rollback_request_id"),
        kind=row["kind"],
        run_id=row["run_id"],
        detail={k: v for k, v in detail.items() if k not in ("cards", "checks", "failing_since")},
        paused_by=detail.get("paused_by"),
    )
