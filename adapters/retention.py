"""Log retention (playbook §7): smoke logs 14 days, the notifications (audit) 30 days.

DR check folders (`dr/<run-id>/`, see adapters/dr/artifacts.py) live beside the smoke logs
and follow the same window and the same rule: the day of the run — the `day` its manifest
holds, as the name holds it for a smoke log — AND the newest mtime inside must both be older
than the window; a folder without a readable manifest (not ours) is never touched.

Smoke logs (`smoke_YYYYMMDD_HHMMSS[_n].log`) go when BOTH their name and their mtime are
older than the window. The name is when the run happened — what "keep 14 days" is about,
and it survives copies and backups, which reset the mtime. The mtime is the guard the other
way: a file someone restored or copied in for an investigation last week, or one whose name
a skewed clock put in the past, stays until it has sat untouched for the window too. A name
we did not write (anything else in the folder) is never touched, and neither is a file
named today.

Notifications are the hash-chained audit: only `adapters.audit.prune` may delete them. It
deletes a prefix of the day files by name (never the newest, so never today's) and anchors
the chain first, so `mcms-bot audit verify` still passes afterwards. The mtime plays no part
there: deleting a file out of name order would cut the chain.
"""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from adapters.audit import prune
from adapters.dr.artifacts import RUN_ID_PATTERN, read_manifest
from adapters.files import fsync_dir

log = logging.getLogger(__name__)

SMOKE_LOG_NAME = re.compile(r"^smoke_(\d{8})_\d{6}(?:_\d+)?\.log$")


@dataclass(frozen=True)
class Pruned:
    """What one retention pass deleted."""

    smoke_logs: tuple[Path, ...] = ()
    notifications: tuple[Path, ...] = ()
    dr_runs: tuple[Path, ...] = ()

    @property
    def total(self) -> int:
        return len(self.smoke_logs) + len(self.notifications) + len(self.dr_runs)


def _name_date(name: str) -> date | None:
    match = SMOKE_LOG_NAME.fullmatch(name)
    if match is None:
        return None
    try:
        return datetime.strptime(match.group(1), "%Y%m%d").date()
    except ValueError:
        return None


def prune_smoke_logs(directory: Path, keep_days: int, today: date, now: datetime) -> list[Path]:
    """Delete smoke logs older than `keep_days` by name AND by mtime (see the module doc).

    `today` is the date in the zone the names are written in; `now` is aware.
    """
    if not directory.is_dir():
        return []
    oldest_kept_day = today - timedelta(days=keep_days)
    mtime_cutoff = now.astimezone(UTC) - timedelta(days=keep_days)
    deleted = []
    for path in sorted(directory.iterdir()):
        day = _name_date(path.name)
        if day is None or day >= oldest_kept_day or day >= today or not path.is_file():
            continue
        mtime = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        if mtime >= mtime_cutoff:
            continue
        path.unlink()
        deleted.append(path)
        log.info(
            "retention: deleted smoke log %s (run of %s, older than %d days)", path, day, keep_days
        )
    if deleted:
        fsync_dir(directory)
    return deleted


def _newest_mtime(folder: Path) -> datetime:
    stamps = [folder.stat().st_mtime]
    stamps += [p.stat().st_mtime for p in folder.rglob("*") if not p.is_symlink()]
    return datetime.fromtimestamp(max(stamps), UTC)


def prune_dr_runs(directory: Path, keep_days: int, today: date, now: datetime) -> list[Path]:
    """Delete DR check folders older than `keep_days` by manifest day AND by mtime."""
    if not directory.is_dir():
        return []
    oldest_kept_day = today - timedelta(days=keep_days)
    mtime_cutoff = now.astimezone(UTC) - timedelta(days=keep_days)
    deleted = []
    for folder in sorted(directory.iterdir()):
        if not RUN_ID_PATTERN.fullmatch(folder.name) or folder.is_symlink() or not folder.is_dir():
            continue
        manifest = read_manifest(folder)
        try:
            day = date.fromisoformat(str(manifest["day"])) if manifest else None
        except (KeyError, ValueError):
            day = None
        if day is None or day >= oldest_kept_day or day >= today:
            continue
        if _newest_mtime(folder) >= mtime_cutoff:
            continue
        shutil.rmtree(folder)
        deleted.append(folder)
        log.info(
            "retention: deleted DR check %s (run of %s, older than %d days)",
            folder,
            day,
            keep_days,
        )
    if deleted:
        fsync_dir(directory)
    return deleted


def prune_notifications(directory: Path, keep_days: int, today: date) -> list[Path]:
    """Delete audit day files dated more than `keep_days` before `today` (chain anchored)."""
    deleted = prune(directory, today - timedelta(days=keep_days))
    for path in deleted:
        log.info("retention: deleted notification log %s (older than %d days)", path, keep_days)
    return deleted


def apply_retention(
    smoke_dir: Path,
    smoke_days: int,
    audit_dir: Path,
    audit_days: int,
    today: date,
    now: datetime,
    dr_dir: Path | None = None,
) -> Pruned:
    """One pass over the folders; blocking file I/O (run it in a worker thread).

    DR check folders (`dr_dir`) keep the smoke logs' window.
    """
    return Pruned(
        smoke_logs=tuple(prune_smoke_logs(smoke_dir, smoke_days, today, now)),
        notifications=tuple(prune_notifications(audit_dir, audit_days, today)),
        dr_runs=tuple(prune_dr_runs(dr_dir, smoke_days, today, now)) if dr_dir else (),
    )
