"""Audit append cost: what one fsync'd, hash-chained line costs, alone and under contention.

Prints lines per second for one writer and for 4 threads sharing one AuditLog, and the
ratio — the audit is on every step of a run, so it must stay far below a step's duration.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from adapters.audit import AuditLog, verify

LINES = 400


def _single(directory: Path) -> float:
    log = AuditLog(directory, ZoneInfo("Asia/Seoul"))
    start = time.perf_counter()
    for i in range(LINES):
        log.append_sync("StepSucceeded", environment="Lab", step=f"s{i}", duration_ms=i)
    return LINES / (time.perf_counter() - start)


def _threads(directory: Path, count: int = 4) -> float:
    log = AuditLog(directory, ZoneInfo("Asia/Seoul"))
    per = LINES // count

    def work(n: int) -> None:
        for i in range(per):
            log.append_sync("StepSucceeded", environment="Lab", step=f"t{n}-{i}")

    workers = [threading.Thread(target=work, args=(n,)) for n in range(count)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return per * count / (time.perf_counter() - start)


def main() -> None:
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        one = _single(Path(a))
        four = _threads(Path(b))
        assert verify(Path(a)).ok and verify(Path(b)).ok
        print(f"1 writer : {one:8.0f} lines/s ({1000 / one:5.2f} ms per line)")
        print(f"4 threads: {four:8.0f} lines/s ({1000 / four:5.2f} ms per line)")
        print(f"ratio 4 threads / 1 writer: {four / one:4.2f}x (lines are serialized by design)")


if __name__ == "__main__":
    main()
