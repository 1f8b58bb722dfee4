"""Approval workflow state: environment locks, requests, runs and their steps.

Invariant: each once-only decision is one statement or one IMMEDIATE transaction — taking a
lock, moving a request out of a state, creating a request's run (UNIQUE request_id) — so it
holds across connections and processes, not only across the tasks of one Store.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection
from dataclasses import astuple
from datetime import datetime

from adapters.store.db import StoreBase, sql_value
from adapters.store.owners import owner_alive
from adapters.store.rows import (
    ApprovalTally,
    InterruptedRun,
    LockResult,
    Notice,
    Request,
    Run,
    column_names,
    from_row,
    from_text,
    to_text,
)
from adapters.store.schema import REQUEST_STATES, STEP_STATES

# Columns a transition may set besides `state`: named here so **fields never reaches SQL.
TRANSITION_FIELDS = frozenset(
    {"card_activity_id", "decided_by_name", "decided_by_id", "decided_at", "reason"}
)


class RunStore(StoreBase):
    """Locks, requests, runs and steps (see the module invariant)."""

    # --- environment locks -----------------------------------------------------------------

    async def try_lock(self, environment: str, run_id: str, holder: str) -> LockResult:
        """Take the environment's lock for `run_id`, or report who holds it (never raises)."""
        async with self._tx() as conn:
            await conn.execute(
                "INSERT INTO env_locks (environment, run_id, holder_name, since)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (environment) DO NOTHING",
                (environment, run_id, holder, to_text(self._clock())),
            )
            async with conn.execute(
                "SELECT * FROM env_locks WHERE environment = ?", (environment,)
            ) as cursor:
                row = await cursor.fetchone()
        assert row is not None
        return _lock_result(row, acquired=row["run_id"] == run_id)

    async def release_lock(self, environment: str, run_id: str) -> bool:
        """Release the lock if `run_id` holds it; False when it did not."""
        return (
            await self._write(
                "DELETE FROM env_locks WHERE environment = ? AND run_id = ?", (environment, run_id)
            )
            == 1
        )

    async def lock_holder(self, environment: str) -> LockResult | None:
        """The current holder (acquired=False: this call took nothing), or None when free."""
        row = await self._row("SELECT * FROM env_locks WHERE environment = ?", (environment,))
        return None if row is None else _lock_result(row, acquired=False)

    # --- requests, runs, steps -------------------------------------------------------------

    async def create_request(self, request: Request) -> None:
        await self._insert("requests", request)

    async def get_request(self, request_id: str) -> Request | None:
        row = await self._row("SELECT * FROM requests WHERE id = ?", (request_id,))
        return None if row is None else from_row(Request, row)

    async def pending_requests(self, environment: str) -> list[Request]:
        """The requests of `environment` still waiting for approval, oldest first."""
        rows = await self._rows(
            "SELECT * FROM requests WHERE environment = ? AND state = 'pending'"
            " ORDER BY created_at",
            (environment,),
        )
        return [from_row(Request, r) for r in rows]

    async def transition_request(
        self,
        request_id: str,
        from_states: Collection[str],
        to_state: str,
        **fields: str | datetime | None,
    ) -> bool:
        """Move the request to `to_state` iff it is in one of `from_states`, in ONE UPDATE;
        True for exactly one of any number of concurrent callers (the double-click guard)."""
        unknown = {to_state, *from_states} - set(REQUEST_STATES)
        bad_fields = set(fields) - TRANSITION_FIELDS
        if unknown or bad_fields or not from_states:
            raise ValueError(f"bad transition: states {unknown or '-'}, fields {bad_fields or '-'}")
        sets = "".join(f", {name} = ?" for name in fields)
        marks = ", ".join("?" for _ in from_states)
        return (
            await self._write(
                f"UPDATE requests SET state = ?{sets} WHERE id = ? AND state IN ({marks})",  # noqa: S608
                (to_state, *map(sql_value, fields.values()), request_id, *from_states),
            )
            == 1
        )

    async def add_approval(
        self,
        request_id: str,
        approver_id: str,
        approver_name: str,
        at: datetime,
        *,
        required: int,
        break_glass_reason: str | None = None,
    ) -> ApprovalTally:
        """Record one approver's approval of a pending request and, with the `required`-th
        distinct approver (or a break-glass approval, which needs no other), move it to
        `approved` — all in ONE IMMEDIATE transaction, so concurrent clicks of N approvers
        approve it exactly once and the count can never be read half-written."""
        at_text = to_text(at)
        async with self._tx() as conn:
            async with conn.execute(
                "SELECT state, required_approvals FROM requests WHERE id = ?", (request_id,)
            ) as cursor:
                row = await cursor.fetchone()
            if row is None:
                raise ValueError(f"no request {request_id}")
            needed = max(required, int(row["required_approvals"]))
            recorded = False
            if row["state"] == "pending":
                cursor = await conn.execute(
                    "INSERT INTO approvals (request_id, approver_id, approver_name, at)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (request_id, approver_id.lower(), approver_name, at_text),
                )
                recorded = cursor.rowcount == 1
            async with conn.execute(
                "SELECT approver_name FROM approvals WHERE request_id = ? ORDER BY at, rowid",
                (request_id,),
            ) as cursor:
                names = tuple(r["approver_name"] for r in await cursor.fetchall())
            state = row["state"]
            if recorded:
                decided = break_glass_reason is not None or len(names) >= needed
                await conn.execute(
                    "UPDATE requests SET approvers = ? WHERE id = ?", (", ".join(names), request_id)
                )
                if decided:
                    await conn.execute(
                        "UPDATE requests SET state = 'approved', decided_by_name = ?,"
                        " decided_by_id = ?, decided_at = ?, reason = ?, break_glass = ?"
                        " WHERE id = ? AND state = 'pending'",
                        (approver_name, approver_id, at_text, break_glass_reason,
                         int(break_glass_reason is not None), request_id),
                    )  # fmt: skip
                    state = "approved"
        return ApprovalTally(state, recorded, len(names), needed, names)

    async def approvals_of(self, request_id: str) -> list[tuple[str, str]]:
        """(approver id, name) of every approval of a request, in order."""
        rows = await self._rows(
            "SELECT approver_id, approver_name FROM approvals WHERE request_id = ?"
            " ORDER BY at, rowid",
            (request_id,),
        )
        return [(r["approver_id"], r["approver_name"]) for r in rows]

    async def create_run(self, run: Run) -> None:
        """Insert the run; IntegrityError if its request already has one (one run each)."""
        await self._insert("runs", run)

    async def record_step(
        self,
        run_id: str,
        idx: int,
        name: str,
        state: str,
        *,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
        duration_ms: int | None = None,
        error: str | None = None,
    ) -> None:
        """Insert or update step `idx` of a run; a running step becomes the run's current."""
        if state not in STEP_STATES:
            raise ValueError(f"unknown step state {state!r}")
        async with self._tx() as conn:
            await conn.execute(
                "INSERT INTO steps (run_id, idx, name, state, started_at, finished_at,"
                " duration_ms, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (run_id, idx) DO UPDATE SET name = excluded.name,"
                " state = excluded.state,"
                " started_at = COALESCE(excluded.started_at, steps.started_at),"
                " finished_at = excluded.finished_at, duration_ms = excluded.duration_ms,"
                " error = excluded.error",
                (run_id, idx, name, state, *map(sql_value, (started_at, finished_at)),
                 duration_ms, error),
            )  # fmt: skip
            if state == "running":
                await conn.execute("UPDATE runs SET current_step = ? WHERE id = ?", (name, run_id))

    async def mark_running_runs_interrupted(self) -> list[InterruptedRun]:
        """At start, before the executor takes work: every `running` run whose owner is gone
        (and its request and running step) becomes `interrupted`, and its environment lock is
        released — together with any lock no running run holds. A run whose owner process
        lives (the break-glass CLI beside the bot, or the bot beside the CLI) is left alone."""
        now = to_text(self._clock())
        async with self._tx() as conn:
            async with conn.execute(
                "SELECT r.*, (SELECT name FROM steps s WHERE s.run_id = r.id AND"
                " s.state = 'passed' ORDER BY s.idx DESC LIMIT 1) AS last_completed_step"
                " FROM runs r WHERE r.state = 'running' ORDER BY r.started_at"
            ) as cursor:
                running = list(await cursor.fetchall())
            rows = [r for r in running if not owner_alive(self.path, r["owner"])]
            for r in rows:
                await conn.execute(
                    "UPDATE steps SET state = 'interrupted', finished_at = ?"
                    " WHERE state = 'running' AND run_id = ?",
                    (now, r["id"]),
                )
                await conn.execute(
                    "UPDATE requests SET state = 'interrupted' WHERE state = 'running' AND id = ?",
                    (r["request_id"],),
                )
                await conn.execute(
                    "UPDATE runs SET state = 'interrupted', finished_at = ? WHERE id = ?",
                    (now, r["id"]),
                )
            await conn.execute(
                "DELETE FROM env_locks WHERE run_id IS NULL OR run_id NOT IN"
                " (SELECT id FROM runs WHERE state = 'running')"
            )
        return [
            InterruptedRun(
                run_id=r["id"],
                request_id=r["request_id"],
                environment=r["environment"],
                current_step=r["current_step"],
                last_completed_step=r["last_completed_step"],
                conversation_id=r["conversation_id"],
                progress_activity_id=r["progress_activity_id"],
                pre_state_json=r["pre_state_json"],
            )
            for r in rows
        ]

    async def runs_of(self, environment: str, limit: int) -> list[tuple[Run, Request]]:
        """The environment's last `limit` runs, newest first, each with its request."""
        rows = await self._rows(
            "SELECT id FROM runs WHERE environment = ? ORDER BY started_at DESC LIMIT ?",
            (environment, limit),
        )
        found: list[tuple[Run, Request]] = []
        for row in rows:
            run = from_row(Run, await self._one("SELECT * FROM runs WHERE id = ?", row["id"]))
            request = await self._row("SELECT * FROM requests WHERE id = ?", (run.request_id,))
            if request is not None:
                found.append((run, from_row(Request, request)))
        return found

    async def _one(self, sql: str, *params: object) -> sqlite3.Row:
        row = await self._row(sql, params)
        assert row is not None
        return row

    # --- notices for Teams, kept until delivered ------------------------------------------

    async def add_notice(self, environment: str, kind: str, text: str) -> int:
        """Keep a message for the environment's alert conversations; its id."""
        async with self._tx() as conn:
            cursor = await conn.execute(
                "INSERT INTO notices (environment, kind, text, created_at) VALUES (?, ?, ?, ?)",
                (environment, kind, text, to_text(self._clock())),
            )
            return int(cursor.lastrowid or 0)

    async def undelivered_notices(self) -> list[Notice]:
        rows = await self._rows(
            "SELECT id, environment, kind, text, created_at, delivered_to FROM notices"
            " WHERE delivered_at IS NULL ORDER BY id"
        )
        return [
            Notice(
                r["id"],
                r["environment"],
                r["kind"],
                r["text"],
                from_text(r["created_at"]),
                tuple(json.loads(r["delivered_to"])),
            )
            for r in rows
        ]

    async def notice_delivered(self, notice_id: int, conversation_id: str) -> None:
        """Teams has the notice in `conversation_id`."""
        async with self._tx() as conn:
            async with conn.execute(
                "SELECT delivered_to FROM notices WHERE id = ?", (notice_id,)
            ) as cursor:
                row = await cursor.fetchone()
            if row is None:
                return
            done = [*json.loads(row["delivered_to"]), conversation_id]
            await conn.execute(
                "UPDATE notices SET delivered_to = ? WHERE id = ?",
                (json.dumps(sorted(set(done))), notice_id),
            )

    async def close_notice(self, notice_id: int) -> bool:
        """Every alert conversation has it: done (True for the one caller that closes it)."""
        return (
            await self._write(
                "UPDATE notices SET delivered_at = ? WHERE id = ? AND delivered_at IS NULL",
                (to_text(self._clock()), notice_id),
            )
            == 1
        )

    async def _insert(self, table: str, row: Request | Run) -> None:
        names = column_names(type(row))
        marks = ", ".join(["?"] * len(names))
        await self._write(
            f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})",  # noqa: S608
            [sql_value(v) for v in astuple(row)],
        )


def _lock_result(row: sqlite3.Row, *, acquired: bool) -> LockResult:
    return LockResult(
        acquired=acquired,
        holder_run_id=row["run_id"],
        holder_name=row["holder_name"],
        since=from_text(row["since"]),
    )
