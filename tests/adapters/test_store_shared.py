"""What main's later features keep in the store — blue/green flows and their pair lock,
notices kept until Teams has them, a run's owner and a run's history — on both backends
(`store_target`), so neither drifts; and on SQLite, an owner judged by its lock file."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from adapters.clock import ManualClock
from adapters.store import Run, Store
from adapters.store.owners import OWNERS_DIR, ProcessMark
from adapters.store.rows import Flow
from tests.adapters.test_store import T0, pending, read


@pytest.fixture
async def store(store_target: Path | str) -> AsyncIterator[Store]:
    async with await Store.open(store_target, clock=ManualClock(T0)) as s:
        yield s


def flow(flow_id: str, pair: str = "Shop", state: str = "deploy-pending") -> Flow:
    return Flow(
        id=flow_id,
        pair=pair,
        version="2.0.0",
        from_slot="blue",
        to_slot="green",
        from_version="1.9.0",
        state=state,
        active=True,
        requester_name="Kim",
        requester_id="0000-aaaa",
        conversation_id="conv-1",
        card_activity_id=None,
        deploy_request_id=f"q-{flow_id}",
        switch_request_id=None,
        gates_json=None,
        step=None,
        note=None,
        switched_at=None,
        watch_ends_at=None,
        switchback_by=None,
        created_at=T0,
        updated_at=T0,
    )


# --- blue/green flows ------------------------------------------------------------------------


async def test_one_active_flow_per_pair_even_when_ten_start_at_once(
    store_target: Path | str,
) -> None:
    stores = [await Store.open(store_target, clock=ManualClock(T0)) for _ in range(2)]
    try:
        made = await asyncio.gather(*(stores[i % 2].create_flow(flow(f"f{i}")) for i in range(10)))
        assert sum(m is not None for m in made) == 1
        winner = next(m for m in made if m is not None)
        active = await stores[1].active_flow("Shop")
        assert active is not None and active.id == winner.id and active.active is True
        assert await stores[0].create_flow(flow("other", pair="Books")) is not None
        assert {f.pair for f in await stores[0].active_flows()} == {"Shop", "Books"}
    finally:
        for s in stores:
            await s.close()


async def test_a_flow_moves_once_and_frees_its_pair_when_it_ends(store: Store) -> None:
    assert await store.create_flow(flow("f1")) is not None
    moves = await asyncio.gather(
        *(store.move_flow("f1", ["deploy-pending"], "deploying") for _ in range(5))
    )
    assert moves.count(True) == 1
    assert not await store.move_flow("f1", ["deploy-pending"], "stopped")
    await store.set_flow("f1", step="deploy green", switched_at=T0 + timedelta(minutes=1))
    got = await store.get_flow("f1")
    assert got is not None and (got.state, got.step) == ("deploying", "deploy green")
    assert got.switched_at == T0 + timedelta(minutes=1)
    assert (await store.flow_of_request("q-f1")) == got

    assert await store.move_flow("f1", ["deploying"], "live")
    assert await store.active_flow("Shop") is None, "a live flow no longer holds its pair"
    assert await store.create_flow(flow("f2", state="deploy-pending")) is not None
    latest = await store.latest_flow("Shop")
    assert latest is not None and latest.id == "f2"
    # f1 is no longer its pair's newest flow: its Switch back cannot be claimed, and moving
    # it back to an active state is refused while f2 holds the pair.
    assert not await store.claim_switchback("f1", "Kim", ["live"], "switching-back")
    assert not await store.move_flow("f1", ["live"], "switching-back")


async def test_a_switch_back_is_claimed_once(store: Store) -> None:
    assert await store.create_flow(flow("f1")) is not None
    assert await store.move_flow("f1", ["deploy-pending"], "live")
    claims = await asyncio.gather(
        *(store.claim_switchback("f1", f"op{i}", ["live"], "switching-back") for i in range(6))
    )
    assert claims.count(True) == 1
    got = await store.get_flow("f1")
    assert got is not None and got.state == "switching-back" and got.active
    assert got.switchback_by is not None and got.switchback_by.startswith("op")


# --- notices ---------------------------------------------------------------------------------


async def test_a_notice_is_kept_until_every_conversation_has_it_and_closed_once(
    store: Store, store_target: Path | str
) -> None:
    first = await store.add_notice("Lab", "break-glass", "Kim ran rollback Lab from the CLI")
    second = await store.add_notice("Lab", "run-failed", "run-9 failed")
    assert second > first > 0, "ids number notices in order on both databases"
    pending_now = await store.undelivered_notices()
    assert [(n.id, n.kind, n.created_at) for n in pending_now] == [
        (first, "break-glass", T0),
        (second, "run-failed", T0),
    ]
    await asyncio.gather(
        store.notice_delivered(first, "conv-b"), store.notice_delivered(first, "conv-a")
    )
    await store.notice_delivered(first, "conv-a")
    (kept, _) = await store.undelivered_notices()
    assert kept.delivered_to == ("conv-a", "conv-b"), "both kept, none twice"
    closes = await asyncio.gather(*(store.close_notice(first) for _ in range(4)))
    assert closes.count(True) == 1
    assert [n.id for n in await store.undelivered_notices()] == [second]
    assert await read(store_target, "SELECT COUNT(*) FROM notices") == [(2,)]


# --- runs: owner and history -----------------------------------------------------------------


async def test_a_run_records_its_owner_and_the_history_lists_runs_newest_first(
    store_target: Path | str,
) -> None:
    clock = ManualClock(T0)
    async with await Store.open(store_target, clock=clock, owner="bot-a-1-ab") as store:
        for n in (1, 2, 3):
            await store.create_request(pending(f"q{n}"))
            at = T0 + timedelta(minutes=n)
            assert await store.create_run(Run(f"run-{n}", f"q{n}", "Lab", "running", at))
        await store.create_request(pending("q9", "InternalStage"))
        assert await store.create_run(Run("run-9", "q9", "InternalStage", "running", T0))
        runs = await store.runs_of("Lab", 2)
        assert [(run.id, request.id) for run, request in runs] == [
            ("run-3", "q3"),
            ("run-2", "q2"),
        ]
        assert {run.owner for run, _ in runs} == {"bot-a-1-ab"}
        leased = {run.lease_until for run, _ in runs}
        if store.dialect == "postgresql":
            assert leased == {T0 + timedelta(seconds=store.lease_s)}
        else:
            assert leased == {None}, "SQLite's owners are judged by their lock files"


async def test_on_sqlite_a_live_owners_run_is_kept_and_a_dead_ones_taken(tmp_path: Path) -> None:
    """One machine: the owner's lock file says at once whether it lives — the break-glass
    CLI's run survives the bot's start, a killed process's run does not."""
    path = tmp_path / "var" / "mcms-bot.db"
    live = ProcessMark(path, "cli")
    dead = ProcessMark(path, "bot")
    try:
        for name, mark in (("live", live), ("dead", dead)):
            async with await Store.open(path, clock=ManualClock(T0), owner=mark.token) as s:
                await s.create_request(pending(f"q-{name}", f"Env-{name}"))
                assert await s.transition_request(f"q-{name}", ["pending"], "running")
                assert await s.create_run(Run(f"run-{name}", f"q-{name}", f"Env-{name}",
                                              "running", T0))  # fmt: skip
                assert (await s.try_lock(f"Env-{name}", f"run-{name}", "Kim")).acquired
        # The dead one's process ends without cleaning up: its file stays, unlocked.
        dead_file = path.parent / OWNERS_DIR / f"{dead.token}.lock"
        fd = dead._fd
        assert fd is not None
        os.close(fd)
        dead._fd = None
        assert dead_file.exists()

        starting = ProcessMark(path, "bot")
        try:
            async with await Store.open(path, owner=starting.token) as bot:
                taken = await bot.mark_running_runs_interrupted()
                assert [(t.run_id, t.owner) for t in taken] == [("run-dead", dead.token)]
                kept = await bot.get_run("run-live")
                assert kept is not None and kept.state == "running"
                # The dead run's lock passes to the process settling its hosts, which
                # frees it once they are settled; the live one's stays its own.
                held = await bot.lock_holder("Env-dead")
                assert held is not None and held.holder_run_id == "run-dead"
                assert await read(path, "SELECT owner FROM env_locks ORDER BY environment") == [
                    (starting.token,),
                    (live.token,),
                ]
                assert await bot.release_lock("Env-dead", "run-dead")
                assert await bot.lock_holder("Env-live") is not None
        finally:
            starting.close()
        assert not dead_file.exists(), "the dead owner's stale file is cleared"
    finally:
        live.close()
        dead.close()


