"""The store's pair_live table: since when a pair's live slot is live, as the bot knows it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from adapters.store import Store
from adapters.store.pairs import PairLive
from adapters.store.schema import MIGRATIONS

T0 = datetime(2025, 9, 29, 2, 45, tzinfo=UTC)


async def test_an_observed_live_slot_keeps_its_first_time_until_another_slot_is_live(
    store_target: Path | str,
) -> None:
    async with await Store.open(store_target) as store:
        assert await store.pair_live("prod") is None
        first = await store.observe_live_slot("prod", "InternalProd", T0)
        again = await store.observe_live_slot("prod", "InternalProd", T0 + timedelta(hours=1))
        other = await store.observe_live_slot("prod", "InternalStage", T0 + timedelta(hours=2))

        assert first == again == PairLive("prod", "InternalProd", T0, "observed")
        assert other == PairLive("prod", "InternalStage", T0 + timedelta(hours=2), "observed")
        assert await store.pair_live("prod") == other


async def test_a_switch_made_by_the_bot_is_kept_as_such(store_target: Path | str) -> None:
    async with await Store.open(store_target) as store:
        await store.observe_live_slot("prod", "InternalProd", T0)
        await store.record_switch("prod", "InternalStage", T0 + timedelta(minutes=5))
        seen = await store.observe_live_slot("prod", "InternalStage", T0 + timedelta(hours=1))
        assert seen == PairLive("prod", "InternalStage", T0 + timedelta(minutes=5), "switch")


async def test_a_database_of_the_previous_version_gains_the_table(
    store_target: Path | str,
) -> None:
    path = store_target
    async with await Store.open(path, migrations=MIGRATIONS[:1]):
        pass
    async with await Store.open(path) as store:
        await store.record_switch("prod", "InternalStage", T0)
        assert (await store.pair_live("prod")) == PairLive("prod", "InternalStage", T0, "switch")
