"""The schema as an ordered list of migrations — one history for SQLite and PostgreSQL —
versioned by `PRAGMA user_version` (SQLite) or the `schema_version` table (PostgreSQL).

Invariants: migration N brings a database from version N-1 to N inside one write
transaction (DDL and the version bump commit together or not at all; two instances starting
together apply it once: SQLite's write lock, PostgreSQL's advisory lock); migrations are
never edited once released — a change is a new migration appended to MIGRATIONS; a database
newer than the code refuses to open (StoreVersionError) instead of being written by code
that does not know its shape. The statements are written in the SQL both understand; the
one phrase they spell differently, an auto-numbered key, is translated by `for_dialect`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from adapters.store.db import Database, Tx

REQUEST_STATES = (
    "pending",
    "approved",
    "running",
    "succeeded",
    "failed",
    "cancelled",
    "interrupted",
    "rejected",
    "expired",
    # Approved, but the plan changed before it ran (new package, other hosts): never runs.
    "void",
)
RUN_STATES = ("running", "succeeded", "failed", "cancelled", "interrupted")
# What a run that did not succeed left behind (NULL while running, and for a success):
# unchanged — it failed before changing anything; restored — put back and verified;
# restore-failed — the restore did not get every host back (an alert says what is where);
# not-restored — on_failure = "stop" left the hosts as they were; kept — it failed only
# after the change was verified (a record could not be written), so the change stays.
RESTORE_OUTCOMES = ("unchanged", "restored", "restore-failed", "not-restored", "kept")
ALERT_KINDS = ("smoke", "run")
STEP_STATES = ("pending", "running", "passed", "failed", "skipped", "cancelled", "interrupted")


def _one_of(column: str, values: Sequence[str]) -> str:
    return f"CHECK ({column} IN ({', '.join(repr(v) for v in values)}))"


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


# Times are ISO 8601 text in UTC with offset and microseconds (adapters.store.rows.to_text):
# one fixed width, so text order is time order and SQL can compare them.
_V1 = (
    f"""CREATE TABLE requests (
        id TEXT PRIMARY KEY,
        environment TEXT NOT NULL,
        command TEXT NOT NULL,
        version TEXT,
        current_version TEXT,
        plan_json TEXT NOT NULL,
        plan_hash TEXT NOT NULL,
        requester_name TEXT NOT NULL,
        requester_id TEXT,
        conversation_id TEXT,
        card_activity_id TEXT,
        state TEXT NOT NULL {_one_of("state", REQUEST_STATES)},
        created_at TEXT NOT NULL,
        expires_at TEXT,
        decided_by_name TEXT,
        decided_by_id TEXT,
        decided_at TEXT,
        reason TEXT,
        origin TEXT
    )""",
    # The expiry sweep and "pending approvals" gauge read by state.
    "CREATE INDEX requests_by_state ON requests (state, expires_at)",
    "CREATE INDEX requests_by_environment ON requests (environment, created_at)",
    f"""CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        -- UNIQUE: a request yields at most one run, whatever the clicks and retries.
        request_id TEXT NOT NULL UNIQUE REFERENCES requests (id),
        environment TEXT NOT NULL,
        state TEXT NOT NULL {_one_of("state", RUN_STATES)},
        current_step TEXT,
        conversation_id TEXT,
        progress_activity_id TEXT,
        cancel_requested_by TEXT,
        cancel_requested_at TEXT,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        error TEXT
    )""",
    "CREATE INDEX runs_by_state ON runs (state)",
    f"""CREATE TABLE steps (
        run_id TEXT NOT NULL REFERENCES runs (id),
        idx INTEGER NOT NULL,
        name TEXT NOT NULL,
        state TEXT NOT NULL {_one_of("state", STEP_STATES)},
        started_at TEXT,
        finished_at TEXT,
        duration_ms INTEGER,
        error TEXT,
        detail_json TEXT,
        PRIMARY KEY (run_id, idx)
    )""",
    # id orders the history: two deployments within one clock tick stay in order.
    """CREATE TABLE deployments (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        environment TEXT NOT NULL,
        version TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        deployed_at TEXT NOT NULL,
        stable INTEGER NOT NULL DEFAULT 0 CHECK (stable IN (0, 1)),
        stable_at TEXT,
        run_id TEXT
    )""",
    "CREATE INDEX deployments_by_environment ON deployments (environment, id)",
    """CREATE TABLE conversation_refs (
        conversation_id TEXT PRIMARY KEY,
        ref_json TEXT NOT NULL,
        kind TEXT NOT NULL,
        service_url TEXT NOT NULL,
        tenant_id TEXT,
        updated_at TEXT NOT NULL
    )""",
    # Which conversations get an environment's alerts (subscribe / unsubscribe).
    """CREATE TABLE subscriptions (
        environment TEXT NOT NULL,
        conversation_id TEXT NOT NULL REFERENCES conversation_refs (conversation_id),
        subscribed_by TEXT,
        created_at TEXT NOT NULL,
        PRIMARY KEY (environment, conversation_id)
    )""",
    """CREATE TABLE watch_state (
        environment TEXT PRIMARY KEY,
        consecutive_failures INTEGER NOT NULL DEFAULT 0,
        failing_since TEXT,
        last_run_at TEXT,
        last_passed INTEGER CHECK (last_passed IN (0, 1)),
        updated_at TEXT NOT NULL
    )""",
    """CREATE TABLE alerts (
        id TEXT PRIMARY KEY,
        environment TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('open', 'resolved')),
        opened_at TEXT NOT NULL,
        resolved_at TEXT,
        conversation_id TEXT,
        card_activity_id TEXT,
        last_reminder_at TEXT,
        silenced_until TEXT,
        silenced_by TEXT,
        silence_reason TEXT,
        opsgenie_alias TEXT,
        opsgenie_state TEXT,
        detail_json TEXT
    )""",
    # At most one open incident per environment: a restart cannot raise a duplicate alert.
    "CREATE UNIQUE INDEX alerts_one_open ON alerts (environment) WHERE state = 'open'",
    """CREATE TABLE env_locks (
        environment TEXT PRIMARY KEY,
        run_id TEXT NOT NULL,
        holder_name TEXT NOT NULL,
        since TEXT NOT NULL
    )""",
    """CREATE TABLE smoke_results (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        environment TEXT NOT NULL,
        at TEXT NOT NULL,
        passed INTEGER NOT NULL CHECK (passed IN (0, 1)),
        results_json TEXT NOT NULL,
        run_id TEXT
    )""",
    "CREATE INDEX smoke_by_environment ON smoke_results (environment, id)",
)

# Since when each blue/green pair's live slot is live (the slot itself is read from the
# router every time; adapters/store/pairs.py).
_V2 = (
    """CREATE TABLE pair_live (
        pair TEXT PRIMARY KEY,
        live_slot TEXT NOT NULL,
        since TEXT NOT NULL,
        source TEXT NOT NULL CHECK (source IN ('switch', 'observed')),
        updated_at TEXT NOT NULL
    )""",
)

# Issue 9: a run restores what it changed; per-host history of switches; run alerts.
_V3 = (
    f"ALTER TABLE runs ADD COLUMN restore TEXT {_one_of('restore', RESTORE_OUTCOMES)}",
    "ALTER TABLE runs ADD COLUMN restore_note TEXT",
    # Each host's state read by the preflight, before the first change (JSON).
    "ALTER TABLE runs ADD COLUMN pre_state_json TEXT",
    """CREATE TABLE host_switches (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL,
        environment TEXT NOT NULL,
        host TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('site', 'service')),
        component TEXT NOT NULL,
        before TEXT NOT NULL,
        after TEXT NOT NULL,
        reason TEXT NOT NULL CHECK (reason IN ('switch', 'restore')),
        switched_at TEXT NOT NULL
    )""",
    "CREATE INDEX host_switches_by_host ON host_switches (environment, host, id)",
    f"ALTER TABLE alerts ADD COLUMN kind TEXT NOT NULL DEFAULT 'smoke' "
    f"{_one_of('kind', ALERT_KINDS)}",
    "ALTER TABLE alerts ADD COLUMN run_id TEXT",
    # One open smoke incident per environment as before; a failed run is its own alert.
    "DROP INDEX alerts_one_open",
    "CREATE UNIQUE INDEX alerts_one_open ON alerts (environment)"
    " WHERE state = 'open' AND kind = 'smoke'",
)

# The approval policy (issue 10): N distinct approvers, each approval a row (the primary key
# makes a second click of the same approver a no-op); the request keeps the count it needs,
# whether a break-glass approval decided it, and the approvers' names for its card.
_V4 = (
    "ALTER TABLE requests ADD COLUMN required_approvals INTEGER NOT NULL DEFAULT 1",
    "ALTER TABLE requests ADD COLUMN break_glass INTEGER NOT NULL DEFAULT 0"
    " CHECK (break_glass IN (0, 1))",
    "ALTER TABLE requests ADD COLUMN approvers TEXT",
    """CREATE TABLE approvals (
        request_id TEXT NOT NULL REFERENCES requests (id),
        approver_id TEXT NOT NULL,
        approver_name TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (request_id, approver_id)
    )""",
)

# Blue/green flows (issue 11): one row per `bluegreen PAIR VERSION`. `active` = 1 while the
# flow holds its pair (the partial unique index IS the pair lock: a second active flow of
# the same pair cannot be inserted); a manual switch-back takes it again.
FLOW_STATES = (
    "deploy-pending",  # approval card #1 out
    "deploying",  # the deploy run on the idle slot
    "gating",  # smoke and DR tests on the idle slot
    "switch-pending",  # approval card #2 out
    "switching",
    "watching",
    "switching-back",
    "live",  # the watch passed: the new slot serves users (Switch back still offered)
    "switched-back",  # the old slot serves users again (automatically or by request)
    "stopped",  # ended before the switch: nothing was switched
    "failed",  # a router step failed: what is live is in `note`, read from the router
    "interrupted",  # the bot died mid-flow; told at the next start with the router read
)
_V5 = (
    f"""CREATE TABLE bluegreen (
        id TEXT PRIMARY KEY,
        pair TEXT NOT NULL,
        version TEXT NOT NULL,
        from_slot TEXT NOT NULL,
        to_slot TEXT NOT NULL,
        from_version TEXT,
        state TEXT NOT NULL {_one_of("state", FLOW_STATES)},
        active INTEGER NOT NULL CHECK (active IN (0, 1)),
        requester_name TEXT NOT NULL,
        requester_id TEXT,
        conversation_id TEXT,
        card_activity_id TEXT,
        deploy_request_id TEXT,
        switch_request_id TEXT,
        gates_json TEXT,
        step TEXT,
        note TEXT,
        switched_at TEXT,
        watch_ends_at TEXT,
        switchback_by TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    "CREATE UNIQUE INDEX bluegreen_one_active ON bluegreen (pair) WHERE active = 1",
    "CREATE INDEX bluegreen_by_pair ON bluegreen (pair, created_at)",
)

