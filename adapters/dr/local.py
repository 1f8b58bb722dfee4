"""Run a DR suite on the bot's own host: one child in its own process group, killed whole.

The child (say `npm run test:axe`) starts a tree: npm, node, chromium and its helpers.
playwright starts the browser in a session of its own (`detached`), so the process group
alone does not reach it, and once its parent is gone it is nobody's descendant either. So
the child's environment carries a marker (`MCMS_DR_RUN=<token>`) that every descendant
inherits: the tree is the process group, the descendants, and every process whose
environment holds the marker (read from /proc). When the suite times out or is cancelled,
the tree gets SIGTERM, then SIGKILL after `_GRACE_S`; after a normal exit, whatever the
suite left running is ended the same way. A DR check never leaves a browser behind.

The child does not inherit the bot's environment, which holds the bot's secrets: only the
variables a process needs to run (PATH, HOME, locale, temp dirs) plus the runner's own.
Its output (stdout and stderr) goes straight to the log file, so a long suite can be
followed with `tail -f` while it runs. The report is read back only if this run wrote it:
a file left by an earlier run is "stale", not evidence.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from adapters.dr.outcome import RunnerOutput
from adapters.dr.reports import MAX_REPORT_BYTES

MARKER: Final = "MCMS_DR_RUN"
_GRACE_S: Final = 3.0
# What a child process needs from the bot's environment; nothing else is passed on.
INHERITED: Final = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "TEMP",
    "TMP",
)


@dataclass(frozen=True)
class LocalCommand:
    """A suite to run here: argv (no shell), its directory, extra environment, deadline."""

    argv: tuple[str, ...]
    cwd: Path
    env: Mapping[str, str]
    timeout_s: float
    report: Path  # absolute


def child_environment(extra: Mapping[str, str]) -> dict[str, str]:
    base = {k: v for k in INHERITED if (v := os.environ.get(k)) is not None}
    return base | dict(extra)


# --- the process tree -----------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, pgrp, start time) of a live process, from /proc; None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = raw.rsplit(")", 1)[-1].split()
    # After "pid (comm)": state ppid pgrp session tty tpgid flags minflt cminflt majflt
    # cmajflt utime stime cutime cstime priority nice threads itrealvalue starttime ...
    if len(fields) < 20 or fields[0] == "Z":
        return None
    return int(fields[1]), int(fields[2]), int(fields[19])


def _processes() -> dict[int, tuple[int, int, int]]:
    out = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
                out[int(entry.name)] = stat
    return out


def _marked(pid: int, marker: bytes) -> bool:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:  # gone, or another user's process: not ours either way
        return False
    return environ.startswith(marker) or b"\0" + marker in environ


def _tree(root: int, token: str) -> dict[int, int]:
    """The suite's processes: group `root`, its descendants, its marked ones: pid → start."""
    table = _processes()
    marker = f"{MARKER}={token}\0".encode()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: dict[int, int] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, ()):
            if child not in found:
                found[child] = table[child][2]
                todo.append(child)
    for pid, (_, pgrp, start) in table.items():
        if pid not in found and (pgrp == root or _marked(pid, marker)):
            found[pid] = start
    return found


def _alive(noted: Mapping[int, int]) -> dict[int, int]:
    """The noted processes still running as themselves (same start time: no reused pid)."""
    return {
        pid: start
        for pid, start in noted.items()
        if (stat := _stat(pid)) is not None and stat[2] == start
    }


def _signal_all(noted: Mapping[int, int], group: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, sig)
    for pid in noted:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


async def _end_tree(proc: asyncio.subprocess.Process, token: str) -> None:
    """SIGTERM the suite's processes (group, descendants, marked), then SIGKILL the rest."""
    group = proc.pid  # start_new_session: the child leads its own group
    noted: dict[int, int] = {}

    def left() -> dict[int, int]:
        noted.update(_tree(proc.pid, token))
        return _alive(noted)

    _signal_all(left(), group, signal.SIGTERM)
    deadline = time.monotonic() + _GRACE_S
    while time.monotonic() < deadline:
        if proc.returncode is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 0.1)
        elif left():
            await asyncio.sleep(0.1)
        else:
            return
    _signal_all(left(), group, signal.SIGKILL)
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


# --- the report -----------------------------------------------------------------------------

Fingerprint = tuple[int, int, int] | None  # (inode, size, mtime_ns) or no file


def fingerprint(path: Path) -> Fingerprint:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def read_report(path: Path, before: Fingerprint) -> tuple[bytes | None, str | None]:
    """The report's bytes if this run wrote it, else (None, why)."""
    now = fingerprint(path)
    if now is None:
        return None, f"no report at {path}"
    if now == before:
        return None, (
            f"the report at {path} is stale: this run did not write it (it is unchanged "
            "since before the suite started)"
        )
    if now[1] > MAX_REPORT_BYTES:
        return None, f"the report at {path} is {now[1]} bytes, over the {MAX_REPORT_BYTES} limit"
    try:
        return path.read_bytes(), None
    except OSError as exc:
        return None, f"cannot read the report at {path}: {exc.strerror or exc}"


# --- the run --------------------------------------------------------------------------------


def _not_started(why: str, started: float) -> RunnerOutput:
    return RunnerOutput("not-started", None, time.monotonic() - started, None, None, why)


async def run_local(command: LocalCommand, log_path: Path, cancel: asyncio.Event) -> RunnerOutput:
    """Run the suite to its end, its deadline or `cancel`; never raises for the suite's faults."""
    started = time.monotonic()
    if not command.cwd.is_dir():
        return _not_started(f"the working directory {command.cwd} does not exist", started)
    before = fingerprint(command.report)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(8)
    with log_path.open("ab") as log:
        try:
            proc = await asyncio.create_subprocess_exec(
                *command.argv,
                cwd=command.cwd,
                env=child_environment(command.env) | {MARKER: token},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # its own group (and session): killable whole
            )
        except FileNotFoundError:
            return _not_started(
                f"command not found: {command.argv[0]} (is it installed and on the bot's PATH?)",
                started,
            )
        except PermissionError:
            return _not_started(f"{command.argv[0]} is not executable", started)
    waiter = asyncio.create_task(proc.wait())
    stopper = asyncio.create_task(cancel.wait())
    try:
        done, _ = await asyncio.wait(
            {waiter, stopper}, timeout=command.timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        stopper.cancel()
        # Whatever ended the wait (also our own cancellation), the tree goes with it.
        await asyncio.shield(_end_tree(proc, token))
        waiter.cancel()
    duration = time.monotonic() - started
    report, report_problem = read_report(command.report, before)
    if waiter in done:
        return RunnerOutput("exited", proc.returncode, duration, report, report_problem)
    if stopper in done:
        return RunnerOutput(
            "cancelled", None, duration, report, report_problem, "cancelled; process tree killed"
        )
    return RunnerOutput(
        "timeout",
        None,
        duration,
        report,
        report_problem,
        f"did not finish within {command.timeout_s:g} s; its process tree was killed",
    )