# --- approvals a dead instance never started (PostgreSQL: instances on other machines) -------


async def test_an_approval_is_orphaned_only_once_its_approvers_process_lease_ran_out(
    pg_url: str,
) -> None:
    clock = ManualClock(T0)
    a = await Store.open(pg_url, clock=clock, owner="bot-a-1-aa", lease_s=15)
    b = await Store.open(pg_url, clock=clock, owner="bot-b-2-bb", lease_s=15)
    try:
        assert await a.hold_lease(a.process_lease())
        for request_id in ("q1", "q2"):
            await a.create_request(pending(request_id, f"Env-{request_id}"))
            assert await a.transition_request(request_id, ["pending"], "approved", decided_at=T0)
        # q2's run began: it is the run's to settle, not an approval's.
        assert await a.create_run(Run("run-2", "q2", "Env-q2", "running", T0))
        assert await b.orphaned_approvals() == [], "a lives: its approvals are its own"
        assert await a.orphaned_approvals() == []

        clock.advance(timedelta(seconds=10))
        await a.renew_leases()
        clock.advance(timedelta(seconds=10))
        assert await b.orphaned_approvals() == [], "renewed: still alive"

        clock.advance(timedelta(seconds=6))  # a died after its renewal
        (orphan,) = await b.orphaned_approvals()
        assert orphan.id == "q1"
        moved = await asyncio.gather(
            *(s.transition_request("q1", ["approved"], "interrupted") for s in (a, b, b))
        )
        assert moved.count(True) == 1
        assert await b.orphaned_approvals() == []
    finally:
        await a.close()
        await b.close()


