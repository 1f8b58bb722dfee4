"""Retention: smoke logs older than 14 days (by name AND mtime), DR check folders likewise
(by their manifest's day AND the newest mtime inside), notifications older than 30 days
(by name, through the audit's own prune, so the chain still verifies); today's files
never; every deletion logged."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import pytest

from adapters.audit import AuditLog, verify
from adapters.clock import ManualClock
from adapters.dr.artifacts import RunFolder
from adapters.retention import apply_retention, prune_dr_runs, prune_smoke_logs

if TYPE_CHECKING:
    from tests.alert_helpers import AlertBot

pytest_plugins = ["tests.alert_fixtures"]

KST = ZoneInfo("Asia/Seoul")
NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)  # 17:00 KST
TODAY = NOW.astimezone(KST).date()


def smoke_log(directory: Path, day: date, *, age_days: float, suffix: str = "") -> Path:
    """A smoke log named for `day`, last modified `age_days` before NOW."""
    path = directory / f"smoke_{day:%Y%m%d}_101500{suffix}.log"
    path.write_text("# smoke Lab\nRESULT PASS 3/3\n")
    stamp = (NOW - timedelta(days=age_days)).timestamp()
    os.utime(path, (stamp, stamp))
    return path


def days_ago(n: int) -> date:
    return TODAY - timedelta(days=n)


def dr_folder(directory: Path, run_id: str, day: date, *, age_days: float) -> Path:
    """A DR check's folder for a run on `day`, every file last modified `age_days` ago."""
    folder = RunFolder.create(directory, run_id, {"run_id": run_id, "day": day.isoformat()})
    folder.write("DR-AXE.log", b"axe output")
    stamp = (NOW - timedelta(days=age_days)).timestamp()
    for path in [*folder.path.iterdir(), folder.path]:
        os.utime(path, (stamp, stamp))
    return folder.path


@pytest.mark.parametrize(
    ("name_age", "mtime_age", "deleted"),
    [
        (20, 20, True),  # old by name and by mtime
        (15, 15, True),
        (14, 30, False),  # exactly 14 days old by name: not older than 14 days
        (20, 3, False),  # restored or copied in recently: kept until it sits untouched
        (3, 20, False),  # a recent run whose mtime is old (copied with -p): kept
        (0, 40, False),  # today's file never goes
    ],
    ids=["old", "fifteen-days", "boundary", "recent-mtime", "recent-name", "today"],
)
def test_smoke_logs_go_only_when_old_by_name_and_mtime(
    tmp_path: Path, name_age: int, mtime_age: float, deleted: bool
) -> None:
    path = smoke_log(tmp_path, days_ago(name_age), age_days=mtime_age)
    gone = prune_smoke_logs(tmp_path, 14, TODAY, NOW)
    assert (gone == [path]) is deleted
    assert path.exists() is not deleted


def test_files_that_are_not_smoke_logs_are_never_touched(tmp_path: Path) -> None:
    keep = [
        tmp_path / "notes.txt",
        tmp_path / "smoke_2025.log",
        tmp_path / "smoke_20251399_000000.log",
    ]
    for path in keep:
        path.write_text("x")
        stamp = (NOW - timedelta(days=400)).timestamp()
        os.utime(path, (stamp, stamp))
    numbered = smoke_log(tmp_path, days_ago(30), age_days=30, suffix="_2")
    assert prune_smoke_logs(tmp_path, 14, TODAY, NOW) == [numbered]
    assert all(p.exists() for p in keep)


def write_audit_days(directory: Path, ages: list[int]) -> None:
    clock = ManualClock(NOW)
    audit = AuditLog(directory, KST, clock=clock)
    for age in sorted(ages, reverse=True):
        clock.set(NOW - timedelta(days=age))
        audit.append_sync("Smoke", environment="Lab", status="passed")
        audit.append_sync("Smoke", environment="Lab", status="failed")


@pytest.mark.parametrize(
    ("day_age", "mtime_age", "deleted"),
    [(20, 20, True), (14, 30, False), (20, 3, False), (3, 20, False), (0, 40, False)],
    ids=["old", "boundary", "recent-mtime", "recent-day", "today"],
)
def test_dr_check_folders_go_only_when_old_by_day_and_mtime(
    tmp_path: Path, day_age: int, mtime_age: float, deleted: bool
) -> None:
    folder = dr_folder(tmp_path, "dr-0a1b2c3d", days_ago(day_age), age_days=mtime_age)
    gone = prune_dr_runs(tmp_path, 14, TODAY, NOW)
    assert (gone == [folder]) is deleted
    assert folder.exists() is not deleted


