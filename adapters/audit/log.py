"""The append-only JSONL audit: one hash-chained line per decision, step and outcome.

Invariants: each line is written with one `os.write` on an O_APPEND descriptor and fsynced;
the tail is read and the line written under a thread lock and an flock on `.lock`, so
threads, tasks and processes writing one directory produce one unbroken chain (format in
audit_chain.py). `.head` is replaced atomically after every line; when the disk does not
continue what `.head` says (lines cut off, `.head` deleted or unreadable) the writer
first appends an `AuditTailMismatch` line, so the damage stays visible after it moves on;
a torn last line gets its newline first, so it stays one malformed line.
Only structured values go in, and `redact` scrubs every string before it is hashed.
With a key, each line is an HMAC (see chain.py); a writer whose key differs from the one
the last line was written with (none before: the first keyed start) first writes an
`AuditKeyed` / `AuditKeyRotated` line saying so.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from adapters.audit.chain import (
    ANCHOR_NAME,
    GENESIS,
    HEAD_NAME,
    KEYED_EVENT,
    LOCK_NAME,
    ROTATED_EVENT,
    TAIL_MISMATCH_EVENT,
    ChainPoint,
    ChainStateError,
    Head,
    day_files,
    key_id,
    last_record,
    read_anchor,
    read_head,
    record_hash,
    write_state,
)
from adapters.clock import Clock, require_aware, utc_now
from adapters.files import append_line, exclusive_lock, fsync_dir

Detail = Mapping[str, Any] | str | None


class AuditEvent(StrEnum):
    """The audit's event names; `append` takes any str, these keep spellings aligned."""

    REQUESTED = "Requested"
    APPROVED = "Approved"
    REJECTED = "Rejected"
    EXPIRED = "Expired"
    STARTED = "Started"
    STEP_STARTED = "StepStarted"
    STEP_SUCCEEDED = "StepSucceeded"
    STEP_FAILED = "StepFailed"
    DEPLOYED = "Deployed"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    INTERRUPTED = "Interrupted"
    ALERT_RAISED = "AlertRaised"
    ALERT_RESOLVED = "AlertResolved"
    TAIL_MISMATCH = TAIL_MISMATCH_EVENT


class ActorLike(Protocol):
    """Anything with a display name and an Entra object id (commands.types.Actor fits)."""

    @property
    def name(self) -> str: ...
    @property
    def aad_object_id(self) -> str | None: ...


@dataclass(frozen=True)
class AuditActor:
    name: str
    aad_object_id: str | None = None


@dataclass(frozen=True)
class AuditRecord:
    """One written line, as written (after redaction); `file` is the day file's name."""

    file: str
    ts: datetime
    seq: int
    event: str
    fields: Mapping[str, Any]
    prev: str
    hash: str


@dataclass(frozen=True)
class _Tail:
    """Where the next line goes: after `point`, in `file` that has `lines` lines."""

    point: ChainPoint
    file: str | None
    lines: int
    torn: bool = False
    problem: dict[str, Any] | None = None
    kid: str = ""  # the key of the line at `point` ("" when unkeyed)


def _actor(actor: ActorLike | Mapping[str, str | None] | None) -> dict[str, str | None] | None:
    if actor is None:
        return None
    if isinstance(actor, Mapping):
        return {"name": actor.get("name"), "aad_object_id": actor.get("aad_object_id")}
    return {"name": actor.name, "aad_object_id": actor.aad_object_id}


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return require_aware(value, "detail datetime").isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"audit values must be JSON data, got {type(value).__name__}")


