"""One log file per smoke run: artifacts/offline/logs/smoke_YYYYMMDD_HHMMSS.log.

The name uses the configured zone, like the playbook's `smoke_20250929_114525.log` (KST).
A file is created exclusively, never overwritten: two runs in one second get `_2`, `_3`...
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from adapters.smoke import NO_ANSWER, CheckResult


def render_log(environment: str, results: Sequence[CheckResult], at: datetime, tz: ZoneInfo) -> str:
    local = at.astimezone(tz)
    lines = [
        f"# smoke {environment} {local:%Y-%m-%d %H:%M:%S} {local.tzname()} ({at.isoformat()})",
    ]
    for r in results:
        expect = "/".join(str(s) for s in r.expect)
        cause = f" ({r.error})" if r.status == NO_ANSWER and r.error else ""
        lines.append(
            f"{r.name}\t{r.url}\tstatus={r.status}{cause}\texpected={expect}\t"
            f"latency_ms={r.latency_ms}\t{'PASS' if r.passed else 'FAIL'}"
        )
    passed = sum(r.passed for r in results)
    lines.append(f"RESULT {'PASS' if passed == len(results) else 'FAIL'} {passed}/{len(results)}")
    return "\n".join(lines) + "\n"


def write_smoke_log(
    directory: Path, environment: str, results: Sequence[CheckResult], at: datetime, tz: ZoneInfo
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"smoke_{at.astimezone(tz):%Y%m%d_%H%M%S}"
    data = render_log(environment, results, at, tz).encode("utf-8")
    for n in range(1, 1000):
        path = directory / (f"{stem}.log" if n == 1 else f"{stem}_{n}.log")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return path
    raise RuntimeError(f"more than 999 smoke logs named {stem}* in {directory}")
