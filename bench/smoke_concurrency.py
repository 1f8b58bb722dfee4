"""Smoke checks run concurrently: how much faster than one after another, against the lab.

Prints the median wall time of N smoke runs of the Lab's three checks, sequential vs
concurrent (what `smoke <env>` does), and the ratio.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from adapters.smoke import SmokeTarget, run_checks
from lab.core import Lab
from lab.demo import demo_hosts

RUNS = 30


async def _measure(base: str) -> tuple[float, float]:
    targets = [
        SmokeTarget("Health", f"{base}/health", (200,), 5),
        SmokeTarget("Swagger", f"{base}/swagger/index.html", (200,), 5),
        SmokeTarget("Kerberos", f"{base}/api/auth/kerberos", (200, 401), 5),
    ]
    sequential, concurrent = [], []
    for _ in range(RUNS):
        start = time.perf_counter()
        for target in targets:
            await run_checks([target])
        sequential.append(time.perf_counter() - start)
        start = time.perf_counter()
        await run_checks(targets)
        concurrent.append(time.perf_counter() - start)
    return statistics.median(sequential), statistics.median(concurrent)


def main() -> None:
    with (
        tempfile.TemporaryDirectory() as root,
        Lab(demo_hosts(fixed_ports=False), Path(root)) as lab,
    ):
        host = lab.host_for("Lab")
        base = lab.http_base(host)
        for label, slow in (("fast checks", False), ("each check 50 ms slow", True)):
            if slow:
                for check in ("health", "swagger", "kerberos"):
                    lab.set_fault(host, check, "slow", delay_s=0.05)
            seq, conc = asyncio.run(_measure(base))
            print(
                f"{label:>24}: sequential {seq * 1000:7.1f} ms, concurrent {conc * 1000:7.1f} ms,"
                f" ratio {seq / conc:4.2f}x  (median of {RUNS})"
            )


if __name__ == "__main__":
    main()
