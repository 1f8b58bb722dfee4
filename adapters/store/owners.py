"""Which process runs a run: a token whose lock file the process holds while it lives.

The bot and the break-glass CLI share one database; at start the bot (or the CLI) marks
`interrupted` the runs left `running` by a process that died. A process id alone cannot say
that (ids are reused, and the other process may be on its way), so each process that runs
runs holds an exclusive flock on `<database dir>/owners/<token>.lock` for its whole life: the
kernel drops the lock the moment the process dies, however it dies. A run whose owner's file
can be locked by someone else has lost its owner.

With PostgreSQL, instances on other machines cannot see each other's lock files: there the
same token also holds a lease on its runs and locks (adapters/store/runs.py), and a token
whose lock file is not on this machine is judged by its lease (`owner_state` says "unknown").
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import socket
from pathlib import Path
from typing import Literal

OwnerState = Literal["alive", "gone", "unknown"]

OWNERS_DIR = "owners"
_MODE = 0o640


class ProcessMark:
    """This process's owner token, held (flocked) until `close()` or the process's end."""

    def __init__(self, database: Path, name: str | None = None) -> None:
        self.directory = database.parent / OWNERS_DIR
        self.directory.mkdir(parents=True, exist_ok=True)
        # Readable in `status` and the logs: which instance (or machine) and process, plus a
        # nonce (process ids are reused).
        where = (name or socket.gethostname())[:40]
        self.token = f"{where}-{os.getpid()}-{secrets.token_hex(4)}"
        self._fd: int | None = os.open(
            self.directory / f"{self.token}.lock",
            os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
            _MODE,
        )
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                (self.directory / f"{self.token}.lock").unlink()
            os.close(self._fd)
            self._fd = None


def owner_state(database: Path, token: str | None) -> OwnerState:
    """ "alive" while the process holding `token` lives on this machine; "gone" when its
    lock file is here but free (the process died; the stale file is removed); "unknown"
    when there is no such file — no token, a process that closed cleanly, or one on another
    machine (which only its lease can tell)."""
    if not token or "/" in token or token.startswith("."):
        return "unknown"
    path = database.parent / OWNERS_DIR / f"{token}.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return "unknown"
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return "alive"
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        path.unlink()
    return "gone"
