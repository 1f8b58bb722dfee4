"""GET /metrics: the Prometheus series behind the playbook's Grafana panels (§7).

Named as Prometheus tools expect: base units (seconds), histograms for durations, counters
ending in `_total`, no `_created` series, an `environment` label wherever a series is about
one. Each app has its own CollectorRegistry (never the process-global one), so two apps in
one process — tests, a restart in place — never collide. Three kinds of series:

- observed by the watcher as it runs: smoke check durations (histogram) per environment and
  check, smoke runs and failures, consecutive failures, app pool state (its slower WinRM
  read), Worker queue depth (where a check returns a number), open alerts;
- read at scrape time from the store and the outbound queue, so they survive a restart and
  cannot drift from the records: runs by environment, command and outcome, step durations
  (histogram), approvals pending per environment, outbound Teams sends, 429s, retries and
  failures;
- about the process: `mcms_build_info{version}` and the standard `process_*` series (CPU,
  memory, open files, start time).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from adapters.smoke import CheckResult
from adapters.store import Store
from bot.teams.outbound_queue import OutboundStats
from bot.version import installed_version

# `_created` series double every counter and histogram for a timestamp nobody graphs (and
# prometheus_client decides this for the whole process, so it is decided here, at import).
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream

POOL_STATES = ["Started", "Starting", "Stopped", "Stopping", "Missing", "Unknown", "Unreachable"]
# Step deadlines run from seconds (a stop) to minutes (a deploy): buckets to match.
STEP_BUCKETS_S = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
# A smoke check answers in milliseconds when healthy and is cut at its timeout (5 s by
# default, at most 120 s): fine buckets low down, coarse ones up to the longest timeout.
SMOKE_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


@dataclass
class _Snapshot:
    runs: list[tuple[str, str, str, int]] = field(default_factory=list)
    steps: list[tuple[str, str, int]] = field(default_factory=list)
    pending: list[tuple[str, int]] = field(default_factory=list)


class _RecordsCollector(Collector):
    """Series read from the store (refreshed before each scrape) and the outbound stats."""

    def __init__(self, outbound: Callable[[], OutboundStats], environments: Sequence[str]) -> None:
        self.snapshot = _Snapshot()
        self._outbound = outbound
        self._environments = environments

    def collect(self) -> Iterable[Metric]:
        snap = self.snapshot
        runs = CounterMetricFamily(
            "mcms_runs",
            "Finished rollback/deploy runs",
            labels=["environment", "command", "outcome"],
        )
        for environment, command, state, count in snap.runs:
            if state != "running":
                runs.add_metric([environment, command, state], count)
        yield runs
        yield _step_histogram(snap.steps)
        pending = GaugeMetricFamily(
            "mcms_approvals_pending", "Requests waiting for approval", labels=["environment"]
        )
        counts = dict.fromkeys(self._environments, 0) | dict(snap.pending)
        for environment, count in sorted(counts.items()):
            pending.add_metric([environment], count)
        yield pending
        stats = self._outbound()
        for name, help_text, value in (
            ("mcms_outbound_sent", "Teams posts and edits delivered", stats.sent_total),
            ("mcms_outbound_throttled", "Teams answers HTTP 429", stats.throttled_total),
            ("mcms_outbound_retries", "Teams send attempts retried", stats.retries_total),
            ("mcms_outbound_failed", "Teams posts/edits given up", stats.failed_total),
        ):
            yield CounterMetricFamily(name, help_text, value=value)


def _step_histogram(steps: Sequence[tuple[str, str, int]]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(
        "mcms_step_duration_seconds", "Duration of run steps", labels=["environment", "step"]
    )
    by_step: dict[tuple[str, str], list[float]] = {}
    for environment, name, ms in steps:
        by_step.setdefault((environment, name), []).append(ms / 1000)
    for (environment, name), values in sorted(by_step.items()):
        # `le` spelled as prometheus_client spells its own buckets: 0.5, 1.0, 600.0
        buckets = [(repr(float(b)), float(sum(v <= b for v in values))) for b in STEP_BUCKETS_S]
        buckets.append(("+Inf", float(len(values))))
        family.add_metric([environment, name], buckets, sum(values))
    return family


class Metrics:
    """The app's registry and the watcher's observations; `render()` is the scrape."""

    def __init__(
        self,
        store: Store,
        outbound: Callable[[], OutboundStats],
        environments: Sequence[str] = (),
    ) -> None:
        self._store = store
        self.registry = CollectorRegistry()
        r = self.registry
        labels = ["environment", "check"]
        build = Info("mcms_build", "The running mcms-bot", registry=r)
        build.info({"version": installed_version() or "unknown"})
        ProcessCollector(registry=r)
        self.smoke_duration = Histogram(
            "mcms_smoke_duration_seconds", "Duration of watcher smoke checks (a check cut at "
            "its timeout counts its timeout)", labels, buckets=SMOKE_BUCKETS_S, registry=r,
        )  # fmt: skip
        self.smoke_runs = Counter(
            "mcms_smoke_runs", "Watcher smoke runs", ["environment"], registry=r
        )
        self.smoke_failed_runs = Counter(
            "mcms_smoke_failed_runs", "Watcher smoke runs with a failing check", ["environment"],
            registry=r,
        )  # fmt: skip
        self.smoke_failures = Counter(
            "mcms_smoke_failures", "Failed smoke checks", labels, registry=r
        )
        self.consecutive = Gauge(
            "mcms_smoke_consecutive_failures", "Failing watcher runs in a row", ["environment"],
            registry=r,
        )  # fmt: skip
        self.alert_open = Gauge(
            "mcms_alert_open", "1 while a watcher alert is open", ["environment"], registry=r
        )
        self.app_pool = Enum(
            "mcms_app_pool_state", "IIS app pool state as the watcher last read it",
            ["environment", "host", "pool"], states=POOL_STATES, registry=r,
        )  # fmt: skip
        self.queue_depth = Gauge(
            "mcms_worker_queue_depth", "Worker queue depth", ["environment"], registry=r
        )
        self._records = _RecordsCollector(outbound, environments)
        r.register(self._records)

    def observe_smoke(self, environment: str, results: Sequence[CheckResult]) -> None:
        self.smoke_runs.labels(environment).inc()
        if not all(r.passed for r in results):
            self.smoke_failed_runs.labels(environment).inc()
        for result in results:
            self.smoke_duration.labels(environment, result.name).observe(result.latency_ms / 1000)
            if not result.passed:
                self.smoke_failures.labels(environment, result.name).inc()
            else:
                # Present from the first run, so rate() and the dashboard see a zero.
                self.smoke_failures.labels(environment, result.name)

    def set_streak(self, environment: str, failures: int, alert_open: bool) -> None:
        self.consecutive.labels(environment).set(failures)
        self.alert_open.labels(environment).set(int(alert_open))

    def set_pool(self, environment: str, host: str, pool: str, state: str) -> None:
        known = state if state in POOL_STATES else "Unknown"
        self.app_pool.labels(environment, host, pool).state(known)

    def set_queue_depth(self, environment: str, depth: float) -> None:
        self.queue_depth.labels(environment).set(depth)

    async def render(self) -> bytes:
        """Refresh the store-backed series, then the exposition text."""
        snapshot = _Snapshot(
            runs=await self._store.run_outcomes(),
            steps=await self._store.step_durations(),
            pending=await self._store.pending_by_environment(),
        )
        self._records.snapshot = snapshot
        return generate_latest(self.registry)

    async def handle(self, request: web.Request) -> web.Response:
        body = await self.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
