"""Freezes: which environments an approver has locked against new rollbacks and deploys.

Invariant: one row per frozen environment. A freeze is never overwritten: freezing an
environment that is frozen already returns the standing freeze (who, since when, why), and
only `unfreeze` removes it. The history of freezes is the audit's and the timeline's.
"""

from __future__ import annotations

from datetime import datetime

from adapters.store.db import StoreBase
from adapters.store.rows import Freeze, from_row, to_text

_SELECT = "SELECT * FROM freezes WHERE environment = ?"


class FreezeStore(StoreBase):
    """The `freezes` table (module invariant)."""

    async def freeze_of(self, environment: str) -> Freeze | None:
        row = await self._row(_SELECT, (environment,))
        return from_row(Freeze, row) if row is not None else None

    async def freeze(
        self, environment: str, reason: str, by_name: str, by_id: str | None, at: datetime
    ) -> tuple[Freeze, bool]:
        """Freeze `environment`; (the freeze that stands, True when this call made it)."""
        async with self._tx() as tx:
            made = (
                await tx.execute(
                    "INSERT INTO freezes (environment, reason, frozen_by, frozen_by_id, since)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (environment) DO NOTHING",
                    (environment, reason, by_name, by_id, to_text(at)),
                )
                == 1
            )
            row = await tx.fetchone(_SELECT, (environment,))
        assert row is not None
        return from_row(Freeze, row), made

    async def unfreeze(self, environment: str) -> Freeze | None:
        """Lift the freeze of `environment`; the freeze lifted, or None when there was none."""
        async with self._tx() as tx:
            row = await tx.fetchone(_SELECT + tx.for_update, (environment,))
            if row is None:
                return None
            await tx.execute("DELETE FROM freezes WHERE environment = ?", (environment,))
        return from_row(Freeze, row)
