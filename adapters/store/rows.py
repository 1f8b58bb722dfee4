"""The rows the store hands out, and the one time format it keeps on disk.

Invariants: every datetime in the database is `to_text(aware)` — UTC, `+00:00`, microseconds
— so text order is time order; every datetime handed out is aware. Rows are frozen: a change
goes through a Store method, never through a mutated object.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from adapters.clock import require_aware

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


class DbRow(Protocol):
    """A result row: by column name or position (sqlite3.Row and asyncpg.Record both are)."""

    def __getitem__(self, key: str | int, /) -> Any: ...


def to_text(value: datetime) -> str:
    return require_aware(value).astimezone(UTC).isoformat(timespec="microseconds")


def from_text(value: str) -> datetime:
    return datetime.fromisoformat(value)


@dataclass(frozen=True)
class SmokeRecord:
    environment: str
    passed: bool
    results: list[dict[str, Any]]
    at: datetime


@dataclass(frozen=True)
class Deployment:
    """One entry of an environment's history; `stable` once its post-deploy smoke passed."""

    id: int
    environment: str
    version: str
    sha256: str
    deployed_at: datetime
    stable: bool
    stable_at: datetime | None
    run_id: str | None


@dataclass(frozen=True)
class LockResult:
    """Who holds an environment lock; `acquired` is True only for the try_lock that took it
    (or that already held it with the same run id)."""

    acquired: bool
    holder_run_id: str | None
    holder_name: str | None
    since: datetime | None


@dataclass(frozen=True)
class ConversationRef:
    """A stored Bot Framework conversation reference (JSON) for proactive posts."""

    conversation_id: str
    ref_json: str
    kind: str
    service_url: str
    tenant_id: str | None
    updated_at: datetime


@dataclass(frozen=True)
class Request:
    """An approval request bound to one plan (`plan_hash`); states: docs/architecture.md."""

    id: str
    environment: str
    command: str
    plan_json: str
    plan_hash: str
    requester_name: str
    state: str
    created_at: datetime
    version: str | None = None
    current_version: str | None = None
    requester_id: str | None = None
    conversation_id: str | None = None
    card_activity_id: str | None = None
    expires_at: datetime | None = None
    decided_by_name: str | None = None
    decided_by_id: str | None = None
    decided_at: datetime | None = None
    reason: str | None = None
    # Where the request came from when not typed in chat, e.g. "alert:<incident id>".
    origin: str | None = None
    # Distinct approvers it needs; approved alone by a break-glass holder; who approved.
    required_approvals: int = 1
    break_glass: bool = False
    approvers: str | None = None


@dataclass(frozen=True)
class Flow:
    """One blue/green flow (adapters/store/schema.py FLOW_STATES)."""

    id: str
    pair: str
    version: str
    from_slot: str
    to_slot: str
    from_version: str | None
    state: str
    active: bool
    requester_name: str
    requester_id: str | None
    conversation_id: str | None
    card_activity_id: str | None
    deploy_request_id: str | None
    switch_request_id: str | None
    gates_json: str | None
    step: str | None
    note: str | None
    switched_at: datetime | None
    watch_ends_at: datetime | None
    switchback_by: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ApprovalTally:
    """What one approval did: `state` of the request after it; `recorded` False when this
    approver had approved already (or the request was no longer pending); `names` of every
    approver so far, in order."""

    state: str
    recorded: bool
    count: int
    required: int
    names: tuple[str, ...]

    @property
    def decided(self) -> bool:
        return self.state == "approved"


@dataclass(frozen=True)
class Run:
    """The execution of one approved request."""

    id: str
    request_id: str
    environment: str
    state: str
    started_at: datetime
    current_step: str | None = None
    conversation_id: str | None = None
    progress_activity_id: str | None = None
    cancel_requested_by: str | None = None
    cancel_requested_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    restore: str | None = None  # schema.RESTORE_OUTCOMES; None while running and on success
    restore_note: str | None = None
    pre_state_json: str | None = None
    # The process running it (adapters/store/owners.py), and until when its lease holds
    # (renewed while it runs, on PostgreSQL; None on SQLite, where the owner's lock file says).
    owner: str | None = None
    lease_until: datetime | None = None


@dataclass(frozen=True)
class PendingFinal:
    """A final card state Teams has not taken yet (adapters/store/runs.py, `keep_final`)."""

    id: int
    conversation_id: str
    activity_id: str | None  # None: post it as a new message
    text: str
    card_json: str | None
    owner: str  # the process that kept it ("" once released after a failed delivery)
    attempts: int = 0  # deliveries the outbound queue gave up on so far


@dataclass(frozen=True)
class Notice:
    """A message for an environment's alert conversations, kept until Teams has it."""

    id: int
    environment: str
    kind: str  # break-glass | run-failed | freeze
    text: str
    created_at: datetime
    delivered_to: tuple[str, ...] = ()


@dataclass(frozen=True)
class Freeze:
    """An environment frozen by an approver: no new rollback/deploy but by break glass."""

    environment: str
    reason: str
    frozen_by: str
    frozen_by_id: str | None
    since: datetime


@dataclass(frozen=True)
class InterruptedRun:
    """A run found `running` at start: now `interrupted`; what to tell, and where."""

    run_id: str
    request_id: str
    environment: str
    current_step: str | None
    last_completed_step: str | None
    conversation_id: str | None
    progress_activity_id: str | None
    pre_state_json: str | None = None
    owner: str | None = None  # the instance that ran it (a restart of this one, or a dead one)
    # Already interrupted, but the process settling its hosts died before recording how:
    # settled again (its restore steps, begun or not, run once more).
    resumed: bool = False


@dataclass(frozen=True)
class HostSwitch:
    """One component's path changed on one host by a run: its switch, or its restore."""

    run_id: str
    environment: str
    host: str
    kind: str  # site | service
    component: str
    before: str
    after: str
    reason: str  # switch | restore
    switched_at: datetime


Row = TypeVar("Row", bound="DataclassInstance")


def from_row(cls: type[Row], row: DbRow) -> Row:
    """Build a row object from the columns of the same names (`*_at`/`*_until`/`since`:
    times)."""
    values: dict[str, Any] = {}
    for f in fields(cls):
        value = row[f.name]
        if value is not None and (f.name.endswith(("_at", "_until")) or f.name == "since"):
            value = from_text(value)
        elif f.type in ("bool", "bool | None") and value is not None:
            value = bool(value)
        values[f.name] = value
    return cls(**values)


def column_names(cls: type[DataclassInstance]) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))
