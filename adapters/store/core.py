"""The bot's state in SQLite (aiosqlite, the default) or PostgreSQL (asyncpg, for two or more
instances): history, smoke, conversations — and, through RunStore (runs.py), locks,
approvals, runs and steps.

Invariants: the schema is migrated to the version this code knows before any query, and a
newer database is refused (schema.py); once-only decisions are atomic in SQL (runs.py);
one SQLite Store runs one operation at a time (db.py).
WAL lets readers (status, metrics) run beside the writer; `synchronous=FULL` makes each
commit durable — a lost "approved" or "running" after a power cut could run a rollback
twice or leave a lock held, and at a few writes per minute the extra fsync costs nothing.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiosqlite

from adapters.clock import Clock, utc_now
from adapters.store.bookkeeping import ExecStore
from adapters.store.db import Database, PostgresDatabase, SqliteDatabase
from adapters.store.flows import FlowStore
from adapters.store.freezes import FreezeStore
from adapters.store.pairs import PairStore
from adapters.store.rows import (
    ConversationRef,
    Deployment,
    SmokeRecord,
    from_row,
    from_text,
    to_text,
)
from adapters.store.schema import (
    MIGRATIONS,
    Migration,
    StoreError,
    migrate,
    refuse_newer,
)
from adapters.store.watch import WatchStore

BUSY_TIMEOUT_MS = 5000
# Connections one PostgreSQL instance keeps: the executor, the watcher and the clicks at once.
POOL_SIZE = 8

_DEPLOYMENT = "SELECT * FROM deployments WHERE environment = ?"


def _postgres_error() -> type[Exception]:
    """asyncpg's base error, or one nothing raises when asyncpg was never loaded."""
    import sys

    asyncpg = sys.modules.get("asyncpg")
    return asyncpg.PostgresError if asyncpg is not None else _NeverRaised


class _NeverRaised(Exception):
    pass


def is_postgres_url(where: str) -> bool:
    return where.startswith(("postgresql://", "postgres://"))


