"""The connection under the Store: one SQL dialect, two databases — SQLite (aiosqlite, one
connection) and PostgreSQL (asyncpg, a pool) — behind the same four calls.

The queries are written once, in the SQL both understand, with `?` placeholders; the
PostgreSQL side numbers them (`$1`, `$2`…). Rows read like `sqlite3.Row` on both sides
(`row["name"]`, `row[0]`).

Invariants: on SQLite every statement and transaction runs under one asyncio lock, because
a single connection cannot interleave two transactions (a second BEGIN inside the first
fails, and a stray statement would commit or roll back with someone else's transaction); a
transaction is BEGIN IMMEDIATE, so it holds the database's write lock from its first read.
On PostgreSQL each transaction has its own pooled connection; a read that a decision rests
on takes its row with `FOR UPDATE` (`Tx.for_update`), so READ COMMITTED serialises the
deciders the way SQLite's write lock does.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, Self

from adapters.clock import Clock
from adapters.store.owners import owner_state
from adapters.store.rows import DbRow as Row
from adapters.store.rows import to_text

if TYPE_CHECKING:
    import aiosqlite
    import asyncpg


def sql_value(value: object) -> object:
    if isinstance(value, datetime):
        return to_text(value)
    if isinstance(value, bool):
        return int(value)
    return value


class ConflictError(Exception):
    """A write broke a uniqueness rule (a second run of a request, a second open alert)."""


class Tx(Protocol):
    """One transaction: statements run in it commit together or not at all."""

    # " FOR UPDATE" on PostgreSQL, "" on SQLite (whose transaction holds the write lock).
    for_update: str

    async def execute(self, sql: str, params: Sequence[object] = ()) -> int: ...

    async def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None: ...

    async def fetch(self, sql: str, params: Sequence[object] = ()) -> list[Row]: ...

    async def fetchone(self, sql: str, params: Sequence[object] = ()) -> Row | None: ...


class Database(Protocol):
    """What the Store needs of a database; `dialect` is "sqlite" or "postgresql"."""

    dialect: str
    # Where it is, for messages: a file path, or the URL without its password.
    where: str

    async def write(self, sql: str, params: Sequence[object] = ()) -> int: ...

    async def rows(self, sql: str, params: Sequence[object] = ()) -> list[Row]: ...

    def tx(self) -> AbstractAsyncContextManager[Tx]: ...

    async def close(self) -> None: ...


class _FirstRow:
    """`fetchone` from `fetch`, for both transaction kinds."""

    async def fetch(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        raise NotImplementedError

    async def fetchone(self, sql: str, params: Sequence[object] = ()) -> Row | None:
        rows = await self.fetch(sql, params)
        return rows[0] if rows else None


# --- SQLite ----------------------------------------------------------------------------------


class _SqliteTx(_FirstRow):
    for_update = ""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        import sqlite3

        try:
            async with self._conn.execute(sql, params) as cursor:
                return cursor.rowcount
        except sqlite3.IntegrityError as exc:
            raise ConflictError(str(exc)) from exc

    async def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        await self._conn.executemany(sql, rows)

    async def fetch(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        async with self._conn.execute(sql, params) as cursor:
            return list(await cursor.fetchall())


class SqliteDatabase:
    """One aiosqlite connection in autocommit mode, one operation at a time."""

    dialect = "sqlite"

    def __init__(self, conn: aiosqlite.Connection, where: str) -> None:
        self._conn = conn
        self._one = _SqliteTx(conn)
        self._lock = asyncio.Lock()
        self.where = where

    async def write(self, sql: str, params: Sequence[object] = ()) -> int:
        async with self._lock:
            return await self._one.execute(sql, params)

    async def rows(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        async with self._lock:
            return await self._one.fetch(sql, params)

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[Tx]:
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._one
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            await self._conn.execute("COMMIT")

    async def close(self) -> None:
        await self._conn.close()


# --- PostgreSQL ------------------------------------------------------------------------------


@lru_cache(maxsize=512)
def numbered(sql: str) -> str:
    """`?` placeholders as PostgreSQL's `$1`, `$2`… (none of our literals holds a `?`)."""
    if "'?" in sql or "?'" in sql:
        raise ValueError(f"a literal holds '?': {sql}")
    count = iter(range(1, sql.count("?") + 1))
    return re.sub(r"\?", lambda _: f"${next(count)}", sql)


