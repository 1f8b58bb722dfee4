"""Farms of 1, 4 and 16 hosts against the lab: `status` and a run's per-host step.

Prints, side by side in one run, the median wall time of
- `status`'s read of every host (commands/hosts.py read_hosts: all hosts at once), and
- one per-host step of a run (stop then start a site: bot/runs/farm.py on_hosts, all hosts
  at once) next to the same step host after host (what runs did before),
- the package sync step's per-host call (sync-package with the package already there: each
  host hashes its copy) all at once, next to host after host,
each for 1, 4 and 16 hosts, and the ratios to one host. Twice: with the lab answering at
once (what is left is the bot's own CPU per WinRM call — pywinrm sends six HTTP requests
and builds and parses their SOAP per call, ~15 ms of Python that threads cannot run in
parallel), and with every script taking 0.3 s on its host (PowerShell starting up on a real
Windows host: where running the hosts at once pays). The lab runs in its own process.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from adapters.packages import PackageProblem, PackageStore
from bench.lab_process import lab_process
from bot.demo import DEMO_AUDIT_KEY
from bot.runs.farm import on_hosts
from bot.services import host_ops
from commands.config import Config, Environment, Host
from commands.hosts import read_hosts
from lab.demo import DEMO_PASSWORD, DEMO_USERNAME, PORTAL
from tests.farm import farm_config, farm_hosts

SIZES = (1, 4, 16)
SOURCE = "\\\\files\\mcms\\offline"  # the store as the lab's hosts reach it
RUNS = 7


async def _median(work: Callable[[], Awaitable[object]]) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        await work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


Figures = dict[int, tuple[float, float, float, float, float]]


async def _measure(config: Config) -> Figures:
    from bot.services import open_runtime

    runtime = await open_runtime(config)
    services = runtime.services
    out = {}
    try:
        for size in SIZES:
            env = config.environments[f"Farm{size}"]
            hosts: Sequence[Host] = env.hosts

            async def cycle(host: Host) -> None:
                ops = host_ops(host)
                await ops.stop_site(PORTAL, timeout_s=30)
                await ops.start_site(PORTAL, timeout_s=30)

            async def one_by_one(hosts: Sequence[Host] = hosts) -> None:
                for host in hosts:
                    await cycle(host)

            async def sync(host: Host, env: Environment = env) -> None:
                digest = PackageStore(env.package_store).verify_sync("1.4.2")
                assert not isinstance(digest, PackageProblem), digest
                await host_ops(host).sync_package(
                    "1.4.2", digest.sha256, SOURCE, env.host_package_dir, timeout_s=30
                )

            async def sync_one_by_one(hosts: Sequence[Host] = hosts) -> None:
                for host in hosts:
                    await sync(host)

            status = await _median(lambda env=env: read_hosts(services, env))
            together = await _median(lambda hosts=hosts: on_hosts(hosts, 60, cycle))
            sequential = await _median(one_by_one)
            sync_together = await _median(lambda hosts=hosts: on_hosts(hosts, 60, sync))
            sync_sequential = await _median(sync_one_by_one)
            out[size] = (status, together, sequential, sync_together, sync_sequential)
    finally:
        await runtime.close()
    return out


def _print(label: str, figures: Figures) -> None:
    base_status, base_step, _, base_sync, _ = figures[1]
    print(f"{label}:")
    for size, (status, together, sequential, sync, sync_seq) in figures.items():
        print(
            f"  {size:>2} hosts: status {status * 1000:6.0f} ms ({status / base_status:4.1f}x"
            f" 1 host) | step, all at once {together * 1000:6.0f} ms ({together / base_step:4.1f}x)"
            f" | host after host {sequential * 1000:6.0f} ms ({sequential / together:4.1f}x that)"
            f" | sync, all at once {sync * 1000:6.0f} ms ({sync / base_sync:4.1f}x)"
            f" | host after host {sync_seq * 1000:6.0f} ms ({sync_seq / sync:4.1f}x that)"
        )


def main() -> None:
    os.environ.setdefault("MCMS_AUDIT_KEY", DEMO_AUDIT_KEY)  # the audit chain is keyed
    os.environ.setdefault("MCMS_LAB_WINRM_USER", DEMO_USERNAME)
    os.environ.setdefault("MCMS_LAB_WINRM_PASSWORD", DEMO_PASSWORD)
    layout = {f"Farm{n}": [f"farm{n}-web{i:02d}" for i in range(1, n + 1)] for n in SIZES}
    print(f"median of {RUNS}; {os.cpu_count()} CPUs; the lab in its own process")
    for label, latency in (("lab answers at once", 0.0), ("each script takes 0.3 s", 0.3)):
        with (
            tempfile.TemporaryDirectory() as root,
            lab_process(farm_hosts(layout, script_latency_s=latency)) as lab,
        ):
            config = farm_config(lab, Path(root), layout)  # type: ignore[arg-type]
            _print(label, asyncio.run(_measure(config)))


if __name__ == "__main__":
    main()
