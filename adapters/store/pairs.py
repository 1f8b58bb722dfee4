"""Since when a pair's live slot has been live, as far as the bot knows.

The live slot itself is always read from the router; this only keeps the time it became
live. Invariant: one row per pair. A switch the bot made writes its own time (`switch`);
a live slot the bot finds that differs from the row (a switch made outside the bot, or the
first look) is written with the time it was first seen (`observed`) — an upper bound, and
said so wherever it is shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from adapters.store.db import StoreBase
from adapters.store.rows import from_text, to_text

LiveSource = Literal["switch", "observed"]


@dataclass(frozen=True)
class PairLive:
    pair: str
    live_slot: str
    since: datetime
    source: LiveSource


class PairStore(StoreBase):
    """The `pair_live` table (module invariants)."""

    async def pair_live(self, pair: str) -> PairLive | None:
        row = await self._row("SELECT * FROM pair_live WHERE pair = ?", (pair,))
        if row is None:
            return None
        source: LiveSource = "switch" if row["source"] == "switch" else "observed"
        return PairLive(row["pair"], row["live_slot"], from_text(row["since"]), source)

    async def observe_live_slot(self, pair: str, slot: str, at: datetime) -> PairLive:
        """The record of `slot` live in `pair`: kept if it says so already, else begun at `at`."""
        async with self._tx() as tx:
            row = await tx.fetchone(
                "SELECT * FROM pair_live WHERE pair = ?"  # noqa: S608
                + tx.for_update,
                (pair,),
            )
            if row is not None and row["live_slot"] == slot:
                source: LiveSource = "switch" if row["source"] == "switch" else "observed"
                return PairLive(pair, slot, from_text(row["since"]), source)
            await tx.execute(_UPSERT, (pair, slot, to_text(at), "observed", to_text(at)))
        return PairLive(pair, slot, at, "observed")

    async def record_switch(self, pair: str, slot: str, at: datetime) -> None:
        """The bot switched `pair` to `slot` at `at` (after reading the farm back)."""
        await self._write(_UPSERT, (pair, slot, to_text(at), "switch", to_text(self._clock())))


_UPSERT = (
    "INSERT INTO pair_live (pair, live_slot, since, source, updated_at) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (pair) DO UPDATE SET live_slot = excluded.live_slot, since = excluded.since,"
    " source = excluded.source, updated_at = excluded.updated_at"
)
