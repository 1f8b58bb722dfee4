"""Durable file primitives shared by the audit and the timeline.

Invariants: a line is appended with ONE `os.write` on an O_APPEND descriptor and fsynced, so
a reader never sees half of it and a crash loses at most the line being written; a state
file is replaced atomically (temp + fsync + `os.replace`), so it is always old or new, never
torn; `exclusive_lock` serializes processes (flock) — callers add a thread lock, because
flock alone does not order threads that share one descriptor.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FILE_MODE = 0o640


@contextmanager
def exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive flock on `lock_path` (created if needed) for the `with` body."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        # Closing the descriptor releases the flock, even if the body raised.
        os.close(fd)


def append_line(path: Path, data: bytes, *, header: bytes = b"") -> int:
    """Append `data` (header first when the file is empty) in one write + fsync; return the size.

    The caller holds the file's lock, so "empty" cannot change between fstat and write.
    """
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        payload = header + data if os.fstat(fd).st_size == 0 else data
        written = os.write(fd, payload)
        if written != len(payload):
            # Only a full disk or a quota gets here; the torn tail is found by the next writer
            # (audit) or is a visible half line (timeline). Never retry: that would duplicate.
            raise OSError(f"short write to {path}: {written} of {len(payload)} bytes")
        os.fsync(fd)
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    if created:
        fsync_dir(path.parent)
    return size


def replace_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so readers see the old or the new content, never a mix.

    The temp name is fixed, so the caller holds the lock that guards `path`.
    """
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def fsync_dir(directory: Path) -> None:
    """Make a created, renamed or deleted directory entry durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