class AuditLog:
    """Appends chained records to `<directory>/<day in tz>.jsonl`; see the module invariants."""

    def __init__(
        self,
        directory: Path,
        tz: ZoneInfo,
        redact: Callable[[str], str] | None = None,
        clock: Clock = utc_now,
        key: bytes | None = None,
    ) -> None:
        self.directory = directory
        self._tz = tz
        self._redact = redact
        self._clock = clock
        self._key = key
        self._kid = key_id(key) if key is not None else ""
        self._thread_lock = threading.Lock()

    async def append(
        self,
        event: str,
        *,
        environment: str | None = None,
        request_id: str | None = None,
        run_id: str | None = None,
        actor: ActorLike | Mapping[str, str | None] | None = None,
        step: str | None = None,
        status: str | None = None,
        duration_ms: int | None = None,
        detail: Detail = None,
    ) -> AuditRecord:
        """Append one record from a worker thread, so the fsync never blocks the event loop."""
        return await asyncio.to_thread(
            self.append_sync,
            event,
            environment=environment,
            request_id=request_id,
            run_id=run_id,
            actor=actor,
            step=step,
            status=status,
            duration_ms=duration_ms,
            detail=detail,
        )

    def append_sync(
        self,
        event: str,
        *,
        environment: str | None = None,
        request_id: str | None = None,
        run_id: str | None = None,
        actor: ActorLike | Mapping[str, str | None] | None = None,
        step: str | None = None,
        status: str | None = None,
        duration_ms: int | None = None,
        detail: Detail = None,
    ) -> AuditRecord:
        """Append one record, blocking until it is on disk."""
        raw = {
            "environment": environment,
            "request_id": request_id,
            "run_id": run_id,
            "actor": _actor(actor),
            "step": step,
            "status": status,
            "duration_ms": duration_ms,
            "detail": detail,
        }
        # A JSON round trip before hashing makes the hash cover exactly what a reader will
        # parse back: tuples become lists, datetimes strings, and bad types fail here.
        fields: dict[str, Any] = json.loads(json.dumps(raw, default=_json_default, allow_nan=False))
        if self._redact is not None:
            fields = self._scrub(fields)
            event = self._redact(event)
        return self._append(event, fields)

    def _scrub(self, value: Any) -> Any:
        # Per string, not on the serialized line: a secret holding `"` or `\` is escaped in
        # JSON and would slip past a line-level replace, and a line edit could break the hash.
        assert self._redact is not None
        if isinstance(value, str):
            return self._redact(value)
        if isinstance(value, list):
            return [self._scrub(v) for v in value]
        if isinstance(value, dict):
            return {self._redact(k): self._scrub(v) for k, v in value.items()}
        return value

    def _append(self, event: str, fields: dict[str, Any]) -> AuditRecord:
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._thread_lock, exclusive_lock(self.directory / LOCK_NAME):
            # "now" is read under the lock so ts follows seq (unless the clock steps back).
            now = require_aware(self._clock(), "clock()")
            tail = self._resume()
            if tail.problem is not None:
                _, tail = self._write(now, tail, TAIL_MISMATCH_EVENT, _marker_fields(tail.problem))
            tail = self._mark_key_change(now, tail)
            record, _ = self._write(now, tail, event, fields)
        return record

    def ensure_keyed(self) -> None:
        """At start: if the log's last line was not written with this key, say so now (an
        `AuditKeyed` or `AuditKeyRotated` line), so a keyed log always ends keyed."""
        if self._key is None or not self.directory.is_dir():
            return
        with self._thread_lock, exclusive_lock(self.directory / LOCK_NAME):
            now = require_aware(self._clock(), "clock()")
            tail = self._resume()
            if tail.problem is not None:
                _, tail = self._write(now, tail, TAIL_MISMATCH_EVENT, _marker_fields(tail.problem))
            self._mark_key_change(now, tail)

    def _mark_key_change(self, now: datetime, tail: _Tail) -> _Tail:
        if self._key is None or tail.file is None or tail.kid == self._kid:
            return tail
        marker, detail = (
            (ROTATED_EVENT, {"previous_kid": tail.kid, "kid": self._kid})
            if tail.kid
            else (KEYED_EVENT, {"unkeyed_until_seq": tail.point.seq, "kid": self._kid})
        )
        _, tail = self._write(now, tail, marker, _marker_fields(detail, "keyed"))
        return tail

    def _write(
        self, now: datetime, tail: _Tail, event: str, fields: dict[str, Any]
    ) -> tuple[AuditRecord, _Tail]:
        name = now.astimezone(self._tz).date().isoformat() + ".jsonl"
        # Never go back to an older day file (clock stepped back, zone changed): the chain
        # is read in file-name order.
        if tail.file is not None and name < tail.file:
            name = tail.file
        same_file = name == tail.file
        ts_text = now.astimezone(UTC).isoformat(timespec="microseconds")
        body: dict[str, Any] = {"ts": ts_text, "seq": tail.point.seq + 1, "event": event}
        body.update(fields)
        if self._key is not None:
            body["kid"] = self._kid
        body["prev"] = tail.point.hash
        body["hash"] = record_hash(body, self._key)
        line = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        # A torn last line gets its newline first, in the same write, so it stays one
        # (malformed) line instead of swallowing the start of this one.
        prefix = b"\n" if tail.torn and same_file else b""
        size = append_line(self.directory / name, prefix + line.encode("utf-8") + b"\n")
        lines = tail.lines + 1 if same_file else 1
        head = Head(
            file=name, seq=body["seq"], hash=body["hash"], lines=lines, size=size, kid=self._kid
        )
        write_state(self.directory, HEAD_NAME, head)
        record = AuditRecord(
            file=name,
            ts=datetime.fromisoformat(ts_text),
            seq=body["seq"],
            event=event,
            fields=fields,
            prev=body["prev"],
            hash=body["hash"],
        )
        return record, _Tail(point=head, file=name, lines=lines, kid=self._kid)

    def _resume(self) -> _Tail:
        files = day_files(self.directory)
        try:
            head = read_head(self.directory)
        except ChainStateError as exc:
            return _slow_resume(self.directory, files, None, str(exc))
        if head is None and not files:
            return _Tail(point=_anchor_or_genesis(self.directory), file=None, lines=0)
        # Fast path: the newest file is exactly as big as after the last line we wrote.
        newest = files[-1] if files else None
        if (
            head is not None
            and newest is not None
            and newest.name == head.file
            and newest.stat().st_size == head.size
        ):
            return _Tail(point=head, file=head.file, lines=head.lines, kid=head.kid)
        return _slow_resume(self.directory, files, head, None)

    @property
    def key_id(self) -> str:
        """The id of the key this writer signs with ("" when unkeyed)."""
        return self._kid


