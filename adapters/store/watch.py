"""What the watcher, the alerts and /metrics read and write: watch state, alerts, subscriptions.

Invariants: at most one open alert per environment (the schema's unique partial index), so a
restart, or two runs racing, can never raise a second alert for the same incident —
`open_alert` reports the loser as a value; open → resolved is one UPDATE, so a recovery
is announced once. An alert's cards (one per conversation it was posted to) and its last
failing checks live in `detail_json`; the `conversation_id` / `card_activity_id` columns
hold the first card, for people reading the database by hand.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from adapters.store.db import ConflictError, StoreBase
from adapters.store.rows import Request, from_row, from_text, to_text
from adapters.store.watch_rows import Alert, WatchState, alert_from_row

ACTIVE_REQUEST_STATES = ("pending", "approved", "running")


class WatchStore(StoreBase):
    """Watch state, alerts, subscriptions, and the counts /metrics reads (module invariants)."""

    # --- watch state -----------------------------------------------------------------------

    async def get_watch_state(self, environment: str) -> WatchState:
        """The stored streak, or a fresh one (no run yet)."""
        row = await self._row("SELECT * FROM watch_state WHERE environment = ?", (environment,))
        if row is None:
            return WatchState(environment)
        return WatchState(
            environment=environment,
            consecutive_failures=row["consecutive_failures"],
            failing_since=from_text(row["failing_since"]) if row["failing_since"] else None,
            last_run_at=from_text(row["last_run_at"]) if row["last_run_at"] else None,
            last_passed=None if row["last_passed"] is None else bool(row["last_passed"]),
        )

    async def save_watch_state(self, state: WatchState) -> None:
        def text(value: datetime | None) -> str | None:
            return None if value is None else to_text(value)

        passed = None if state.last_passed is None else int(state.last_passed)
        await self._write(
            "INSERT INTO watch_state (environment, consecutive_failures, failing_since,"
            " last_run_at, last_passed, updated_at) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (environment) DO UPDATE SET"
            " consecutive_failures = excluded.consecutive_failures,"
            " failing_since = excluded.failing_since, last_run_at = excluded.last_run_at,"
            " last_passed = excluded.last_passed, updated_at = excluded.updated_at",
            (state.environment, state.consecutive_failures, text(state.failing_since),
             text(state.last_run_at), passed, to_text(self._clock())),
        )  # fmt: skip

    # --- alerts ----------------------------------------------------------------------------

    async def open_alert(
        self,
        alert_id: str,
        environment: str,
        opened_at: datetime,
        failing_since: datetime,
        checks: list[dict[str, Any]],
    ) -> bool:
        """Record a new open alert; False when the environment has one open already."""
        detail = {"failing_since": to_text(failing_since), "checks": checks, "cards": []}
        try:
            await self._write(
                "INSERT INTO alerts (id, environment, state, opened_at, detail_json)"
                " VALUES (?, ?, 'open', ?, ?)",
                (alert_id, environment, to_text(opened_at), json.dumps(detail)),
            )
        except ConflictError:
            return False
        return True

    async def open_alert_for(self, environment: str) -> Alert | None:
        """The environment's open smoke incident (the watcher's), if any."""
        row = await self._row(
            "SELECT * FROM alerts WHERE environment = ? AND state = 'open' AND kind = 'smoke'",
            (environment,),
        )
        return None if row is None else alert_from_row(row)

    async def open_run_alert(
        self,
        alert_id: str,
        environment: str,
        run_id: str,
        opened_at: datetime,
        detail: dict[str, Any],
    ) -> None:
        """Record the alert of a run that ended badly (one per run, beside any smoke one)."""
        body = {**detail, "failing_since": to_text(opened_at), "checks": [], "cards": []}
        await self._write(
            "INSERT INTO alerts (id, environment, state, opened_at, detail_json, kind, run_id)"
            " VALUES (?, ?, 'open', ?, ?, 'run', ?)",
            (alert_id, environment, to_text(opened_at), json.dumps(body), run_id),
        )

    async def open_run_alerts(self, environment: str) -> list[Alert]:
        rows = await self._rows(
            "SELECT * FROM alerts WHERE environment = ? AND state = 'open' AND kind = 'run'"
            " ORDER BY opened_at",
            (environment,),
        )
        return [alert_from_row(r) for r in rows]

    async def alerts_to_forward(self) -> list[Alert]:
        """Open alerts OpsGenie has not taken yet (a restart resumes their creates)."""
        rows = await self._rows(
            "SELECT * FROM alerts WHERE state = 'open' AND (opsgenie_state IS NULL"
            " OR opsgenie_state IN ('pending', 'created-failed'))"
        )
        return [alert_from_row(r) for r in rows]

    async def set_alert_paused(self, alert_id: str, run_id: str | None) -> None:
        """Remember which run pauses the watcher on this alert's environment (None: none)."""
        await self._update_detail(alert_id, {"paused_by": run_id})

    async def get_alert(self, alert_id: str) -> Alert | None:
        row = await self._row("SELECT * FROM alerts WHERE id = ?", (alert_id,))
        return None if row is None else alert_from_row(row)

    async def _update_detail(self, alert_id: str, changes: dict[str, Any]) -> None:
        async with self._tx() as tx:
            row = await tx.fetchone(
                "SELECT detail_json FROM alerts WHERE id = ?"  # noqa: S608
                + tx.for_update,
                (alert_id,),
            )
            if row is None:
                return
            detail = json.loads(row["detail_json"] or "{}")
            cards = changes.pop("add_card", None)
            detail.update(changes)
            first = None
            if cards is not None:
                detail.setdefault("cards", []).append(cards)
                first = detail["cards"][0]
            await tx.execute(
                "UPDATE alerts SET detail_json = ?,"
                " conversation_id = COALESCE(conversation_id, ?),"
                " card_activity_id = COALESCE(card_activity_id, ?) WHERE id = ?",
                (json.dumps(detail), first and first["conversation_id"],
                 first and first["activity_id"], alert_id),
            )  # fmt: skip

    async def add_alert_card(self, alert_id: str, conversation_id: str, activity_id: str) -> None:
        """Remember a posted card so recovery and silence can edit it."""
        card = {"conversation_id": conversation_id, "activity_id": activity_id}
        await self._update_detail(alert_id, {"add_card": card})

    async def set_alert_checks(self, alert_id: str, checks: list[dict[str, Any]]) -> None:
        await self._update_detail(alert_id, {"checks": checks})

    async def set_alert_rollback(self, alert_id: str, request_id: str) -> None:
        await self._update_detail(alert_id, {"rollback_request_id": request_id})

    async def mark_alert_reminded(self, alert_id: str, at: datetime) -> None:
        await self._write(
            "UPDATE alerts SET last_reminder_at = ? WHERE id = ?", (to_text(at), alert_id)
        )

    async def silence_alert(self, alert_id: str, until: datetime, by: str, reason: str) -> bool:
        """Silence reminders of an open alert until `until`; False when it is not open."""
        return (
            await self._write(
                "UPDATE alerts SET silenced_until = ?, silenced_by = ?, silence_reason = ?"
                " WHERE id = ? AND state = 'open'",
                (to_text(until), by, reason, alert_id),
            )
            == 1
        )

    async def resolve_alert(self, alert_id: str, at: datetime) -> bool:
        """open → resolved in one UPDATE; True for exactly one caller."""
        return (
            await self._write(
                "UPDATE alerts SET state = 'resolved', resolved_at = ?"
                " WHERE id = ? AND state = 'open'",
                (to_text(at), alert_id),
            )
            == 1
        )

    async def set_alert_opsgenie(self, alert_id: str, alias: str, state: str) -> None:
        await self._write(
            "UPDATE alerts SET opsgenie_alias = ?, opsgenie_state = ? WHERE id = ?",
            (alias, state, alert_id),
        )

    # --- subscriptions ---------------------------------------------------------------------

    async def subscribe(
        self, environment: str, conversation_id: str, by: str | None, at: datetime
    ) -> bool:
        """Send `environment`'s alerts to the conversation; False if it was subscribed already.

        The conversation's reference must be stored first (foreign key).
        """
        return (
            await self._write(
                "INSERT INTO subscriptions (environment, conversation_id, subscribed_by,"
                " created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (environment, conversation_id, by, to_text(at)),
            )
            == 1
        )

    async def unsubscribe(self, environment: str, conversation_id: str) -> bool:
        return (
            await self._write(
                "DELETE FROM subscriptions WHERE environment = ? AND conversation_id = ?",
                (environment, conversation_id),
            )
            == 1
        )

    async def subscribers(self, environment: str) -> list[str]:
        """Conversation ids subscribed to `environment`, oldest subscription first."""
        rows = await self._rows(
            "SELECT conversation_id FROM subscriptions WHERE environment = ?"
            " ORDER BY created_at, conversation_id",
            (environment,),
        )
        return [r["conversation_id"] for r in rows]

    # --- requests made from an alert -------------------------------------------------------

    async def set_request_origin(self, request_id: str, origin: str) -> None:
        await self._write("UPDATE requests SET origin = ? WHERE id = ?", (origin, request_id))

    async def active_request_from(self, origin: str) -> Request | None:
        """A pending, approved or running request made from `origin` (e.g. "alert:A-…")."""
        row = await self._row(
            "SELECT * FROM requests WHERE origin = ? AND state IN (?, ?, ?)"
            " ORDER BY created_at DESC LIMIT 1",
            (origin, *ACTIVE_REQUEST_STATES),
        )
        return None if row is None else from_row(Request, row)

    # --- counts for /metrics ---------------------------------------------------------------

    async def run_outcomes(self) -> list[tuple[str, str, str, int]]:
        """(environment, command, run state, count) over every run ever started."""
        rows = await self._rows(
            "SELECT r.environment AS environment, q.command AS command, r.state AS state,"
            " COUNT(*) AS n FROM runs r JOIN requests q ON q.id = r.request_id"
            " GROUP BY r.environment, q.command, r.state"
        )
        return [(r["environment"], r["command"], r["state"], int(r["n"])) for r in rows]

    async def step_durations(self) -> list[tuple[str, str, int]]:
        """(environment, step name, duration ms) of every finished step."""
        rows = await self._rows(
            "SELECT r.environment AS environment, s.name AS name, s.duration_ms AS duration_ms"
            " FROM steps s JOIN runs r ON r.id = s.run_id"
            " WHERE s.duration_ms IS NOT NULL ORDER BY r.started_at, s.run_id, s.idx"
        )
        return [(r["environment"], r["name"], int(r["duration_ms"])) for r in rows]

    async def pending_by_environment(self) -> list[tuple[str, int]]:
        """(environment, requests waiting for approval) for each environment that has any."""
        rows = await self._rows(
            "SELECT environment, COUNT(*) AS n FROM requests WHERE state = 'pending'"
            " GROUP BY environment"
        )
        return [(r["environment"], int(r["n"])) for r in rows]