# The break-glass CLI (issue 13): a run says which process runs it (`owner`, a token whose
# lock file that process holds: recovery at start interrupts only runs whose owner is gone,
# so a bot starting beside a CLI run leaves it alone), and what must be said in Teams when
# it answers again is kept until it is delivered (`notices`).
_V6 = (
    "ALTER TABLE runs ADD COLUMN owner TEXT",
    """CREATE TABLE notices (
        id INTEGER PRIMARY KEY,
        environment TEXT NOT NULL,
        kind TEXT NOT NULL,
        text TEXT NOT NULL,
        created_at TEXT NOT NULL,
        -- The conversations that have it (JSON list): a retry never posts it there twice.
        delivered_to TEXT NOT NULL DEFAULT '[]',
        delivered_at TEXT
    )""",
    "CREATE INDEX notices_undelivered ON notices (delivered_at, id)",
)

# Freezes (`lock ENV REASON`): one row per frozen environment, deleted by `unlock`; who
# froze it and when is kept in the audit and the timeline. One portable CREATE TABLE.
_FREEZES = (
    """CREATE TABLE freezes (
        environment TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        frozen_by TEXT NOT NULL,
        frozen_by_id TEXT,
        since TEXT NOT NULL
    )""",
)

# High availability (issue 14): until when a run's and a lock's owner (the process of
# migration 6's `runs.owner`, now also on the lock) holds them — a lease the owning process
# renews while it lives; another instance takes over what an expired lease left. Named
# leases (one watcher per environment cluster-wide); an approval's place in its request,
# which both databases keep (SQLite's rowid has no PostgreSQL twin). Pending finals: a
# run's final card edit that Teams has not taken yet, kept until delivered so that a
# surviving instance (or this one, restarted) sends it when its owner is gone.
_V8 = (
    "ALTER TABLE runs ADD COLUMN lease_until TEXT",
    "ALTER TABLE env_locks ADD COLUMN owner TEXT",
    "ALTER TABLE env_locks ADD COLUMN lease_until TEXT",
    "CREATE INDEX runs_by_owner ON runs (state, owner)",
    "ALTER TABLE approvals ADD COLUMN seq INTEGER",
    # The process that approved a request starts its run; if it dies first, another
    # instance settles the request (adapters/store/runs.py orphaned_approvals).
    "ALTER TABLE requests ADD COLUMN approved_by_owner TEXT",
    # A blue/green flow's owner: the process that last moved it (a start elsewhere leaves a
    # flow alone while its owner lives).
    "ALTER TABLE bluegreen ADD COLUMN owner TEXT",
    "ALTER TABLE bluegreen ADD COLUMN lease_until TEXT",
    """CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        since TEXT NOT NULL,
        lease_until TEXT NOT NULL
    )""",
    """CREATE TABLE pending_finals (
        id INTEGER PRIMARY KEY,
        conversation_id TEXT NOT NULL,
        -- The Teams id of the message to edit; NULL when its post never reached Teams
        -- (then the final state goes out as a new message).
        activity_id TEXT,
        text TEXT NOT NULL,
        card_json TEXT,
        owner TEXT NOT NULL,
        lease_until TEXT,
        created_at TEXT NOT NULL
    )""",
)

