"""Keeping this instance's leases and taking over a dead instance's runs (PostgreSQL only).

Every third of the lease this instance renews everything it owns — running runs, their
environment locks, the watcher leases — and settles what an instance that stopped renewing
left: its runs interrupted, their locks freed, their conversations told, by exactly one
survivor (adapters/store/runs.py). With SQLite there is one instance, and a restart settles
everything at start (recovery.py), so this loop does not run.
"""

from __future__ import annotations

import asyncio
import logging

from bot.ports import Reporter
from bot.runs.recovery import take_over
from commands.context import Services

log = logging.getLogger(__name__)
_telling: set[asyncio.Task[None]] = set()


def renew_every_s(lease_s: float) -> float:
    """A third of the lease: two renewals may be lost before it runs out."""
    return lease_s / 3


async def lease_once(services: Services, reporter: Reporter) -> int:
    """Renew ours, then settle the dead ones'; how many runs were taken over."""
    await services.store.renew_leases()
    recovered = await take_over(services)
    for run in recovered.runs:
        log.warning(
            "took over a run of a lost instance",
            extra={"run_id": run.run_id, "instance": run.owner},
        )
    if recovered.runs:
        # Telling reads the hosts over WinRM: never let it hold up the next renewal.
        task = asyncio.create_task(recovered.tell(services, reporter))
        _telling.add(task)
        task.add_done_callback(_telling.discard)
    return len(recovered.runs)


async def lease_loop(services: Services, reporter: Reporter) -> None:
    every = renew_every_s(services.store.lease_s)
    while True:
        try:
            await lease_once(services, reporter)
        except Exception:
            log.exception("renewing the leases or taking over failed; again in %g s", every)
        await asyncio.sleep(every)
