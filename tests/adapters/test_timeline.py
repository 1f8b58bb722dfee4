"""The Markdown timeline: header once per day, one line per entry, time in the configured zone."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from adapters.clock import ManualClock
from adapters.timeline import Timeline

KST = ZoneInfo("Asia/Seoul")
START = datetime(2026, 11, 26, 23, 50, 5, tzinfo=UTC)  # 08:50:05 KST on the 27th


def test_first_line_creates_the_file_with_its_header(tmp_path: Path) -> None:
    timeline = Timeline(tmp_path / "docs" / "logs", KST, clock=ManualClock(START))
    path = timeline.append_sync("Kim approved rollback of Lab to 1.4.2")
    assert path == tmp_path / "docs" / "logs" / "Timeline_2026-11-27.md"
    assert path.read_text(encoding="utf-8") == (
        "# Timeline 2026-11-27 (Asia/Seoul)\n\n"
        "- 08:50:05 KST — Kim approved rollback of Lab to 1.4.2\n"
    )


def test_day_rolls_over_at_midnight_in_the_configured_zone(tmp_path: Path) -> None:
    clock = ManualClock(datetime(2026, 11, 27, 14, 59, 59, tzinfo=UTC))
    timeline = Timeline(tmp_path, KST, clock=clock)
    first = timeline.append_sync("before midnight")
    clock.advance(timedelta(seconds=1))
    second = timeline.append_sync("after midnight")
    assert (first.name, second.name) == ("Timeline_2026-11-27.md", "Timeline_2026-11-28.md")
    assert second.read_text(encoding="utf-8").endswith("- 00:00:00 KST — after midnight\n")


def test_zone_abbreviation_follows_the_zone(tmp_path: Path) -> None:
    timeline = Timeline(tmp_path, ZoneInfo("Europe/Berlin"), clock=ManualClock(START))
    path = timeline.append_sync("x")
    assert "- 00:50:05 CET — x\n" in path.read_text(encoding="utf-8")


def test_text_with_line_breaks_stays_one_line_and_is_redacted(tmp_path: Path) -> None:
    timeline = Timeline(
        tmp_path, KST, clock=ManualClock(START), redact=lambda s: s.replace("hunter2", "***")
    )
    path = timeline.append_sync("failed:\nlogin hunter2\r\n# injected heading")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[2:] == ["- 08:50:05 KST — failed: login *** # injected heading"]


async def test_concurrent_writers_write_one_header_and_every_line(tmp_path: Path) -> None:
    timeline = Timeline(tmp_path, KST, clock=ManualClock(START))
    other = Timeline(tmp_path, KST, clock=ManualClock(START))  # a second instance, same dir

    def burst(name: str) -> None:
        for i in range(25):
            other.append_sync(f"{name}-{i}")

    threads = [threading.Thread(target=burst, args=(f"t{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    await asyncio.gather(*(timeline.append(f"a-{i}") for i in range(50)))
    for t in threads:
        t.join()
    lines = (tmp_path / "Timeline_2026-11-27.md").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "# Timeline 2026-11-27 (Asia/Seoul)"
    assert sum(line.startswith("# ") for line in lines) == 1
    entries = [line.rsplit(" — ", 1)[1] for line in lines[2:]]
    assert sorted(entries) == sorted(
        [f"a-{i}" for i in range(50)] + [f"t{n}-{i}" for n in range(4) for i in range(25)]
    )