# Pending finals the outbound queue gave up on: how often they were tried (a final Teams
# refuses for good is dropped after a few), and which message of its process a final
# belongs to while that message has no Teams id yet (`owner/queue key`): only the newest
# final of a message is kept, so a survivor never posts several.
_V9 = (
    "ALTER TABLE pending_finals ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE pending_finals ADD COLUMN message_key TEXT",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "requests, runs, steps, deployments, conversations, watcher, locks, smoke", _V1),
    Migration(2, "since when each blue/green pair's live slot is live", _V2),
    Migration(3, "run restore outcome and pre-run state, per-host switch history, run alerts", _V3),
    Migration(
        4, "approvals: one row per approver; required count and break-glass per request", _V4
    ),
    Migration(5, "blue/green flows; one active flow per pair", _V5),
    Migration(6, "run owners (which process runs it); notices kept until Teams has them", _V6),
    Migration(7, "freezes: an environment locked against new changes by an approver", _FREEZES),
    Migration(
        8, "leases of run and lock owners, named leases, approval order, pending finals", _V8
    ),
    Migration(9, "pending finals: delivery attempts and the message they belong to", _V9),
)


class StoreError(Exception):
    """The database cannot be used (not SQLite, unreadable, wrong version, unreachable).

    StoreError
    └── StoreVersionError — written by a newer mcms-bot
    """