async def test_a_flow_driven_by_a_live_process_is_not_another_ones_to_interrupt(
    pg_url: str,
) -> None:
    clock = ManualClock(T0)
    a = await Store.open(pg_url, clock=clock, owner="bot-a-1-aa", lease_s=15)
    b = await Store.open(pg_url, clock=clock, owner="bot-b-2-bb", lease_s=15)
    try:
        assert await a.create_flow(flow("f1")) is not None
        assert await b.gone_flow_ids(at_start=True) == set(), "a drives it and lives"
        clock.advance(timedelta(seconds=10))
        assert await a.move_flow("f1", ["deploy-pending"], "gating")
        clock.advance(timedelta(seconds=10))
        assert await b.gone_flow_ids(at_start=True) == set(), "moving it renewed the lease"
        clock.advance(timedelta(seconds=10))
        await a.renew_leases()
        clock.advance(timedelta(seconds=16))  # a died after its renewal
        assert await b.gone_flow_ids(at_start=True) == {"f1"}
        # b drives it now (the Switch back clicked on b): it is b's.
        assert await b.move_flow("f1", ["gating"], "switch-pending")
        assert await a.gone_flow_ids(at_start=False) == set()
    finally:
        await a.close()
        await b.close()


async def test_a_dead_owners_flow_is_taken_over_by_exactly_one_live_instance(
    store_target: Path | str, tmp_path: Path
) -> None:
    """The lease loop's takeover: of instances claiming at once, one gets the flow; once
    claimed it is that live instance's, and nobody takes it again (nor a live one's flow)."""
    clock = ManualClock(T0)
    # Live instances: their lock files (SQLite, one machine) and their leases (PostgreSQL).
    where = store_target if isinstance(store_target, Path) else tmp_path / "marks" / "db"
    where.parent.mkdir(parents=True, exist_ok=True)
    marks = [ProcessMark(where, "bot") for _ in range(2)]
    dead = await Store.open(store_target, clock=clock, owner="bot-dead-0-00", lease_s=15)
    a, b = [
        await Store.open(store_target, clock=clock, owner=m.token, marks=where, lease_s=15)
        for m in marks
    ]
    try:
        assert await dead.create_flow(flow("f1")) is not None
        assert await a.create_flow(flow("f2", pair="Other")) is not None
        await dead.close()
        if isinstance(store_target, str):
            assert await b.take_over_gone_flows() == [], "the lease still runs"
            clock.advance(timedelta(seconds=16))  # the dead one stopped renewing
            await a.renew_leases()
        claims = await asyncio.gather(
            *(s.take_over_gone_flows() for s in (a, b, a, b, b))
        )  # fmt: skip
        assert sorted(c for claim in claims for c in claim) == ["f1"], claims
        taker, other = (a, b) if ["f1"] in claims[0::2] else (b, a)
        assert await other.take_over_gone_flows() == [], "the taker lives: it is its own"
        assert await taker.take_over_gone_flows() == []
        if isinstance(store_target, str):
            clock.advance(timedelta(seconds=10))
            await a.renew_leases()
            await b.renew_leases()
            clock.advance(timedelta(seconds=10))
            assert await other.take_over_gone_flows() == [], "renewed by its taker"
        f1 = await taker.get_flow("f1")
        assert f1 is not None and f1.state == "deploy-pending" and f1.active
    finally:
        await a.close()
        await b.close()
        for m in marks:
            m.close()


