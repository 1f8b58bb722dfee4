"""The watcher: every environment's smoke checks on its own schedule, and what they mean.

One task per watched environment runs `run_once` every `watch.interval_s` (start to start;
a run that takes longer delays the next, so runs never overlap — a lock also keeps a
manual `run_once` from overlapping a scheduled one). The first run comes one interval after
start: a restart is not an incident. Each run: probe + store + smoke log (commands.smoke),
the pure decision (commands.watch_logic), then the Alerter carries it out. While a run
holds the environment's lock the watcher keeps measuring but raises, reminds and resolves
nothing (an open alert's card says "watch paused: run RUN-ID in progress"); the streak
starts again when the run ends. The streak and the open alert live in the store, so a
restart continues the incident instead of raising it again. A second, slower task per
environment reads the app pools over WinRM for /metrics (WinRM starts a PowerShell process
on the host; HTTP checks are cheap).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from adapters.queue_depth import read_queue_depth
from adapters.smoke import CheckResult
from bot.watch.alerts import Alerter
from bot.watch.metrics import Metrics
from commands.context import Services
from commands.hosts import read_hosts
from commands.smoke import run_smoke
from commands.watch_logic import Nothing, RaiseAlert, Remind, Resolve, decide

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
HISTORY = 200


@dataclass(frozen=True)
class WatchRun:
    """One finished watcher run, for logs, tests and the curious."""

    environment: str
    at: datetime
    passed: bool
    consecutive_failures: int
    action: str  # raise | remind | resolve | nothing
    why: str
    results: tuple[CheckResult, ...]
    took_s: float  # probe to last post: what a slow chat or sink would stretch


def watch_lease(environment: str) -> str:
    """The name of the lease that makes one instance the environment's watcher."""
    return f"watch:{environment}"


class Watcher:
    def __init__(
        self,
        services: Services,
        alerter: Alerter,
        metrics: Metrics,
        *,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._services = services
        self._alerter = alerter
        self._metrics = metrics
        self._sleep = sleep
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._history: deque[WatchRun] = deque(maxlen=HISTORY)
        self._changed = asyncio.Condition()

    @property
    def history(self) -> list[WatchRun]:
        return list(self._history)

    def start(self) -> None:
        for name, env in self._services.config.environments.items():
            if not env.watch.enabled:
                log.info("watcher: %s is not watched (watch.enabled = false)", name)
                continue
            self._tasks.append(asyncio.create_task(self._smoke_loop(name), name=f"watch:{name}"))
            self._tasks.append(asyncio.create_task(self._pool_loop(name), name=f"pools:{name}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        # A clean stop hands the environments over at once instead of after the lease.
        for name in self._services.config.environments:
            try:
                await self._services.store.release_lease(watch_lease(name))
            except Exception:
                log.exception("could not release the watcher lease of %s", name)

    async def _smoke_loop(self, environment: str) -> None:
        interval = self._services.config.environments[environment].watch.interval_s
        await self._sleep(interval)
        while True:
            started = time.monotonic()
            try:
                # One watcher per environment across instances: the lease holder runs the
                # checks; the others try again next interval (and take over once it lapses).
                if await self._services.store.hold_lease(watch_lease(environment)):
                    await self.run_once(environment)
                else:
                    log.debug("watcher: another instance watches %s", environment)
            except Exception:
                log.exception("watcher run for %s failed; next run in %g s", environment, interval)
            await self._sleep(max(0.0, interval - (time.monotonic() - started)))

    async def _pool_loop(self, environment: str) -> None:
        watch = self._services.config.environments[environment].watch
        await self._sleep(watch.interval_s)
        while True:
            try:
                await self.read_pools(environment)
            except Exception:
                log.exception("app pool read for %s failed", environment)
            await self._sleep(watch.app_pool_interval_s)

    async def run_once(self, environment: str) -> WatchRun:
        """Probe, decide, act; never concurrently with another run of the same environment."""
        lock = self._locks.setdefault(environment, asyncio.Lock())
        async with lock:
            return await self._run(environment)

    async def _run(self, environment: str) -> WatchRun:
        services = self._services
        started = time.monotonic()
        watch = services.config.environments[environment].watch
        (results, at), _ = await asyncio.gather(
            run_smoke(services, environment), self._read_queue_depth(environment)
        )
        passed = all(r.passed for r in results)
        previous = await services.store.get_watch_state(environment)
        alert = await services.store.open_alert_for(environment)
        lock = await services.store.lock_holder(environment)
        paused = lock.holder_run_id if lock is not None else None
        if alert is not None and alert.paused_by != paused:
            await self._alerter.mark_paused(alert, paused)
        decision = decide(previous, passed, at, alert, watch, paused)
        await services.store.save_watch_state(decision.state)
        action = decision.action
        alert_open = alert is not None
        if isinstance(action, RaiseAlert):
            streak = decision.state.consecutive_failures
            await self._alerter.raise_alert(environment, results, action.failing_since, streak)
            alert_open = True
        elif isinstance(action, Remind):
            await self._alerter.remind(action.alert_id, results)
        elif isinstance(action, Resolve):
            await self._alerter.resolve(action.alert_id, action.after, results)
            alert_open = False
        self._metrics.observe_smoke(environment, results)
        self._metrics.set_streak(environment, decision.state.consecutive_failures, alert_open)
        run = WatchRun(
            environment,
            at,
            passed,
            decision.state.consecutive_failures,
            action.kind,
            action.why if isinstance(action, Nothing) else "",
            tuple(results),
            time.monotonic() - started,
        )
        # The metrics above and the history move together (no await in between), so a run
        # cancelled at shutdown is in both or in neither.
        self._history.append(run)
        async with self._changed:
            self._changed.notify_all()
        return run

    async def _read_queue_depth(self, environment: str) -> None:
        check = self._services.config.environments[environment].watch.queue_depth
        if check is None:
            return
        depth = await read_queue_depth(str(check.url), check.json_path, check.timeout_s)
        if depth.value is None:
            log.warning("Worker queue depth of %s unreadable: %s", environment, depth.error)
            return
        self._metrics.set_queue_depth(environment, depth.value)

    async def read_pools(self, environment: str) -> None:
        """Read every host's app pool state into /metrics (Unreachable when WinRM fails)."""
        env = self._services.config.environments[environment]

        for line in await read_hosts(self._services, env):
            if line.state is None:
                log.warning(
                    "app pools of %s (%s) unreadable: %s", line.host, environment, line.error
                )
                for pool in env.components.pools:
                    self._metrics.set_pool(environment, line.host, pool, "Unreachable")
            else:
                for found in line.state.pools:
                    self._metrics.set_pool(environment, line.host, found.name, found.state)

    async def wait_for(
        self, done: Callable[[list[WatchRun]], bool], timeout_s: float
    ) -> list[WatchRun]:
        """Wait until `done(history)` holds (tests, and operators poking at a shell)."""
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: done(list(self._history)))
            return list(self._history)
