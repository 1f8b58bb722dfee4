"""What the approval flow and the executor read and write beyond the once-only decisions.

Invariant: the once-only transitions stay in store_runs (single statements); these are the
bookkeeping updates around them — card ids, a run's end, cancel requests, the expiry sweep.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from adapters.store.rows import HostSwitch, Request, Run, from_row, to_text
from adapters.store.runs import RunStore
from adapters.store.schema import RESTORE_OUTCOMES, RUN_STATES


class ExecStore(RunStore):
    async def set_card_activity(self, request_id: str, activity_id: str) -> None:
        """Remember the message that holds the approval card, so everyone's copy can be edited."""
        await self._write(
            "UPDATE requests SET card_activity_id = ? WHERE id = ?", (activity_id, request_id)
        )

    async def expired_pending(self, now: datetime) -> list[Request]:
        rows = await self._rows(
            "SELECT * FROM requests WHERE state = 'pending' AND expires_at IS NOT NULL"
            " AND expires_at <= ? ORDER BY expires_at",
            (to_text(now),),
        )
        return [from_row(Request, r) for r in rows]

    async def count_requests(self, state: str) -> int:
        row = await self._row("SELECT COUNT(*) AS n FROM requests WHERE state = ?", (state,))
        return int(row["n"]) if row else 0

    async def get_run(self, run_id: str) -> Run | None:
        row = await self._row("SELECT * FROM runs WHERE id = ?", (run_id,))
        return None if row is None else from_row(Run, row)

    async def run_for_request(self, request_id: str) -> Run | None:
        row = await self._row("SELECT * FROM runs WHERE request_id = ?", (request_id,))
        return None if row is None else from_row(Run, row)

    async def set_progress_activity(self, run_id: str, activity_id: str) -> None:
        await self._write(
            "UPDATE runs SET progress_activity_id = ? WHERE id = ?", (activity_id, run_id)
        )

    async def finish_run(
        self,
        run_id: str,
        state: str,
        at: datetime,
        error: str | None = None,
        *,
        restore: str | None = None,
        restore_note: str | None = None,
    ) -> bool:
        """End a running run (with what it left behind); False if it ended already."""
        if state not in RUN_STATES or state == "running":
            raise ValueError(f"a run cannot finish as {state!r}")
        if restore is not None and restore not in RESTORE_OUTCOMES:
            raise ValueError(f"unknown restore outcome {restore!r}")
        return (
            await self._write(
                "UPDATE runs SET state = ?, finished_at = ?, error = ?, restore = ?,"
                " restore_note = ? WHERE id = ? AND state = 'running'",
                (state, to_text(at), error, restore, restore_note, run_id),
            )
            == 1
        )

    async def set_interrupted_restore(
        self, run_id: str, restore: str, restore_note: str | None
    ) -> bool:
        """What settling an interrupted run did about its hosts (RESTORE_OUTCOMES)."""
        if restore not in RESTORE_OUTCOMES:
            raise ValueError(f"unknown restore outcome {restore!r}")
        return (
            await self._write(
                "UPDATE runs SET restore = ?, restore_note = ? WHERE id = ?"
                " AND state = 'interrupted'",
                (restore, restore_note, run_id),
            )
            == 1
        )

    async def set_pre_state(self, run_id: str, pre_state_json: str) -> None:
        """Keep each host's pre-run state (read by the preflight) with the run."""
        await self._write(
            "UPDATE runs SET pre_state_json = ? WHERE id = ?", (pre_state_json, run_id)
        )

    async def record_switches(self, switches: Sequence[HostSwitch]) -> None:
        """Append to the per-host history of what a run switched (or switched back)."""
        if not switches:
            return
        async with self._tx() as tx:
            await tx.executemany(
                "INSERT INTO host_switches (run_id, environment, host, kind, component, before,"
                " after, reason, switched_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (s.run_id, s.environment, s.host, s.kind, s.component, s.before, s.after,
                     s.reason, to_text(s.switched_at))
                    for s in switches
                ],
            )  # fmt: skip

    async def host_switches(
        self, environment: str, host: str | None = None, limit: int = 50
    ) -> list[HostSwitch]:
        """The per-host history of switches, newest first."""
        where, params = "environment = ?", [environment]
        if host is not None:
            where, params = where + " AND host = ?", [*params, host]
        rows = await self._rows(
            f"SELECT * FROM host_switches WHERE {where} ORDER BY id DESC LIMIT ?",  # noqa: S608
            (*params, limit),
        )
        return [from_row(HostSwitch, r) for r in rows]

    async def forget_deployment(self, environment: str, run_id: str) -> int:
        """Take back what a run wrote to the history (its target, never marked stable) once
        its restore put the previous release back: the history calls current what runs."""
        return await self._write(
            "DELETE FROM deployments WHERE environment = ? AND run_id = ? AND stable = 0",
            (environment, run_id),
        )

    async def request_cancel(self, run_id: str, by: str, at: datetime) -> bool:
        """Flag a running run for cancellation at its next step boundary (first flag wins)."""
        return (
            await self._write(
                "UPDATE runs SET cancel_requested_by = ?, cancel_requested_at = ?"
                " WHERE id = ? AND state = 'running' AND cancel_requested_by IS NULL",
                (by, to_text(at), run_id),
            )
            == 1
        )

    async def list_steps(self, run_id: str) -> list[tuple[int, str, int | None, str | None]]:
        """(index, state, duration_ms, error) of each recorded step, in order."""
        rows = await self._rows(
            "SELECT idx, state, duration_ms, error FROM steps WHERE run_id = ? ORDER BY idx",
            (run_id,),
        )
        return [(r["idx"], r["state"], r["duration_ms"], r["error"]) for r in rows]

    async def approved_without_run(self, decided_before: datetime | None = None) -> list[Request]:
        """Requests approved but never started (the process died in between); only those
        decided before `decided_before` when given (another live instance may be about to
        start a newer one)."""
        rows = await self._rows(
            "SELECT * FROM requests q WHERE q.state = 'approved'"
            " AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.request_id = q.id)"
            " AND (CAST(? AS TEXT) IS NULL OR q.decided_at < ?)",
            (None if decided_before is None else to_text(decided_before),) * 2,
        )
        return [from_row(Request, r) for r in rows]

    async def prune_smoke_results(self, before: datetime) -> int:
        """Delete smoke results older than `before` (the watcher writes one per run)."""
        return await self._write("DELETE FROM smoke_results WHERE at < ?", (to_text(before),))
