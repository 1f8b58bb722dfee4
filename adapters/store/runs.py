"""Approval workflow state: environment locks, requests, runs and their steps.

Invariant: each once-only decision is one statement or one transaction that holds the
row it decides on (SQLite's IMMEDIATE write lock, PostgreSQL's FOR UPDATE) — taking a
lock, moving a request out of a state, creating a request's run (UNIQUE request_id),
taking over a dead instance's run — so it holds across connections, processes and
instances, not only across the tasks of one Store.

Runs and environment locks belong to the instance that made them (`owner`) until their
`lease_until`, which that instance renews (`renew_leases`); a run whose lease ran out is
taken over — marked interrupted, its lock freed — by exactly one instance.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import astuple, replace
from datetime import datetime, timedelta

from adapters.store.db import ConflictError, StoreBase, sql_value
from adapters.store.rows import (
    ApprovalTally,
    DbRow,
    InterruptedRun,
    LockResult,
    Notice,
    PendingFinal,
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
        async with self._tx() as tx:
            await tx.execute(
                "INSERT INTO env_locks (environment, run_id, holder_name, since, owner,"
                " lease_until) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (environment) DO NOTHING",
                (environment, run_id, holder, to_text(self._clock()), self.owner,
                 self._row_lease()),
            )  # fmt: skip
            row = await tx.fetchone("SELECT * FROM env_locks WHERE environment = ?", (environment,))
        assert row is not None
        return _lock_result(row, acquired=row["run_id"] == run_id)

    async def release_lock(self, environment: str, run_id: str) -> bool:
        """Release the lock if `run_id` holds it for this process; False when it did not —
        a run another process took over keeps its lock until that one has settled the hosts
        (a stalled process that wakes up must not free it under a restore)."""
        return (
            await self._write(
                "DELETE FROM env_locks WHERE environment = ? AND run_id = ?"
                " AND (owner = ? OR owner IS NULL)",
                (environment, run_id, self.owner),
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
        values = [sql_value(v) for v in fields.values()]
        if to_state == "approved":
            # The process that approved it starts its run (`orphaned_approvals`).
            sets, values = sets + ", approved_by_owner = ?", [*values, self.owner]
        marks = ", ".join("?" for _ in from_states)
        return (
            await self._write(
                f"UPDATE requests SET state = ?{sets} WHERE id = ? AND state IN ({marks})",  # noqa: S608
                (to_state, *values, request_id, *from_states),
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
        async with self._tx() as tx:
            row = await tx.fetchone(
                "SELECT state, required_approvals FROM requests WHERE id = ?"  # noqa: S608
                + tx.for_update,
                (request_id,),
            )
            if row is None:
                raise ValueError(f"no request {request_id}")
            needed = max(required, int(row["required_approvals"]))
            recorded = False
            if row["state"] == "pending":
                recorded = (
                    await tx.execute(
                        "INSERT INTO approvals (request_id, approver_id, approver_name, at, seq)"
                        " VALUES (?, ?, ?, ?, (SELECT COUNT(*) + 1 FROM approvals"
                        " WHERE request_id = ?)) ON CONFLICT DO NOTHING",
                        (request_id, approver_id.lower(), approver_name, at_text, request_id),
                    )
                    == 1
                )
            names = tuple(r["approver_name"] for r in await tx.fetch(_APPROVALS, (request_id,)))
            state = row["state"]
            if recorded:
                decided = break_glass_reason is not None or len(names) >= needed
                await tx.execute(
                    "UPDATE requests SET approvers = ? WHERE id = ?", (", ".join(names), request_id)
                )
                if decided:
                    await tx.execute(
                        "UPDATE requests SET state = 'approved', decided_by_name = ?,"
                        " decided_by_id = ?, decided_at = ?, reason = ?, break_glass = ?,"
                        " approved_by_owner = ? WHERE id = ? AND state = 'pending'",
                        (approver_name, approver_id, at_text, break_glass_reason,
                         int(break_glass_reason is not None), self.owner, request_id),
                    )  # fmt: skip
                    state = "approved"
        return ApprovalTally(state, recorded, len(names), needed, names)

    async def approvals_of(self, request_id: str) -> list[tuple[str, str]]:
        """(approver id, name) of every approval of a request, in order."""
        rows = await self._rows(_APPROVALS, (request_id,))
        return [(r["approver_id"], r["approver_name"]) for r in rows]

    async def create_run(self, run: Run) -> bool:
        """Insert the run, owned by this process (under a fresh lease on PostgreSQL); False
        if its request already has one (one run each)."""
        lease = self._row_lease()
        try:
            await self._insert(
                "runs",
                replace(run, owner=self.owner, lease_until=from_text(lease) if lease else None),
            )
        except ConflictError:
            return False
        return True

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
        async with self._tx() as tx:
            await tx.execute(
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
                await tx.execute("UPDATE runs SET current_step = ? WHERE id = ?", (name, run_id))

    async def mark_running_runs_interrupted(self) -> list[InterruptedRun]:
        """At start, before the executor takes work: every `running` run whose owner is gone
        (`_owner_gone`) becomes `interrupted` with its request and running step, and its
        environment lock passes to this process (to be released once the hosts are settled:
        bot/runs/recovery.py), and so does the lock of a run already `interrupted` whose
        settling process died before recording its restore outcome (it is settled again:
        `InterruptedRun.resumed`); every other lock whose owner is gone is released. A run or lock
        whose owner lives — the break-glass CLI beside the bot, another instance renewing
        its lease — is left alone."""
        return await self._take_over(at_start=True)

    async def take_over_expired_runs(self) -> list[InterruptedRun]:
        """What `mark_running_runs_interrupted` does, while running, for runs and locks of
        other owners that are gone (an instance died): each taken over by exactly one caller
        cluster-wide."""
        return await self._take_over(at_start=False)

    async def _take_over(self, *, at_start: bool) -> list[InterruptedRun]:
        now = to_text(self._clock())
        taken: list[DbRow] = []
        async with self._tx() as tx:
            # First, runs already interrupted whose settling process died before recording
            # what it did about the hosts (killed mid-restore): it held their lock until
            # then, so the lock is still there, its owner gone. Settled again, by exactly
            # one caller (compare-and-set on the lock's owner and lease). Looked at before
            # the running runs below, which this call itself turns into unsettled ones.
            resumed: set[str] = set()
            for row in await tx.fetch(
                "SELECT r.*, l.owner AS lock_owner, l.lease_until AS lock_until,"
                " (SELECT name FROM steps s WHERE s.run_id = r.id AND s.state = 'passed'"
                " ORDER BY s.idx DESC LIMIT 1) AS last_completed_step"
                " FROM runs r JOIN env_locks l ON l.run_id = r.id"
                " WHERE r.state = 'interrupted' AND r.restore IS NULL ORDER BY r.started_at"
            ):
                if not self._owner_gone(
                    row["lock_owner"], row["lock_until"], now, at_start=at_start
                ):
                    continue
                if await tx.execute(
                    "UPDATE env_locks SET owner = ?, lease_until = ? WHERE run_id = ?"
                    " AND COALESCE(owner, '') = ? AND COALESCE(lease_until, '') = ?",
                    (self.owner, self._row_lease(), row["id"], row["lock_owner"] or "",
                     row["lock_until"] or ""),
                ):  # fmt: skip
                    taken.append(row)
                    resumed.add(row["id"])
            for row in await tx.fetch(
                "SELECT r.*, (SELECT name FROM steps s WHERE s.run_id = r.id AND"
                " s.state = 'passed' ORDER BY s.idx DESC LIMIT 1) AS last_completed_step"
                " FROM runs r WHERE r.state = 'running' ORDER BY r.started_at"
            ):
                if not self._owner_gone(row["owner"], row["lease_until"], now, at_start=at_start):
                    continue
                # Compare-and-set on what was judged: of two instances taking over at once,
                # the second finds it interrupted (or its lease renewed) and skips it.
                if not await tx.execute(
                    "UPDATE runs SET state = 'interrupted', finished_at = ? WHERE id = ?"
                    " AND state = 'running' AND COALESCE(owner, '') = ?"
                    " AND COALESCE(lease_until, '') = ?",
                    (now, row["id"], row["owner"] or "", row["lease_until"] or ""),
                ):
                    continue
                taken.append(row)
                await tx.execute(
                    "UPDATE steps SET state = 'interrupted', finished_at = ? WHERE run_id = ?"
                    " AND state = 'running'",
                    (now, row["id"]),
                )
                await tx.execute(
                    "UPDATE requests SET state = 'interrupted' WHERE id = ? AND state = 'running'",
                    (row["request_id"],),
                )
                # The lock passes to this process: no other run may start on the hosts
                # until they are settled (restored or read); `release_lock` then frees it.
                await tx.execute(
                    "UPDATE env_locks SET owner = ?, lease_until = ? WHERE run_id = ?",
                    (self.owner, self._row_lease(), row["id"]),
                )
            held = {row["id"] for row in taken}
            for lock in await tx.fetch("SELECT * FROM env_locks"):
                if lock["run_id"] in held:
                    continue
                if self._owner_gone(lock["owner"], lock["lease_until"], now, at_start=at_start):
                    await tx.execute(
                        "DELETE FROM env_locks WHERE environment = ? AND run_id = ?"
                        " AND COALESCE(lease_until, '') = ?",
                        (lock["environment"], lock["run_id"], lock["lease_until"] or ""),
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
                owner=r["owner"],
                resumed=r["id"] in resumed,
            )
            for r in taken
        ]

    # --- leases ----------------------------------------------------------------------------

    async def renew_leases(self) -> int:
        """Extend the lease of everything this instance owns (running runs, environment
        locks, named leases); how many rows were renewed."""
        until = self._lease_end()
        renewed = 0
        async with self._tx() as tx:
            for table, where in (
                ("runs", " AND state = 'running'"), ("env_locks", ""), ("leases", ""),
                ("pending_finals", ""), ("bluegreen", " AND active = 1"),
            ):  # fmt: skip
                renewed += await tx.execute(
                    f"UPDATE {table} SET lease_until = ? WHERE owner = ?{where}",  # noqa: S608
                    (until, self.owner),
                )
        return renewed

    async def confirm_run_owner(self, run_id: str) -> bool:
        """Compare-and-set before a run's failure path touches a host: renew its lease iff
        this process still owns it and it is still `running`. False when another process
        took it over (its lease ran out while this one stalled): that one settles the
        hosts, and two restores must never race on them."""
        return (
            await self._write(
                "UPDATE runs SET lease_until = ? WHERE id = ? AND owner = ? AND state = 'running'",
                (self._row_lease(), run_id, self.owner),
            )
            == 1
        )

    async def hold_lease(self, name: str) -> bool:
        """Take or renew the named lease (e.g. "watch:Lab") for this instance: True while
        it is ours, False while another instance's lease on it runs."""
        now = to_text(self._clock())
        return (
            await self._write(
                "INSERT INTO leases (name, owner, since, lease_until) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner,"
                " lease_until = excluded.lease_until, since = CASE WHEN leases.owner ="
                " excluded.owner THEN leases.since ELSE excluded.since END"
                " WHERE leases.owner = excluded.owner OR leases.lease_until < ?",
                (name, self.owner, now, self._lease_end(), now),
            )
            == 1
        )

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

    async def _one(self, sql: str, *params: object) -> DbRow:
        row = await self._row(sql, params)
        assert row is not None
        return row

    # --- approvals whose process died before their run began ----------------------------

    def process_lease(self, owner: str | None = None) -> str:
        """The named lease a process holds while it lives (PostgreSQL: `renew_leases`)."""
        return f"process:{owner or self.owner}"

    async def orphaned_approvals(self, *, at_start: bool = False) -> list[Request]:
        """Requests approved by a process that is gone and never started: their run will
        not begin. A process is gone when its lock file here is free, or its process lease
        ran out (or it never had one); `at_start`, this instance's own past life (a restart
        under the same name) is gone too. Requests approved before owners were recorded
        count when decided more than a lease ago."""
        now = self._clock()
        rows = await self._rows(
            "SELECT q.*, l.lease_until AS process_until FROM requests q"
            " LEFT JOIN leases l ON l.name = 'process:' || q.approved_by_owner"
            " WHERE q.state = 'approved'"
            " AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.request_id = q.id)"
        )
        stale = to_text(now - timedelta(seconds=self.lease_s))
        found = []
        for row in rows:
            owner = row["approved_by_owner"]
            if owner is None:
                gone = row["decided_at"] is not None and row["decided_at"] < stale
            else:
                until = row["process_until"]
                gone = self._owner_gone(owner, until or "", to_text(now), at_start=at_start)
            if gone:
                found.append(from_row(Request, row))
        return found

    # --- final card states for Teams, kept until delivered ------------------------------

    async def keep_final(
        self,
        conversation_id: str,
        activity_id: str | None,
        text: str,
        card_json: str | None,
        message_key: str | None = None,
    ) -> int:
        """Keep a final card state this process is about to send; its id (`final_sent`
        drops it once Teams has it). An earlier kept state of the same message is dropped —
        the same Teams id, or the same `message_key` (the outbound queue's key of a post not
        delivered yet): the newest final state wins, as in the outbound queue, and a
        survivor never posts one message's finals as several new messages."""
        key = f"{self.owner}/{message_key}" if message_key is not None else None
        async with self._tx() as tx:
            await tx.execute(
                "DELETE FROM pending_finals WHERE conversation_id = ?"
                " AND (activity_id = ? OR message_key = ?)",
                (conversation_id, activity_id, key),
            )
            row = await tx.fetchone(
                "INSERT INTO pending_finals (conversation_id, activity_id, text, card_json,"
                " owner, lease_until, created_at, message_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " RETURNING id",
                (conversation_id, activity_id, text, card_json, self.owner, self._row_lease(),
                 to_text(self._clock()), key),
            )  # fmt: skip
        assert row is not None
        return int(row[0])

    async def final_sent(self, final_id: int) -> None:
        await self._write("DELETE FROM pending_finals WHERE id = ?", (final_id,))

    async def final_failed(self, final_id: int, max_attempts: int) -> PendingFinal | None:
        """The outbound queue gave up on a kept final state (Teams refused it, or retries
        ran out): count the attempt and release it — no owner, no lease — so the next
        `claim_orphaned_finals` anywhere (this process too) tries it again. After
        `max_attempts` it is dropped instead, and returned (to be logged)."""
        async with self._tx() as tx:
            row = await tx.fetchone(
                "UPDATE pending_finals SET attempts = attempts + 1, owner = '',"
                " lease_until = NULL WHERE id = ? RETURNING *",
                (final_id,),
            )
            if row is None or row["attempts"] < max_attempts:
                return None
            await tx.execute("DELETE FROM pending_finals WHERE id = ?", (final_id,))
        return _pending_final(row)

    async def claim_orphaned_finals(self) -> list[PendingFinal]:
        """The kept final states whose owner is gone, now this process's to deliver (each
        claimed by exactly one process: a compare-and-set on the owner and lease)."""
        now = to_text(self._clock())
        claimed: list[PendingFinal] = []
        async with self._tx() as tx:
            for row in await tx.fetch("SELECT * FROM pending_finals ORDER BY id"):
                if not self._owner_gone(row["owner"], row["lease_until"], now, at_start=False):
                    continue
                if await tx.execute(
                    "UPDATE pending_finals SET owner = ?, lease_until = ? WHERE id = ?"
                    " AND owner = ? AND COALESCE(lease_until, '') = ?",
                    (self.owner, self._row_lease(), row["id"], row["owner"],
                     row["lease_until"] or ""),
                ):  # fmt: skip
                    claimed.append(_pending_final(row))
        return claimed

    # --- notices for Teams, kept until delivered ------------------------------------------

    async def add_notice(self, environment: str, kind: str, text: str) -> int:
        """Keep a message for the environment's alert conversations; its id."""
        async with self._tx() as tx:
            row = await tx.fetchone(
                "INSERT INTO notices (environment, kind, text, created_at) VALUES (?, ?, ?, ?)"
                " RETURNING id",
                (environment, kind, text, to_text(self._clock())),
            )
        assert row is not None
        return int(row[0])

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
        async with self._tx() as tx:
            row = await tx.fetchone(
                f"SELECT delivered_to FROM notices WHERE id = ?{tx.for_update}",  # noqa: S608
                (notice_id,),
            )
            if row is None:
                return
            done = [*json.loads(row["delivered_to"]), conversation_id]
            await tx.execute(
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

    async def release_lease(self, name: str) -> bool:
        """Give the named lease up (a clean stop), so another instance need not wait."""
        return (
            await self._write("DELETE FROM leases WHERE name = ? AND owner = ?", (name, self.owner))
            == 1
        )

    async def lease_holder(self, name: str) -> tuple[str, datetime] | None:
        """(instance, until) of the named lease, expired or not; None if nobody took it."""
        row = await self._row("SELECT owner, lease_until FROM leases WHERE name = ?", (name,))
        return None if row is None else (row["owner"], from_text(row["lease_until"]))

    async def _insert(self, table: str, row: Request | Run) -> None:
        names = column_names(type(row))
        marks = ", ".join(["?"] * len(names))
        await self._db.write(
            f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})",  # noqa: S608
            [sql_value(v) for v in astuple(row)],
        )


# In order: an approval's place in its request (seq), then its time (rows from before seq
# had none).
_APPROVALS = (
    "SELECT approver_id, approver_name FROM approvals WHERE request_id = ?"
    " ORDER BY COALESCE(seq, 0), at, approver_id"
)


def _pending_final(row: DbRow) -> PendingFinal:
    return PendingFinal(
        row["id"], row["conversation_id"], row["activity_id"], row["text"], row["card_json"],
        row["owner"], row["attempts"],
    )  # fmt: skip


def _lock_result(row: DbRow, *, acquired: bool) -> LockResult:
    return LockResult(
        acquired=acquired,
        holder_run_id=row["run_id"],
        holder_name=row["holder_name"],
        since=from_text(row["since"]),
    )
