"""The audit's on-disk format, shared by the writer (audit.py) and the verifier.

A directory holds day files `YYYY-MM-DD.jsonl`, one JSON object per line, and three small
state files: `.lock` (flock), `.head` (the last line written: file, line count, size, seq,
hash) and `.anchor` (the last line removed by retention, so the oldest kept line still links).

Invariant of every record: `seq` counts lines from 1 across all files without gaps, `prev` is
the `hash` of the line with seq - 1 (the anchor's hash, or 64 zeros, for the first line) and
`hash` = HMAC-SHA-256, under the audit key, of the canonical JSON of the record without
`hash`. Canonical = sorted keys, no spaces, UTF-8, so the same record always hashes the same
after a JSON round trip. A keyed record names its key by `kid` (an HMAC of a constant under
the key: it identifies the key without revealing it), so a rotated key's lines stay
verifiable with the old key. Without the key nobody can write a line that verifies — not
even someone who can rewrite every file, `.head` included.

Lines written before the chain was keyed have no `kid` and `hash` = plain SHA-256: they stay
verifiable (and are reported as unkeyed), but a keyed line may never be followed by an
unkeyed one. The writer marks the switch with an `AuditKeyed` line, and a key change with
`AuditKeyRotated`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from adapters.files import replace_atomic

ZERO_HASH = "0" * 64
LOCK_NAME = ".lock"
HEAD_NAME = ".head"
ANCHOR_NAME = ".anchor"
# Written by the writer when the log on disk does not continue what .head recorded, so a
# truncation stays visible after the writer has moved on (verify reports it as `truncated`).
TAIL_MISMATCH_EVENT = "AuditTailMismatch"
KEYED_EVENT = "AuditKeyed"
ROTATED_EVENT = "AuditKeyRotated"
# A key shorter than this is a password, not a key.
MIN_KEY_LENGTH = 32

DAY_FILE = re.compile(r"^\d{4}-\d{2}-\d{2}\.jsonl$")
_HASH = re.compile(r"^[0-9a-f]{64}$")


class ChainStateError(Exception):
    """`.head` or `.anchor` exists but cannot be read as what the writer wrote."""


@dataclass(frozen=True)
class ChainPoint:
    """One position of the chain: the line `seq` in `file`, whose hash is `hash`."""

    file: str
    seq: int
    hash: str


GENESIS = ChainPoint(file="", seq=0, hash=ZERO_HASH)


@dataclass(frozen=True)
class Head(ChainPoint):
    """The last line the writer wrote; `lines` and `size` describe `file` right after it;
    `kid` is the key that line was written with ("" when unkeyed or not recorded)."""

    lines: int
    size: int
    kid: str = ""


def key_id(key: bytes) -> str:
    """The public name of a key: it tells which key wrote a line, and nothing of the key."""
    return hmac.new(key, b"mcms-bot audit key id", hashlib.sha256).hexdigest()[:16]


def canonical_json(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def record_hash(record: Mapping[str, Any], key: bytes | None = None) -> str:
    """HMAC-SHA-256 hex under `key` (plain SHA-256 without one: unkeyed lines) of the
    canonical JSON of `record` without its `hash` key."""
    body = canonical_json({k: v for k, v in record.items() if k != "hash"})
    if key is None:
        return hashlib.sha256(body).hexdigest()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def parse_record(raw: bytes) -> dict[str, Any] | str:
    """The record on one line (without its newline), or a sentence saying why it is not one."""
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"not JSON ({exc.__class__.__name__})"
    if not isinstance(value, dict):
        return "not a JSON object"
    seq = value.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        return "no valid `seq`"
    for key in ("prev", "hash"):
        if not isinstance(value.get(key), str) or not _HASH.match(value[key]):
            return f"no valid `{key}`"
    if not isinstance(value.get("event"), str) or not isinstance(value.get("ts"), str):
        return "no `event` or `ts`"
    if "kid" in value and not isinstance(value["kid"], str):
        return "no valid `kid`"
    return value


def day_files(directory: Path) -> list[Path]:
    """The day files, oldest first (the names sort by date)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if DAY_FILE.match(p.name) and p.is_file())


def split_lines(data: bytes) -> tuple[list[bytes], bytes]:
    """Complete lines (without newline) and the trailing fragment (b"" when none)."""
    parts = data.split(b"\n")
    return parts[:-1], parts[-1]


def last_record(data: bytes) -> dict[str, Any] | None:
    """The last complete, parseable record in a file's bytes."""
    lines, _ = split_lines(data)
    for raw in reversed(lines):
        parsed = parse_record(raw)
        if isinstance(parsed, dict):
            return parsed
    return None


def _read_state(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ChainStateError(f"{path.name} is unreadable ({exc.__class__.__name__})") from exc
    if not isinstance(value, dict):
        raise ChainStateError(f"{path.name} is not a JSON object")
    return value


def read_head(directory: Path) -> Head | None:
    value = _read_state(directory / HEAD_NAME)
    if value is None:
        return None
    try:
        return Head(
            file=str(value["file"]),
            seq=int(value["seq"]),
            hash=str(value["hash"]),
            lines=int(value["lines"]),
            size=int(value["size"]),
            kid=str(value.get("kid", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ChainStateError(f"{HEAD_NAME} lacks a field ({exc})") from exc


def read_anchor(directory: Path) -> ChainPoint:
    value = _read_state(directory / ANCHOR_NAME)
    if value is None:
        return GENESIS
    try:
        return ChainPoint(file=str(value["file"]), seq=int(value["seq"]), hash=str(value["hash"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ChainStateError(f"{ANCHOR_NAME} lacks a field ({exc})") from exc


def write_state(directory: Path, name: str, point: ChainPoint) -> None:
    """Atomically replace a state file; the caller holds the directory lock."""
    replace_atomic(directory / name, json.dumps(asdict(point), sort_keys=True).encode())