def without_password(url: str) -> str:
    """The URL for messages and logs: its password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


async def _open_sqlite(path: Path, migrations: Sequence[Migration]) -> Database:
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: autocommit; transactions are explicit BEGIN IMMEDIATE.
    conn = await aiosqlite.connect(path, isolation_level=None)
    db = SqliteDatabase(conn, str(path))
    try:
        conn.row_factory = sqlite3.Row
        await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        await conn.execute("PRAGMA foreign_keys = ON")
        await refuse_newer(db, migrations)  # before WAL: leave it untouched
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA synchronous = FULL")
    except StoreError:
        await conn.close()
        raise
    except sqlite3.DatabaseError as exc:
        await conn.close()
        raise StoreError(
            f"{path} cannot be used as the bot's database ({exc}); "
            "check paths.database, or move the file away to start fresh"
        ) from exc
    return db


async def _open_postgres(url: str) -> Database:
    import asyncpg

    shown = without_password(url)
    try:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=POOL_SIZE, timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StoreError(
            f"cannot reach the bot's PostgreSQL database {shown} ({exc}); check [store] url, "
            "that the server runs and accepts this user (password: PGPASSWORD or ~/.pgpass)"
        ) from exc
    return PostgresDatabase(pool, shown)


class Store(ExecStore, WatchStore, PairStore, FlowStore, FreezeStore):
    """One connection to the state database; open with `await Store.open(path)`."""

    @classmethod
    async def open(
        cls,
        where: Path | str,
        *,
        clock: Clock = utc_now,
        migrations: Sequence[Migration] = MIGRATIONS,
        owner: str = "local",
        marks: Path | None = None,
        lease_s: float = 15.0,
    ) -> Store:
        """Open a SQLite file (a Path) or a PostgreSQL database (a `postgresql://` URL),
        migrate it; StoreError if unusable. `owner` is this process's token among those
        sharing the database (adapters/store/owners.py); `marks` the database path whose
        `owners/` directory holds this machine's owner lock files (a SQLite file's own path
        when not given); `lease_s` is how long its runs, locks and leases stay its own
        without renewal on PostgreSQL (`renew_leases`)."""
        if isinstance(where, str) and is_postgres_url(where):
            db: Database = await _open_postgres(where)
        else:
            db = await _open_sqlite(Path(where), migrations)
            marks = marks or Path(where)
        try:
            await migrate(db, migrations)
        except (sqlite3.DatabaseError, _postgres_error()) as exc:
            await db.close()
            raise StoreError(
                f"{where} cannot be used as the bot's database ({exc}); "
                "check paths.database, or move the file away to start fresh"
            ) from exc
        except BaseException:
            await db.close()
            raise
        return cls(db, clock, owner=owner, marks=marks, lease_s=lease_s)

    # --- smoke -----------------------------------------------------------------------------

    async def record_smoke(
        self,
        environment: str,
        passed: bool,
        results: Sequence[Mapping[str, object]],
        at: datetime,
        run_id: str | None = None,
    ) -> None:
        """Remember one smoke outcome (the watcher's and the runs' alike)."""
        await self._write(
            "INSERT INTO smoke_results (environment, at, passed, results_json, run_id)"
            " VALUES (?, ?, ?, ?, ?)",
            (environment, to_text(at), int(passed), json.dumps(list(results)), run_id),
        )

    async def last_smoke(self, environment: str) -> SmokeRecord | None:
        row = await self._row(
            "SELECT * FROM smoke_results WHERE environment = ? ORDER BY id DESC LIMIT 1",
            (environment,),
        )
        if row is None:
            return None
        return SmokeRecord(
            environment=row["environment"],
            passed=bool(row["passed"]),
            results=json.loads(row["results_json"]),
            at=from_text(row["at"]),
        )

    # --- deployment history ----------------------------------------------------------------

    async def record_deployment(
        self,
        environment: str,
        version: str,
        sha256: str,
        at: datetime,
        stable: bool = False,
        run_id: str | None = None,
    ) -> Deployment:
        """Append to the history: `version` is now current in `environment`."""
        row = await self._row(
            "INSERT INTO deployments (environment, version, sha256, deployed_at, stable,"
            " stable_at, run_id) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING *",
            (environment, version, sha256, to_text(at), int(stable),
             to_text(at) if stable else None, run_id),
        )  # fmt: skip
        assert row is not None
        return from_row(Deployment, row)

    async def mark_stable(self, environment: str, version: str, at: datetime | None = None) -> bool:
        """Mark the newest deployment of `version` stable; False if it was never deployed."""
        return (
            await self._write(
                "UPDATE deployments SET stable = 1, stable_at = ? WHERE id = (SELECT MAX(id)"
                " FROM deployments WHERE environment = ? AND version = ?)",
                (to_text(at or self._clock()), environment, version),
            )
            == 1
        )

    async def current_deployment(self, environment: str) -> Deployment | None:
        row = await self._row(_DEPLOYMENT + " ORDER BY id DESC LIMIT 1", (environment,))
        return None if row is None else from_row(Deployment, row)

    async def deployment_history(self, environment: str, limit: int = 20) -> list[Deployment]:
        """Newest first."""
        rows = await self._rows(_DEPLOYMENT + " ORDER BY id DESC LIMIT ?", (environment, limit))
        return [from_row(Deployment, r) for r in rows]

    async def previous_stable(self, environment: str, before_version: str) -> Deployment | None:
        """The rollback target: the newest stable deployment of another version made before
        `before_version` was FIRST deployed (so rolling back twice walks further back instead
        of returning to the version just rolled away from); any stable other version when
        `before_version` is not in the history."""
        row = await self._row(
            "SELECT * FROM deployments WHERE environment = ? AND stable = 1 AND version != ?"
            " AND id < COALESCE((SELECT MIN(id) FROM deployments WHERE environment = ?"
            " AND version = ?), 9223372036854775807) ORDER BY id DESC LIMIT 1",
            (environment, before_version, environment, before_version),
        )
        return None if row is None else from_row(Deployment, row)

    # --- conversation references -----------------------------------------------------------

    async def save_conversation_ref(
        self,
        conversation_id: str,
        ref_json: str,
        kind: str,
        service_url: str,
        tenant_id: str | None,
    ) -> None:
        """Insert or refresh the reference (service URLs change; the newest one wins).

        Every message brings its conversation's reference, nearly always the one stored: an
        unchanged row is left alone (`updated_at` is when it last changed), which spares a
        synchronous commit per message.
        """
        await self._write(
            "INSERT INTO conversation_refs VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (conversation_id) DO UPDATE SET ref_json = excluded.ref_json,"
            " kind = excluded.kind, service_url = excluded.service_url,"
            " tenant_id = excluded.tenant_id, updated_at = excluded.updated_at"
            # Spelled for both databases (SQLite's row-value IS NOT is not PostgreSQL's);
            # a tenant id is never empty, so '' stands for none.
            " WHERE NOT (conversation_refs.ref_json = excluded.ref_json"
            " AND conversation_refs.kind = excluded.kind"
            " AND conversation_refs.service_url = excluded.service_url"
            " AND COALESCE(conversation_refs.tenant_id, '') = COALESCE(excluded.tenant_id, ''))",
            (conversation_id, ref_json, kind, service_url, tenant_id, to_text(self._clock())),
        )

    async def get_conversation_ref(self, conversation_id: str) -> ConversationRef | None:
        row = await self._row(
            "SELECT * FROM conversation_refs WHERE conversation_id = ?", (conversation_id,)
        )
        return None if row is None else from_row(ConversationRef, row)
