"""Blue/green flows: one row per `bluegreen PAIR VERSION`, and the pair lock it holds.

Invariants: at most one flow per pair is `active` (a partial unique index: the lock cannot
be taken twice, even by two processes); every state change is one conditional UPDATE from
the states it may leave, so a repeated click or a lost race changes nothing; the Switch back
of a flow is claimed once (`switchback_by`), and only while that flow is its pair's newest.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import astuple
from datetime import datetime

from adapters.store.db import ConflictError, StoreBase, sql_value
from adapters.store.rows import Flow, column_names, from_row, to_text
from adapters.store.schema import FLOW_STATES

# The flow still holds its pair in these states.
ACTIVE_FLOW_STATES = (
    "deploy-pending",
    "deploying",
    "gating",
    "switch-pending",
    "switching",
    "watching",
    "switching-back",
)


class FlowStore(StoreBase):
    """The `bluegreen` table (module invariants)."""

    async def create_flow(self, flow: Flow) -> Flow | None:
        """Insert an active flow; None (and nothing written) when its pair is held already."""
        names = column_names(Flow)
        marks = ", ".join(["?"] * len(names))
        try:
            await self._write(
                f"INSERT INTO bluegreen ({', '.join(names)}, owner, lease_until)"  # noqa: S608
                f" VALUES ({marks}, ?, ?)",
                [*(sql_value(v) for v in astuple(flow)), self.owner, self._row_lease()],
            )
        except ConflictError:
            return None
        return flow

    async def gone_flow_ids(self, *, at_start: bool) -> set[str]:
        """Active flows whose owner — the process that last moved them — is gone (a flow
        another live process is driving is not this one's to interrupt)."""
        now = to_text(self._clock())
        rows = await self._rows("SELECT id, owner, lease_until FROM bluegreen WHERE active = 1")
        return {
            r["id"]
            for r in rows
            if self._owner_gone(r["owner"], r["lease_until"], now, at_start=at_start)
        }

    async def take_over_gone_flows(self) -> list[str]:
        """While running: the active flows whose owner stopped renewing its lease (an
        instance died), now this process's to settle — each claimed by exactly one caller
        cluster-wide (a compare-and-set on the owner and lease that were judged gone). Their
        ids; this process owns them from here on and renews their lease."""
        now = to_text(self._clock())
        taken: list[str] = []
        async with self._tx() as tx:
            for row in await tx.fetch(
                "SELECT id, owner, lease_until FROM bluegreen WHERE active = 1 ORDER BY created_at"
            ):
                if not self._owner_gone(row["owner"], row["lease_until"], now, at_start=False):
                    continue
                if await tx.execute(
                    "UPDATE bluegreen SET owner = ?, lease_until = ? WHERE id = ? AND active = 1"
                    " AND COALESCE(owner, '') = ? AND COALESCE(lease_until, '') = ?",
                    (self.owner, self._row_lease(), row["id"], row["owner"] or "",
                     row["lease_until"] or ""),
                ):  # fmt: skip
                    taken.append(row["id"])
        return taken

    async def get_flow(self, flow_id: str) -> Flow | None:
        row = await self._row("SELECT * FROM bluegreen WHERE id = ?", (flow_id,))
        return None if row is None else from_row(Flow, row)

    async def active_flow(self, pair: str) -> Flow | None:
        """The flow holding `pair`, or None when the pair is free."""
        row = await self._row("SELECT * FROM bluegreen WHERE pair = ? AND active = 1", (pair,))
        return None if row is None else from_row(Flow, row)

    async def active_flows(self) -> list[Flow]:
        rows = await self._rows("SELECT * FROM bluegreen WHERE active = 1 ORDER BY created_at")
        return [from_row(Flow, r) for r in rows]

    async def latest_flow(self, pair: str) -> Flow | None:
        row = await self._row(
            "SELECT * FROM bluegreen WHERE pair = ? ORDER BY created_at DESC LIMIT 1", (pair,)
        )
        return None if row is None else from_row(Flow, row)

    async def flow_of_request(self, request_id: str) -> Flow | None:
        row = await self._row(
            "SELECT * FROM bluegreen WHERE deploy_request_id = ? OR switch_request_id = ?",
            (request_id, request_id),
        )
        return None if row is None else from_row(Flow, row)

    async def move_flow(
        self,
        flow_id: str,
        from_states: Collection[str],
        to_state: str,
        **fields: str | datetime | None,
    ) -> bool:
        """Move a flow out of one of `from_states`; the pair is released when `to_state` is
        not an active state. False (nothing written) when the flow was elsewhere."""
        if to_state not in FLOW_STATES:
            raise ValueError(f"unknown flow state {to_state!r}")
        # Whoever moves a flow drives it from here on: it owns it (and renews its lease).
        sets = ["state = ?", "active = ?", "updated_at = ?", "owner = ?", "lease_until = ?"]
        params: list[object] = [
            to_state, int(to_state in ACTIVE_FLOW_STATES), self._now(), self.owner,
            self._row_lease(),
        ]  # fmt: skip
        for name, value in fields.items():
            if name not in _SETTABLE:
                raise ValueError(f"flow field {name!r} cannot be set")
            sets.append(f"{name} = ?")
            params.append(sql_value(value))
        marks = ", ".join(["?"] * len(from_states))
        params += [flow_id, *from_states]
        try:
            changed = await self._write(
                f"UPDATE bluegreen SET {', '.join(sets)} WHERE id = ? AND state IN ({marks})",  # noqa: S608
                params,
            )
        except ConflictError:
            return False  # taking the pair again while another flow holds it
        return changed == 1

    async def set_flow(self, flow_id: str, **fields: str | datetime | None) -> None:
        """Record progress (the current step, gate results, the card's id) without a move."""
        sets, params = [], []
        for name, value in fields.items():
            if name not in _SETTABLE:
                raise ValueError(f"flow field {name!r} cannot be set")
            sets.append(f"{name} = ?")
            params.append(sql_value(value))
        await self._write(
            f"UPDATE bluegreen SET {', '.join(sets)}, updated_at = ? WHERE id = ?",  # noqa: S608
            [*params, self._now(), flow_id],
        )

    async def claim_switchback(
        self, flow_id: str, by: str, from_states: Collection[str], to_state: str
    ) -> bool:
        """Claim the flow's one Switch back for `by`: only once, only while the flow is in
        `from_states` and is its pair's newest flow; moves it to `to_state` (taking the pair
        again when that is active). False when any of that does not hold."""
        marks = ", ".join(["?"] * len(from_states))
        sql = (
            "UPDATE bluegreen SET switchback_by = ?, state = ?, active = ?, updated_at = ?,"  # noqa: S608
            " owner = ?, lease_until = ?"
            f" WHERE id = ? AND switchback_by IS NULL AND state IN ({marks})"
            " AND NOT EXISTS (SELECT 1 FROM bluegreen AS newer WHERE newer.pair ="
            " bluegreen.pair AND newer.created_at > bluegreen.created_at)"
        )
        params = [
            by, to_state, int(to_state in ACTIVE_FLOW_STATES), self._now(), self.owner,
            self._row_lease(), flow_id,
        ]  # fmt: skip
        try:
            changed = await self._write(sql, [*params, *from_states])
        except ConflictError:
            return False
        return changed == 1

    def _now(self) -> str:
        return to_text(self._clock())


_SETTABLE = frozenset(
    {
        "card_activity_id",
        "deploy_request_id",
        "switch_request_id",
        "gates_json",
        "step",
        "note",
        "switched_at",
        "watch_ends_at",
        "switchback_by",
        "from_version",
    }
)