def test_a_dr_folder_looked_at_recently_stays_and_strangers_are_never_touched(
    tmp_path: Path,
) -> None:
    touched = dr_folder(tmp_path, "dr-00000001", days_ago(30), age_days=30)
    os.utime(touched / "DR-AXE.log", None)  # someone reopened its log today: it stays
    strangers = [tmp_path / "dr-00000002", tmp_path / "reports", tmp_path / "dr-XYZ"]
    for path in strangers:  # no manifest, or not a run id: not ours
        path.mkdir()
        stamp = (NOW - timedelta(days=400)).timestamp()
        os.utime(path, (stamp, stamp))
    old = dr_folder(tmp_path, "dr-00000003", days_ago(30), age_days=30)
    assert prune_dr_runs(tmp_path, 14, TODAY, NOW) == [old]
    assert touched.exists() and all(p.exists() for p in strangers)


def test_notifications_older_than_30_days_go_and_the_chain_still_verifies(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    audit_dir, smoke_dir = tmp_path / "notifications", tmp_path / "smoke"
    smoke_dir.mkdir()
    write_audit_days(audit_dir, [45, 31, 30, 1, 0])
    today_file = audit_dir / f"{TODAY.isoformat()}.jsonl"
    stamp = (NOW - timedelta(days=90)).timestamp()
    os.utime(today_file, (stamp, stamp))  # an old mtime does not make today's file old
    old_smoke = smoke_log(smoke_dir, days_ago(20), age_days=20)

    with caplog.at_level(logging.INFO, logger="adapters.retention"):
        pruned = apply_retention(smoke_dir, 14, audit_dir, 30, TODAY, NOW)

    assert [p.name for p in pruned.notifications] == [
        f"{days_ago(45).isoformat()}.jsonl",
        f"{days_ago(31).isoformat()}.jsonl",
    ]
    assert pruned.smoke_logs == (old_smoke,)
    left = sorted(p.name for p in audit_dir.glob("*.jsonl"))
    assert left == [f"{d.isoformat()}.jsonl" for d in (days_ago(30), days_ago(1), TODAY)]
    report = verify(audit_dir)
    assert report.ok, report.problems
    logged = [r.getMessage() for r in caplog.records]
    assert sum("deleted notification log" in m for m in logged) == 2
    assert sum("deleted smoke log" in m for m in logged) == 1


async def test_the_bot_prunes_at_start_and_audits_what_went(alert_bot: AlertBot) -> None:
    bot = alert_bot
    smoke_dir = Path(bot.config.paths.smoke_logs_dir)
    smoke_dir.mkdir(parents=True)
    real_now = datetime.now(UTC)
    old = smoke_dir / f"smoke_{(real_now - timedelta(days=40)).astimezone(KST):%Y%m%d}_101500.log"
    old.write_text("old")
    stamp = (real_now - timedelta(days=40)).timestamp()
    os.utime(old, (stamp, stamp))
    fresh = smoke_dir / f"smoke_{real_now.astimezone(KST):%Y%m%d}_000000.log"
    fresh.write_text("today")
    old_day = (real_now - timedelta(days=40)).astimezone(KST).date()
    old_check = RunFolder.create(smoke_dir / "dr", "dr-0ddba11d", {"day": old_day.isoformat()})
    for path in [*old_check.path.iterdir(), old_check.path]:
        os.utime(path, (stamp, stamp))
    chat = await bot.start()
    audit = Path(chat.config.paths.audit_dir)

    def pruned_events() -> list[dict[str, object]]:
        lines = [json.loads(x) for p in audit.glob("*.jsonl") for x in p.read_text().splitlines()]
        return [e for e in lines if e["event"] == "LogsPruned"]

    async with asyncio.timeout(5):
        while not pruned_events():
            await asyncio.sleep(0.02)
    assert not old.exists() and fresh.exists()
    assert not old_check.path.exists()
    [pruned] = pruned_events()
    assert pruned["detail"] == {
        "smoke_logs": [old.name],
        "notifications": [],
        "dr_runs": ["dr-0ddba11d"],
        "smoke_log_days": 14,
        "notification_days": 30,
    }
