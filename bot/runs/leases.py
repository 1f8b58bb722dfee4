"""Keeping this instance's leases and taking over a dead instance's runs (PostgreSQL only).

Every third of the lease this instance renews everything it owns — running runs, their
environment locks, the watcher leases, its kept final card states, its blue/green flows —
and settles what an instance that stopped renewing left: its runs interrupted, their hosts
restored per on_failure, their locks freed, their conversations told, its blue/green flows
interrupted (the router read and told), its undelivered final card states sent — each by
exactly one survivor (adapters/store/runs.py, flows.py). With SQLite there is one instance,
and a restart settles everything at start (recovery.py), so this loop does not run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from adapters.store import Store
from bot.ports import Reporter
from bot.runs.recovery import take_over
from commands.context import Services

log = logging.getLogger(__name__)
_telling: set[asyncio.Task[None]] = set()


def renew_every_s(lease_s: float) -> float:
    """A third of the lease: two renewals may be lost before it runs out."""
    return lease_s / 3


# Claims and queues the final card states a dead process left (bot/teams/reporter.py).
ResumeFinals = Callable[[], Awaitable[int]]


async def lease_once(
    services: Services, reporter: Reporter, resume_finals: ResumeFinals | None = None
) -> int:
    """Renew ours, then settle the dead ones'; how many runs were taken over."""
    await renew(services.store)
    recovered = await take_over(services)
    # A dead instance's blue/green flows: else their pair stays held until a restart.
    for flow_id in await services.bluegreen.take_over():
        log.warning("took over a blue/green flow of a lost instance", extra={"run_id": flow_id})
    if resume_finals is not None:
        await resume_finals()
    for run in recovered.runs:
        log.warning(
            "took over a run of a lost instance",
            extra={"run_id": run.run_id, "instance": run.owner},
        )
    for request in recovered.requests:
        log.warning(
            "refused an approval a lost instance never started",
            extra={"request_id": request.id},
        )
    if recovered.runs or recovered.requests:
        # Telling reads the hosts over WinRM: never let it hold up the next renewal.
        task = asyncio.create_task(recovered.tell(services, reporter))
        _telling.add(task)
        task.add_done_callback(_telling.discard)
    return len(recovered.runs)


def settling() -> list[asyncio.Task[None]]:
    """The takeovers this process is still settling (restoring hosts, telling)."""
    return list(_telling)


async def renew(store: Store) -> None:
    """Renew everything this process holds, and its process lease (which says it lives:
    the approvals it took are its own to start)."""
    await store.hold_lease(store.process_lease())
    await store.renew_leases()


async def renew_loop(store: Store) -> None:
    """Only keep this process's leases (the break-glass CLI beside bot instances)."""
    every = renew_every_s(store.lease_s)
    while True:
        try:
            await renew(store)
        except Exception:
            log.exception("renewing the leases failed; again in %g s", every)
        await asyncio.sleep(every)


async def lease_loop(
    services: Services, reporter: Reporter, resume_finals: ResumeFinals | None = None
) -> None:
    every = renew_every_s(services.store.lease_s)
    while True:
        try:
            await lease_once(services, reporter, resume_finals)
        except Exception:
            log.exception("renewing the leases or taking over failed; again in %g s", every)
        await asyncio.sleep(every)
