"""The store on both backends — SQLite and PostgreSQL (`store_target`) — schema versions,
history, locks, approvals, leases and restart safety; plus what only SQLite has (WAL, the
file's own version, a file that is not a database)."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from adapters.clock import ManualClock
from adapters.store import Request, Run, Store, StoreError, StoreVersionError
from adapters.store.schema import MIGRATIONS, Migration

T0 = datetime(2026, 11, 27, 8, 50, tzinfo=ZoneInfo("Asia/Seoul"))


@pytest.fixture
async def store(store_target: Path | str) -> AsyncIterator[Store]:
    async with await Store.open(store_target, clock=ManualClock(T0)) as s:
        yield s


def query(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Read the file through a separate plain sqlite3 connection, as another process would."""
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()


async def read(target: Path | str, sql: str) -> list[tuple[object, ...]]:
    """Read the database through a connection of its own, as another process would."""
    if isinstance(target, Path):
        return query(target, sql)
    import asyncpg

    conn = await asyncpg.connect(target)
    try:
        return [tuple(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


async def version_of(target: Path | str) -> int:
    if isinstance(target, Path):
        return int(query(target, "PRAGMA user_version")[0][0])  # type: ignore[call-overload]
    return int((await read(target, "SELECT MAX(version) FROM schema_version"))[0][0])  # type: ignore[call-overload]


async def tables_of(target: Path | str) -> set[str]:
    if isinstance(target, Path):
        rows = query(target, "SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        rows = await read(target, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {str(name) for (name,) in rows}


def pending(request_id: str = "q1", environment: str = "Lab") -> Request:
    return Request(
        id=request_id,
        environment=environment,
        command="rollback",
        version="1.4.1",
        current_version="1.4.2",
        plan_json='{"steps": []}',
        plan_hash="ab" * 32,
        requester_name="Kim",
        requester_id="0000-aaaa",
        conversation_id="conv-1",
        state="pending",
        created_at=T0,
        expires_at=T0 + timedelta(minutes=15),
    )


# --- opening and schema versions --------------------------------------------------------------


async def test_open_creates_directories_wal_and_the_current_version(tmp_path: Path) -> None:
    path = tmp_path / "var" / "deep" / "mcms-bot.db"
    async with await Store.open(path):
        pass
    assert query(path, "PRAGMA journal_mode") == [("wal",)]
    assert query(path, "PRAGMA user_version") == [(len(MIGRATIONS),)]


async def test_database_at_version_0_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE unrelated (x)")
    async with await Store.open(path):
        pass
    tables = {name for (name,) in query(path, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"requests", "runs", "steps", "deployments", "env_locks", "alerts"} <= tables
    assert query(path, "PRAGMA user_version") == [(len(MIGRATIONS),)]


async def test_every_migration_runs_on_an_empty_database(store_target: Path | str) -> None:
    """One history for both backends: all of MIGRATIONS apply, in order, on each."""
    async with await Store.open(store_target):
        pass
    assert await version_of(store_target) == len(MIGRATIONS)
    tables = await tables_of(store_target)
    assert {"requests", "runs", "steps", "env_locks", "alerts", "approvals", "leases"} <= tables


async def test_only_the_missing_migrations_run_in_order(store_target: Path | str) -> None:
    first = Migration(1, "a", ("CREATE TABLE a (x INTEGER)",))
    second = Migration(2, "b", ("CREATE TABLE b (x INTEGER)", "INSERT INTO a VALUES (2)"))
    async with await Store.open(store_target, migrations=[first]):
        pass
    # Re-running migration 1 would fail: table a exists.
    async with await Store.open(store_target, migrations=[first, second]):
        pass
    assert await version_of(store_target) == 2
    assert await read(store_target, "SELECT x FROM a") == [(2,)]


async def test_instances_starting_together_on_postgresql_migrate_once(pg_url: str) -> None:
    first = Migration(1, "a", ("CREATE TABLE a (x INTEGER)", "INSERT INTO a VALUES (1)"))
    stores = await asyncio.gather(
        *(Store.open(pg_url, migrations=[first]) for _ in range(4)), return_exceptions=True
    )
    for s in stores:
        if isinstance(s, Store):
            await s.close()
    assert all(isinstance(s, Store) for s in stores), stores
    assert await read(pg_url, "SELECT x FROM a") == [(1,)]


async def test_a_failing_migration_changes_nothing(store_target: Path | str) -> None:
    first = Migration(1, "a", ("CREATE TABLE a (x INTEGER)",))
    broken = Migration(2, "b", ("CREATE TABLE b (x INTEGER)", "INSERT INTO nowhere VALUES (1)"))
    async with await Store.open(store_target, migrations=[first]):
        pass
    with pytest.raises(StoreError, match="nowhere"):
        await Store.open(store_target, migrations=[first, broken])
    assert await version_of(store_target) == 1
    assert "b" not in await tables_of(store_target)


async def test_a_newer_postgresql_database_is_refused(pg_url: str) -> None:
    async with await Store.open(pg_url):
        pass
    await read(pg_url, "UPDATE schema_version SET version = 999")
    with pytest.raises(StoreVersionError, match=r"schema version 999.*Refusing to start"):
        await Store.open(pg_url)


async def test_an_unreachable_postgresql_is_a_clear_error_without_the_password() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: refused
        with pytest.raises(StoreError, match="cannot reach") as caught:
            await Store.open(f"postgresql://bot:s3cret@127.0.0.1:{port}/mcms")
    assert "s3cret" not in str(caught.value) and "bot:***@" in str(caught.value)


async def test_newer_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA user_version = 999")
    with pytest.raises(StoreVersionError, match=r"schema version 999.*Refusing to start"):
        await Store.open(path)
    assert query(path, "PRAGMA journal_mode") == [("delete",)]
    assert query(path, "PRAGMA user_version") == [(999,)]


async def test_a_file_that_is_not_sqlite_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "mcms-bot.db"
    path.write_bytes(b"this is not a database, just some text that is long enough" * 20)
    with pytest.raises(StoreError, match="cannot be used as the bot's database"):
        await Store.open(path)


# --- smoke and deployment history -------------------------------------------------------------


async def test_last_smoke_is_the_newest_with_its_results(store: Store) -> None:
    assert await store.last_smoke("Lab") is None
    await store.record_smoke("Lab", False, [{"name": "Health", "status": -1}], T0)
    await store.record_smoke("Lab", True, [{"name": "Health", "status": 200}], T0)
    await store.record_smoke("InternalProd", False, [], T0)
    smoke = await store.last_smoke("Lab")
    assert smoke is not None
    assert (smoke.passed, smoke.results, smoke.at) == (
        True,
        [{"name": "Health", "status": 200}],
        T0,
    )


async def test_times_are_stored_as_utc_text_and_returned_aware(
    store: Store, store_target: Path | str
) -> None:
    await store.record_smoke("Lab", True, [], T0)
    assert await read(store_target, "SELECT at FROM smoke_results") == [
        ("2026-11-26T23:50:00.000000+00:00",)
    ]
    smoke = await store.last_smoke("Lab")
    assert smoke is not None and smoke.at.utcoffset() == timedelta(0) and smoke.at == T0
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.record_smoke("Lab", True, [], datetime(2026, 1, 1))


async def test_history_is_newest_first_and_current_is_the_last_deployed(store: Store) -> None:
    for i, version in enumerate(["1.0.0", "1.1.0", "1.2.0"]):
        await store.record_deployment("Lab", version, f"{i}" * 64, T0 + timedelta(hours=i))
    await store.record_deployment("InternalProd", "0.9.0", "f" * 64, T0)
    history = await store.deployment_history("Lab", limit=2)
    assert [d.version for d in history] == ["1.2.0", "1.1.0"]
    current = await store.current_deployment("Lab")
    assert current is not None and current.version == "1.2.0" and current.stable is False
    assert await store.current_deployment("InternalStage") is None


async def test_previous_stable_skips_unstable_and_walks_back_after_a_rollback(
    store: Store,
) -> None:
    for version in ["1.0.0", "1.1.0", "1.2.0", "1.3.0"]:
        await store.record_deployment("Lab", version, "a" * 64, T0)
    for version in ["1.0.0", "1.1.0", "1.3.0"]:
        assert await store.mark_stable("Lab", version)
    assert not await store.mark_stable("Lab", "9.9.9")

    target = await store.previous_stable("Lab", "1.3.0")
    assert target is not None and target.version == "1.1.0"  # 1.2.0 never passed smoke
    await store.record_deployment("Lab", "1.1.0", "a" * 64, T0, stable=True)  # rolled back
    # Rolling back again goes further back, not forward to 1.3.0 which was just left.
    target = await store.previous_stable("Lab", "1.1.0")
    assert target is not None and target.version == "1.0.0"
    assert await store.previous_stable("Lab", "1.0.0") is None
    unknown = await store.previous_stable("Lab", "7.0.0")
    assert unknown is not None and unknown.version == "1.1.0"


# --- environment locks ------------------------------------------------------------------------


async def test_lock_is_a_value_naming_its_holder(store: Store) -> None:
    mine = await store.try_lock("Lab", "run-1", "Kim")
    assert mine.acquired and mine.holder_run_id == "run-1" and mine.since == T0
    theirs = await store.try_lock("Lab", "run-2", "Lee")
    assert not theirs.acquired
    assert (theirs.holder_run_id, theirs.holder_name, theirs.since) == ("run-1", "Kim", T0)
    assert (await store.try_lock("Lab", "run-1", "Kim")).acquired  # the holder asking again
    assert (await store.try_lock("InternalProd", "run-2", "Lee")).acquired
    assert not await store.release_lock("Lab", "run-2")
    holder = await store.lock_holder("Lab")
    assert holder is not None and holder.holder_run_id == "run-1"
    assert await store.release_lock("Lab", "run-1")
    assert await store.lock_holder("Lab") is None
    assert (await store.try_lock("Lab", "run-2", "Lee")).acquired


async def test_50_concurrent_lock_attempts_over_5_connections_one_wins(
    store_target: Path | str,
) -> None:
    stores = [await Store.open(store_target) for _ in range(5)]
    try:
        results = await asyncio.gather(
            *(stores[i % 5].try_lock("Lab", f"run-{i}", f"op{i}") for i in range(50))
        )
    finally:
        for s in stores:
            await s.close()
    winners = [r for r in results if r.acquired]
    assert len(winners) == 1
    assert {r.holder_run_id for r in results} == {winners[0].holder_run_id}


# --- conversation references ------------------------------------------------------------------


async def test_conversation_ref_is_saved_and_refreshed(store: Store) -> None:
    assert await store.get_conversation_ref("19:abc@thread.tacv2") is None
    await store.save_conversation_ref(
        "19:abc@thread.tacv2", '{"a": 1}', "channel", "https://old/", "tenant-1"
    )
    await store.save_conversation_ref(
        "19:abc@thread.tacv2", '{"a": 2}', "channel", "https://new/", "tenant-1"
    )
    ref = await store.get_conversation_ref("19:abc@thread.tacv2")
    assert ref is not None
    assert (ref.ref_json, ref.service_url, ref.kind, ref.tenant_id) == (
        '{"a": 2}',
        "https://new/",
        "channel",
        "tenant-1",
    )


@pytest.mark.parametrize("tenant", ["tenant-1", None], ids=["tenant", "no-tenant"])
async def test_an_unchanged_conversation_ref_is_left_alone_a_changed_one_refreshed(
    tmp_path: Path, tenant: str | None
) -> None:
    clock = ManualClock(T0)
    async with await Store.open(tmp_path / "s.db", clock=clock) as store:
        conversation = "19:abc@thread.tacv2"
        await store.save_conversation_ref(conversation, '{"a": 1}', "channel", "https://x/", tenant)
        clock.advance(timedelta(minutes=5))
        await store.save_conversation_ref(conversation, '{"a": 1}', "channel", "https://x/", tenant)
        unchanged = await store.get_conversation_ref(conversation)
        clock.advance(timedelta(minutes=5))
        await store.save_conversation_ref(conversation, '{"a": 1}', "channel", "https://y/", tenant)
        changed = await store.get_conversation_ref(conversation)

    assert unchanged is not None and unchanged.updated_at == T0
    assert changed is not None and changed.service_url == "https://y/"
    assert changed.updated_at == T0 + timedelta(minutes=10)


# --- requests, runs and restart safety --------------------------------------------------------


async def test_request_round_trips_and_transitions_once(store: Store) -> None:
    await store.create_request(pending())
    assert await store.get_request("q1") == pending()
    decided = T0 + timedelta(minutes=1)
    assert await store.transition_request(
        "q1",
        ["pending"],
        "approved",
        decided_by_name="Lee",
        decided_by_id="bbbb",
        decided_at=decided,
    )
    assert not await store.transition_request("q1", ["pending"], "rejected")
    assert not await store.transition_request("missing", ["pending"], "approved")
    request = await store.get_request("q1")
    assert request is not None
    assert (request.state, request.decided_by_name, request.decided_at) == (
        "approved",
        "Lee",
        decided,
    )


async def test_transition_refuses_unknown_states_and_columns(store: Store) -> None:
    await store.create_request(pending())
    with pytest.raises(ValueError, match="states"):
        await store.transition_request("q1", ["pending"], "approvedd")
    with pytest.raises(ValueError, match="fields"):
        await store.transition_request("q1", ["pending"], "approved", plan_hash="x")


async def test_50_concurrent_approvals_over_5_connections_one_wins(
    store_target: Path | str,
) -> None:
    stores = [await Store.open(store_target) for _ in range(5)]
    try:
        await stores[0].create_request(pending())
        results = await asyncio.gather(
            *(
                stores[i % 5].transition_request(
                    "q1", ["pending"], "approved", decided_by_name=f"op{i}"
                )
                for i in range(50)
            )
        )
        request = await stores[0].get_request("q1")
    finally:
        for s in stores:
            await s.close()
    assert results.count(True) == 1
    assert request is not None and request.decided_by_name == f"op{results.index(True)}"


async def test_a_request_gets_at_most_one_run(store: Store) -> None:
    await store.create_request(pending())
    assert await store.create_run(Run("run-1", "q1", "Lab", "running", T0))
    assert not await store.create_run(Run("run-2", "q1", "Lab", "running", T0))
    run = await store.run_for_request("q1")
    assert run is not None and run.id == "run-1"


async def test_restart_marks_running_runs_interrupted_and_frees_their_locks(
    store: Store, store_target: Path | str
) -> None:
    await store.create_request(pending("q1"))
    await store.create_request(pending("q2", environment="InternalStage"))
    assert await store.transition_request("q1", ["pending"], "running")
    await store.create_run(
        Run("run-1", "q1", "Lab", "running", T0, conversation_id="c", progress_activity_id="a")
    )
    await store.create_run(Run("run-2", "q2", "InternalStage", "succeeded", T0))
    await store.try_lock("Lab", "run-1", "Kim")
    await store.record_step("run-1", 0, "pre-check smoke", "passed", started_at=T0)
    await store.record_step("run-1", 1, "stop site", "passed", started_at=T0)
    await store.record_step("run-1", 2, "deploy package", "running", started_at=T0)

    interrupted = await store.mark_running_runs_interrupted()

    assert [(r.run_id, r.request_id, r.environment) for r in interrupted] == [
        ("run-1", "q1", "Lab")
    ]
    run = interrupted[0]
    assert (run.current_step, run.last_completed_step) == ("deploy package", "stop site")
    assert (run.conversation_id, run.progress_activity_id) == ("c", "a")
    # The lock stays with the run until the process settling its hosts releases it.
    held = await store.lock_holder("Lab")
    assert held is not None and held.holder_run_id == "run-1"
    assert await store.release_lock("Lab", "run-1")
    assert await store.lock_holder("Lab") is None
    request = await store.get_request("q1")
    assert request is not None and request.state == "interrupted"
    assert await read(store_target, "SELECT id, state FROM runs ORDER BY id") == [
        ("run-1", "interrupted"),
        ("run-2", "succeeded"),
    ]
    assert await read(store_target, "SELECT state FROM steps WHERE idx = 2") == [("interrupted",)]
    assert await store.mark_running_runs_interrupted() == []


async def test_datetimes_round_trip_in_utc(store: Store) -> None:
    """Aware times in any zone come back equal and in UTC."""
    at = datetime(2026, 3, 1, 1, 2, 3, 456789, tzinfo=UTC)
    await store.record_deployment("Lab", "1.0.0", "a" * 64, at.astimezone(ZoneInfo("Asia/Seoul")))
    current = await store.current_deployment("Lab")
    assert current is not None and current.deployed_at == at
    assert current.deployed_at.tzinfo is not None


async def test_smoke_results_older_than_the_retention_are_pruned(
    store_target: Path | str,
) -> None:
    async with await Store.open(store_target) as store:
        now = datetime(2026, 11, 27, tzinfo=UTC)
        await store.record_smoke("Lab", False, [], now - timedelta(days=20))
        await store.record_smoke("Lab", True, [], now - timedelta(days=1))
        assert await store.prune_smoke_results(now - timedelta(days=14)) == 1
        last = await store.last_smoke("Lab")
        assert last is not None and last.passed
        assert await store.prune_smoke_results(now - timedelta(days=14)) == 0


# --- approvals --------------------------------------------------------------------------------


async def test_the_nth_distinct_approval_approves_and_a_repeat_counts_once(store: Store) -> None:
    await store.create_request(dataclasses.replace(pending(), required_approvals=2))

    first = await store.add_approval("q1", "A-1", "Ann", T0, required=2)
    repeat = await store.add_approval("q1", "a-1", "Ann", T0, required=2)  # ids ignore case
    second = await store.add_approval("q1", "B-2", "Bob", T0, required=2)
    late = await store.add_approval("q1", "C-3", "Cid", T0, required=2)

    assert (first.recorded, first.state, first.count) == (True, "pending", 1)
    assert (repeat.recorded, repeat.count) == (False, 1)
    assert (second.recorded, second.state, second.names) == (True, "approved", ("Ann", "Bob"))
    assert (late.recorded, late.state) == (False, "approved")
    request = await store.get_request("q1")
    assert request is not None and request.approvers == "Ann, Bob"
    assert request.decided_by_name == "Bob" and not request.break_glass


async def test_a_break_glass_approval_needs_no_other(store: Store) -> None:
    await store.create_request(dataclasses.replace(pending(), required_approvals=2))

    tally = await store.add_approval("q1", "a", "Ann", T0, required=2, break_glass_reason="P1")

    request = await store.get_request("q1")
    assert tally.decided and request is not None
    assert (request.state, request.break_glass, request.reason) == ("approved", True, "P1")


async def test_concurrent_approvals_over_5_connections_approve_exactly_once(
    store_target: Path | str,
) -> None:
    stores = [await Store.open(store_target) for _ in range(5)]
    try:
        await stores[0].create_request(dataclasses.replace(pending(), required_approvals=3))
        tallies = await asyncio.gather(
            *(
                stores[i % 5].add_approval("q1", f"approver-{i % 4}", f"A{i % 4}", T0, required=3)
                for i in range(40)
            )
        )
    finally:
        for s in stores:
            await s.close()
    decided_now = [t for t in tallies if t.recorded and t.decided]
    assert len(decided_now) == 1 and decided_now[0].count == 3
    assert sum(t.recorded for t in tallies) == 3  # the 4th approver came too late
    assert await read(store_target, "SELECT state, approvers FROM requests") == [
        ("approved", ", ".join(decided_now[0].names))
    ]


# --- what issue 9 added: restore outcomes, pre-run state, per-host switches, run alerts ------


async def test_a_version_1_database_migrates_and_keeps_its_runs_and_alerts(
    tmp_path: Path,
) -> None:
    """Migration 2 is appended, never edited: a database made by the previous release opens,
    its rows intact, the new columns empty, one open smoke alert per environment still."""
    path = tmp_path / "old.db"
    async with await Store.open(path, migrations=MIGRATIONS[:1], clock=ManualClock(T0)) as old:
        assert await old.open_alert("A-1", "Lab", T0, T0, [])
    with closing(sqlite3.connect(path)) as conn, conn:
        # Rows as the previous release wrote them: only the columns of version 1.
        conn.execute(
            "INSERT INTO requests (id, environment, command, plan_json, plan_hash,"
            " requester_name, state, created_at) VALUES ('q1', 'Lab', 'rollback', '{}',"
            " 'h', 'Ann', 'failed', '2026-11-26T23:49:00.000000+00:00')"
        )
        conn.execute(
            "INSERT INTO runs (id, request_id, environment, state, started_at)"
            " VALUES ('run-1', 'q1', 'Lab', 'failed', '2026-11-26T23:50:00.000000+00:00')"
        )
    assert query(path, "PRAGMA user_version") == [(1,)]

    async with await Store.open(path, clock=ManualClock(T0)) as store:
        assert query(path, "PRAGMA user_version") == [(len(MIGRATIONS),)]
        run = await store.get_run("run-1")
        assert run is not None and (run.restore, run.pre_state_json) == (None, None)
        alert = await store.get_alert("A-1")
        assert alert is not None and (alert.kind, alert.run_id) == ("smoke", None)
        assert not await store.open_alert("A-2", "Lab", T0, T0, [])
        # A failed run's alert is its own, beside the open smoke incident.
        await store.open_run_alert("A-3", "Lab", "run-1", T0, {"priority": "P2"})
        assert [a.id for a in await store.open_run_alerts("Lab")] == ["A-3"]
        assert (await store.open_alert_for("Lab")).id == "A-1"  # type: ignore[union-attr]


async def test_a_run_ends_with_what_it_left_behind(store: Store) -> None:
    await store.create_request(pending())
    await store.create_run(Run("run-1", "q1", "Lab", "running", T0))
    await store.set_pre_state("run-1", '{"web01": {}}')
    with pytest.raises(ValueError, match="unknown restore outcome"):
        await store.finish_run("run-1", "failed", T0, restore="fine")
    assert await store.finish_run("run-1", "failed", T0, "boom", restore="restored")
    run = await store.get_run("run-1")
    assert run is not None and (run.restore, run.pre_state_json) == ("restored", '{"web01": {}}')
    assert not await store.finish_run("run-1", "succeeded", T0), "a run ends once"


async def test_switches_are_kept_per_host_and_a_restored_run_leaves_no_history(
    store: Store,
) -> None:
    from adapters.store.rows import HostSwitch

    await store.record_deployment("Lab", "1.4.2", "a" * 64, T0, stable=True)
    await store.record_deployment("Lab", "1.4.1", "b" * 64, T0, run_id="run-1")
    await store.record_switches(
        [
            HostSwitch("run-1", "Lab", "web01", "site", "Portal", "D:\\r\\1.4.2", "D:\\r\\1.4.1",
                       "switch", T0),
            HostSwitch("run-1", "Lab", "web02", "site", "Portal", "D:\\r\\1.4.2", "D:\\r\\1.4.1",
                       "switch", T0),
            HostSwitch("run-1", "Lab", "web01", "site", "Portal", "D:\\r\\1.4.1", "D:\\r\\1.4.2",
                       "restore", T0),
        ]
    )  # fmt: skip
    web01 = await store.host_switches("Lab", "web01")
    assert [(s.reason, s.after) for s in web01] == [("restore", "D:\\r\\1.4.2"),
                                                    ("switch", "D:\\r\\1.4.1")]  # fmt: skip
    assert web01[0].switched_at == T0
    assert len(await store.host_switches("Lab")) == 3

    assert await store.forget_deployment("Lab", "run-1") == 1
    current = await store.current_deployment("Lab")
    assert current is not None and current.version == "1.4.2"


# --- leases: two instances on one database ----------------------------------------------------


async def two_instances(target: Path | str, clock: ManualClock) -> tuple[Store, Store]:
    first = await Store.open(target, clock=clock, owner="bot-a", lease_s=15)
    second = await Store.open(target, clock=clock, owner="bot-b", lease_s=15)
    return first, second


async def running_on(
    store: Store, request_id: str = "q1", run_id: str = "run-1", environment: str = "Lab"
) -> None:
    await store.create_request(pending(request_id, environment))
    assert await store.transition_request(request_id, ["pending"], "running")
    assert await store.create_run(Run(run_id, request_id, environment, "running", T0))
    assert (await store.try_lock(environment, run_id, "Kim")).acquired
    await store.record_step(run_id, 0, "stop site", "running", started_at=T0)


async def test_a_live_instance_keeps_its_run_and_a_dead_ones_is_taken_over_once(
    pg_url: str,
) -> None:
    """Leases are PostgreSQL's (instances on other machines); SQLite's owners are judged by
    their lock files (test_owners.py)."""
    store_target = pg_url
    clock = ManualClock(T0)
    a, b = await two_instances(store_target, clock)
    c = await Store.open(store_target, clock=clock, owner="bot-c", lease_s=15)
    try:
        await running_on(a)
        clock.advance(timedelta(seconds=10))
        assert await a.renew_leases() == 2  # its run and its lock
        clock.advance(timedelta(seconds=10))  # 20 s after the start, 10 s after the renewal
        assert await b.take_over_expired_runs() == []
        assert await b.mark_running_runs_interrupted() == []  # b's start leaves a's run be
        run = await a.get_run("run-1")
        assert run is not None and run.state == "running" and run.owner == "bot-a"

        clock.advance(timedelta(seconds=6))  # a died after its renewal: the lease ran out
        taken = await asyncio.gather(b.take_over_expired_runs(), c.take_over_expired_runs())
        assert sorted(len(t) for t in taken) == [0, 1], "exactly one instance takes it over"
        (only,) = taken[0] or taken[1]
        assert (only.run_id, only.owner, only.current_step) == ("run-1", "bot-a", "stop site")
        # The lock passed to the instance that took the run over, under its own lease,
        # until it has settled the hosts.
        taker = b if taken[0] else c
        assert await read(store_target, "SELECT owner FROM env_locks") == [(taker.owner,)]
        assert await a.renew_leases() == 0, "a late renewal cannot bring the run back"
        assert await taker.release_lock("Lab", "run-1")
        assert await b.lock_holder("Lab") is None
        assert await read(store_target, "SELECT state FROM requests") == [("interrupted",)]
        assert await read(store_target, "SELECT state FROM steps") == [("interrupted",)]
        assert await a.renew_leases() == 0, "a late renewal cannot bring the run back"
    finally:
        for s in (a, b, c):
            await s.close()


async def test_a_restarted_instance_takes_its_own_runs_back_at_once(pg_url: str) -> None:
    store_target = pg_url
    clock = ManualClock(T0)
    a, b = await two_instances(store_target, clock)
    try:
        await running_on(a)
        await running_on(b, "q2", "run-2", "InternalStage")
        again = await Store.open(store_target, clock=clock, owner="bot-a", lease_s=15)
        interrupted = await again.mark_running_runs_interrupted()
        await again.close()
        assert [r.run_id for r in interrupted] == ["run-1"]
        run = await b.get_run("run-2")
        assert run is not None and run.state == "running"
        held = await b.lock_holder("Lab")
        assert held is not None and held.holder_run_id == "run-1", "until its hosts are settled"
        held = await b.lock_holder("InternalStage")
        assert held is not None and held.holder_run_id == "run-2"
    finally:
        await a.close()
        await b.close()


async def test_a_named_lease_has_one_holder_until_it_runs_out(store_target: Path | str) -> None:
    clock = ManualClock(T0)
    a, b = await two_instances(store_target, clock)
    try:
        results = await asyncio.gather(*(s.hold_lease("watch:Lab") for s in (a, b) * 5))
        assert results.count(True) in (1, 5) and len({r for r in results[::2]}) == 1
        holder = await a.lease_holder("watch:Lab")
        assert holder is not None
        first, second = (a, b) if holder[0] == "bot-a" else (b, a)
        clock.advance(timedelta(seconds=10))
        assert await first.renew_leases() == 1
        clock.advance(timedelta(seconds=10))
        assert not await second.hold_lease("watch:Lab"), "renewed: still the first's"
        clock.advance(timedelta(seconds=6))
        assert await second.hold_lease("watch:Lab"), "ran out: the second takes it"
        assert not await first.hold_lease("watch:Lab")
        assert not await first.release_lease("watch:Lab")
        assert await second.release_lease("watch:Lab")
        assert await first.hold_lease("watch:Lab"), "released: free at once"
    finally:
        await a.close()
        await b.close()


async def test_an_approval_another_instance_is_starting_is_not_taken_for_dead(
    store: Store,
) -> None:
    await store.create_request(pending())
    assert await store.transition_request("q1", ["pending"], "approved", decided_at=T0)
    assert await store.approved_without_run(decided_before=T0) == []
    late = await store.approved_without_run(decided_before=T0 + timedelta(seconds=1))
    assert [r.id for r in late] == ["q1"]
    assert [r.id for r in await store.approved_without_run()] == ["q1"]


async def test_only_the_owner_of_a_running_run_confirms_it_before_touching_hosts(
    store_target: Path | str,
) -> None:
    """The compare-and-set a run's failure path takes before it restores: the owner
    confirms its running run; another process, or the owner once the run was taken over,
    does not."""
    clock = ManualClock(T0)
    a, b = await two_instances(store_target, clock)
    try:
        await running_on(a)
        assert await a.confirm_run_owner("run-1")
        assert not await b.confirm_run_owner("run-1"), "not b's run"
        assert not await a.confirm_run_owner("run-nope")
        clock.advance(timedelta(seconds=20))  # a stalled past its lease (PostgreSQL)
        if isinstance(store_target, Path):
            taken = await b.mark_running_runs_interrupted()  # SQLite: a's files are gone
        else:
            taken = await b.take_over_expired_runs()
        assert [t.run_id for t in taken] == ["run-1"]
        assert not await a.confirm_run_owner("run-1"), "taken over: a must not restore"
        assert await read(store_target, "SELECT state FROM runs") == [("interrupted",)]
    finally:
        for s in (a, b):
            await s.close()


async def test_an_interrupted_run_whose_settler_died_before_recording_is_taken_again_once(
    store_target: Path | str,
) -> None:
    """Settling holds the run's lock until its restore outcome is recorded: a run left
    `interrupted` with no outcome, its lock's owner gone, is the next taker's (once); one
    whose settler lives, or that was settled, is not."""
    clock = ManualClock(T0)
    a, b = await two_instances(store_target, clock)
    c = await Store.open(store_target, clock=clock, owner="bot-c", lease_s=15)
    try:
        await running_on(a)
        clock.advance(timedelta(seconds=20))  # a died (PostgreSQL: its lease ran out)
        if isinstance(store_target, Path):
            (taken,) = await b.mark_running_runs_interrupted()
        else:
            (taken,) = await b.take_over_expired_runs()
        assert not taken.resumed
        # b settles it now: while b lives (renewing), nobody takes it from b.
        assert await b.renew_leases() == 1
        if not isinstance(store_target, Path):
            assert await c.take_over_expired_runs() == []
        # b dies mid-restore: its lock stays, the run has no outcome.
        clock.advance(timedelta(seconds=20))
        if isinstance(store_target, Path):
            again = [await c.mark_running_runs_interrupted(), []]
        else:
            again = list(
                await asyncio.gather(c.take_over_expired_runs(), a.take_over_expired_runs())
            )
        assert sorted(len(t) for t in again) == [0, 1], "exactly one takes it again"
        (resumed,) = again[0] or again[1]
        assert (resumed.run_id, resumed.resumed, resumed.current_step) == (
            "run-1",
            True,
            "stop site",
        )
        taker = c if again[0] else a
        assert await read(store_target, "SELECT owner FROM env_locks") == [(taker.owner,)]
        assert await taker.set_interrupted_restore("run-1", "restored", None)
        assert await taker.release_lock("Lab", "run-1")
        clock.advance(timedelta(seconds=20))
        for s in (a, b, c):
            assert await s.mark_running_runs_interrupted() == [], "settled: never again"
    finally:
        for s in (a, b, c):
            await s.close()