def _anchor_or_genesis(directory: Path) -> ChainPoint:
    try:
        return read_anchor(directory)
    except ChainStateError:
        return GENESIS


def _slow_resume(
    directory: Path, files: list[Path], head: Head | None, head_error: str | None
) -> _Tail:
    """Find the real tail on disk and judge whether it continues what `.head` recorded."""
    point: ChainPoint | None = None
    kid = ""
    newest, lines, torn = (files[-1].name if files else None), 0, False
    for path in reversed(files):
        data = path.read_bytes()
        if path.name == newest:
            torn = bool(data) and not data.endswith(b"\n")
            lines = data.count(b"\n") + int(torn)
        record = last_record(data)
        if record is not None:
            point = ChainPoint(file=path.name, seq=record["seq"], hash=record["hash"])
            kid = str(record.get("kid", ""))
            break
    if point is None:
        point = _anchor_or_genesis(directory)
    reason: str | None = None
    if head_error is not None:
        reason = head_error
    elif head is None:
        reason = f"{HEAD_NAME} is missing"
    elif not _head_is_prefix(directory, head):
        reason = f"the log no longer contains the last line that {HEAD_NAME} records"
    # A torn last line is no reason for a marker: it stays in the file as its own (malformed)
    # line, which verify names.
    if reason is None:
        return _Tail(point=point, file=newest, lines=lines, torn=torn, kid=kid)
    # Continue seq after what .head promised so the cut-off lines show as a gap.
    seq = max(point.seq, head.seq if head is not None else 0)
    problem: dict[str, Any] = {
        "reason": reason,
        "expected": None if head is None else {"file": head.file, "seq": head.seq},
        "found": {"file": point.file, "seq": point.seq, "hash": point.hash},
    }
    resumed = ChainPoint(file=point.file, seq=seq, hash=point.hash)
    return _Tail(point=resumed, file=newest, lines=lines, torn=torn, problem=problem, kid=kid)


def _head_is_prefix(directory: Path, head: Head) -> bool:
    path = directory / head.file
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return False
    if len(data) < head.size:
        return False
    record = last_record(data[: head.size])
    return record is not None and record["hash"] == head.hash and record["seq"] == head.seq


def _marker_fields(detail: dict[str, Any], status: str = "problem") -> dict[str, Any]:
    return {
        "environment": None,
        "request_id": None,
        "run_id": None,
        "actor": None,
        "step": None,
        "status": status,
        "duration_ms": None,
        "detail": detail,
    }


def prune(directory: Path, keep_from: date) -> list[Path]:
    """Delete day files dated before `keep_from` (never the newest) and anchor the chain.

    `.anchor` is written before any file goes, so a crash in between leaves files the
    verifier skips, never a first line that links to nothing.
    """
    if not directory.is_dir():
        return []
    with exclusive_lock(directory / LOCK_NAME):
        files = day_files(directory)[:-1]
        old = [p for p in files if p.name < keep_from.isoformat() + ".jsonl"]
        if not old:
            return []
        anchor: ChainPoint | None = None
        for path in reversed(old):
            record = last_record(path.read_bytes())
            if record is not None:
                anchor = ChainPoint(file=old[-1].name, seq=record["seq"], hash=record["hash"])
                break
        if anchor is not None:
            write_state(directory, ANCHOR_NAME, anchor)
        for path in old:
            path.unlink()
        fsync_dir(directory)
    return old