# --- pending finals ------------------------------------------------------------------------


async def test_only_the_newest_final_of_a_message_is_kept_even_before_teams_gave_it_an_id(
    store: Store, store_target: Path | str
) -> None:
    """A message whose post has not reached Teams has no Teams id yet: its finals are told
    apart by the queue's key, so a survivor would post it once, not once per final."""
    await store.keep_final("conv-1", None, "run-1: failed", None, message_key="queued:5")
    await store.keep_final("conv-1", None, "run-1: restored", None, message_key="queued:5")
    await store.keep_final("conv-1", None, "run-2: succeeded", None, message_key="queued:6")
    # The post reached Teams meanwhile: its next final names both the id and the key.
    await store.keep_final("conv-1", "teams-7", "run-1: closed", None, message_key="queued:5")
    rows = await read(store_target, "SELECT text FROM pending_finals ORDER BY id")
    assert rows == [("run-2: succeeded",), ("run-1: closed",)]


async def test_a_final_the_queue_gave_up_on_is_released_for_a_retry_and_dropped_at_last(
    store_target: Path | str, tmp_path: Path
) -> None:
    """The keeper lives on: without the release it would renew the row's lease forever and
    nobody — not even itself — would try it again."""
    where = store_target if isinstance(store_target, Path) else tmp_path / "marks" / "db"
    where.parent.mkdir(parents=True, exist_ok=True)
    clock = ManualClock(T0)
    mark = ProcessMark(where, "bot")
    keeper = await Store.open(store_target, clock=clock, owner=mark.token, marks=where)
    try:
        kept = await keeper.keep_final("conv-1", "teams-1", "run-1: succeeded", "{}")
        assert await keeper.claim_orphaned_finals() == [], "its keeper lives"
        assert await keeper.final_failed(kept, max_attempts=3) is None
        await keeper.renew_leases()
        (again,) = await keeper.claim_orphaned_finals()  # the next pass, this process too
        assert (again.id, again.text, again.attempts) == (kept, "run-1: succeeded", 1)
        assert await keeper.claim_orphaned_finals() == [], "claimed once"
        assert await keeper.final_failed(kept, max_attempts=3) is None
        assert [f.attempts for f in await keeper.claim_orphaned_finals()] == [2]
        dropped = await keeper.final_failed(kept, max_attempts=3)
        assert dropped is not None and (dropped.text, dropped.attempts) == ("run-1: succeeded", 3)
        assert await read(store_target, "SELECT * FROM pending_finals") == []
        assert await keeper.claim_orphaned_finals() == []
    finally:
        await keeper.close()
        mark.close()


# --- freezes ---------------------------------------------------------------------------------


async def test_a_freeze_is_never_overwritten_and_lifted_once(store: Store) -> None:
    made = await asyncio.gather(
        store.freeze("Lab", "incident 42", "Kim", "0000-aaaa", T0),
        store.freeze("Lab", "other", "Lee", None, T0 + timedelta(minutes=1)),
    )
    assert sorted(m for _, m in made) == [False, True]
    standing = await store.freeze_of("Lab")
    assert standing is not None and {standing.reason} == {f.reason for f, _ in made}
    lifted = await asyncio.gather(store.unfreeze("Lab"), store.unfreeze("Lab"))
    assert sum(f is not None for f in lifted) == 1
    assert await store.freeze_of("Lab") is None