def _rowcount(status: str) -> int:
    """The row count of asyncpg's status string ("UPDATE 1", "INSERT 0 1", "DELETE 3")."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class _PgTx(_FirstRow):
    for_update = " FOR UPDATE"

    def __init__(
        self, conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy[asyncpg.Record]
    ) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        import asyncpg

        try:
            return _rowcount(await self._conn.execute(numbered(sql), *params))
        except asyncpg.UniqueViolationError as exc:
            raise ConflictError(str(exc)) from exc

    async def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        await self._conn.executemany(numbered(sql), rows)

    async def fetch(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        return list(await self._conn.fetch(numbered(sql), *params))


class PostgresDatabase:
    """An asyncpg pool; each call or transaction takes one connection for its length."""

    dialect = "postgresql"

    def __init__(self, pool: asyncpg.Pool, where: str) -> None:
        self._pool = pool
        self.where = where

    async def write(self, sql: str, params: Sequence[object] = ()) -> int:
        async with self._pool.acquire() as conn:
            return await _PgTx(conn).execute(sql, params)

    async def rows(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        async with self._pool.acquire() as conn:
            return await _PgTx(conn).fetch(sql, params)

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[Tx]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield _PgTx(conn)

    async def close(self) -> None:
        await self._pool.close()


# --- the base of the Store -------------------------------------------------------------------


class StoreBase:
    """The database, the clock and this process's owner token; subclasses add the queries.

    `owner` is written on the runs, locks and named leases this process holds (the token of
    adapters/store/owners.py); `marks` is the database path whose `owners/` directory holds
    this machine's owner lock files (None: judge owners by their lease only); `lease_s` is
    how long a PostgreSQL lease holds without renewal."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        owner: str = "local",
        marks: Path | None = None,
        lease_s: float = 15.0,
    ) -> None:
        self._db = db
        self._clock = clock
        self.owner = owner
        self.marks = marks
        self.lease_s = lease_s

    @property
    def where(self) -> str:
        return self._db.where

    def _lease_end(self) -> str:
        return to_text(self._clock() + timedelta(seconds=self.lease_s))

    def _row_lease(self) -> str | None:
        """A new run's or lock's lease: on PostgreSQL only. SQLite is one machine, where the
        owner's lock file tells at once and exactly whether it lives; a lease nobody renews
        (there is no lease loop there) would only keep a dead owner's run looking alive."""
        return self._lease_end() if self.dialect == "postgresql" else None

    def _owner_gone(
        self, owner: str | None, lease_until: str | None, now: str, *, at_start: bool
    ) -> bool:
        """Has the process that owns a run or lock gone? One notion of owner — the process
        token of `runs.owner` — judged two ways: its lock file on this machine (exact, at
        once: adapters/store/owners.py) and, for PostgreSQL's instances on other machines,
        its lease (renewed while it lives). A row without a lease (SQLite) has only the file."""
        if owner is not None and owner == self.owner:
            return at_start  # a process starting owns nothing yet: that was its past life
        local = owner_state(self.marks, owner) if self.marks is not None else "unknown"
        if local != "unknown":
            return local == "gone"
        return lease_until is None or lease_until < now

    @property
    def dialect(self) -> str:
        return self._db.dialect

    async def close(self) -> None:
        await self._db.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _tx(self) -> AbstractAsyncContextManager[Tx]:
        return self._db.tx()

    async def _write(self, sql: str, params: Sequence[object] = ()) -> int:
        return await self._db.write(sql, params)

    async def _rows(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        return await self._db.rows(sql, params)

    async def _row(self, sql: str, params: Sequence[object] = ()) -> Row | None:
        rows = await self._rows(sql, params)
        return rows[0] if rows else None