class StoreVersionError(StoreError):
    """The database was written by a newer mcms-bot; this one must not touch it."""


# Any fixed number: the PostgreSQL advisory lock that serialises migrations across instances.
_MIGRATION_LOCK = 0x6D636D73


def for_dialect(statement: str, dialect: str) -> str:
    """A migration statement in `dialect`'s spelling: PostgreSQL numbers keys by IDENTITY
    (SQLite's `INTEGER PRIMARY KEY`, with or without AUTOINCREMENT, is its rowid)."""
    if dialect == "postgresql":
        return re.sub(
            r"INTEGER PRIMARY KEY( AUTOINCREMENT)?",
            "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
            statement,
        )
    return statement


def _refuse_newer(current: int, newest: int, where: str) -> None:
    if current > newest:
        raise StoreVersionError(
            f"{where} has schema version {current}, but this mcms-bot knows versions up to "
            f"{newest}: it was written by a newer release. Run that release, or restore a "
            "backup made before the upgrade. Refusing to start."
        )


async def schema_version(tx: Tx, dialect: str) -> int:
    if dialect == "postgresql":
        await tx.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = await tx.fetchone("SELECT MAX(version) FROM schema_version")
        return int(row[0]) if row and row[0] is not None else 0
    row = await tx.fetchone("PRAGMA user_version")
    return int(row[0]) if row else 0


async def _set_version(tx: Tx, dialect: str, version: int) -> None:
    if dialect == "postgresql":
        await tx.execute("DELETE FROM schema_version")
        await tx.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
    else:
        await tx.execute(f"PRAGMA user_version = {int(version)}")


async def refuse_newer(db: Database, migrations: Sequence[Migration] = MIGRATIONS) -> None:
    """Raise StoreVersionError when the database is newer than `migrations` know."""
    async with db.tx() as tx:
        if db.dialect == "postgresql":
            await tx.execute(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
        current = await schema_version(tx, db.dialect)
    _refuse_newer(current, len(migrations), db.where)


async def migrate(db: Database, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring the database to the newest version; return it."""
    newest = len(migrations)
    if [m.version for m in migrations] != list(range(1, newest + 1)):
        raise ValueError("migrations must be numbered 1, 2, 3… in order")
    for migration in migrations:
        # The transaction takes the write lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: the
        # advisory lock) before reading the version, so two processes starting together
        # cannot both apply the same migration.
        async with db.tx() as tx:
            if db.dialect == "postgresql":
                await tx.execute(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
            current = await schema_version(tx, db.dialect)
            _refuse_newer(current, newest, db.where)
            if current < migration.version:
                for statement in migration.statements:
                    await tx.execute(for_dialect(statement, db.dialect))
                await _set_version(tx, db.dialect, migration.version)
    return newest
