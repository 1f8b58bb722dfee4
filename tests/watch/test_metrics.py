"""GET /metrics, parsed with prometheus-client's own parser, against what the test did; the
conventions Prometheus tools expect (base units, histograms, `_total`, no `_created`, an
environment label, build info, the process collector); and the Grafana dashboard under docs/
names only series that /metrics exposes."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from bot.server import METRICS_KEY
from bot.version import installed_version
from bot.watch.metrics import POOL_STATES, SMOKE_BUCKETS_S, STEP_BUCKETS_S
from bot.watch.metrics_server import make_metrics_app
from commands.config import Metrics, QueueDepthCheck
from tests.alert_helpers import fast_watch, lab_runs, watch_config
from tests.runs.test_rollback_flow import LAB_STEPS

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from tests.alert_helpers import AlertBot
    from tests.runs.test_rollback_flow import LAB_STEPS
from tests.conftest import Chat

pytest_plugins = ["tests.alert_fixtures"]

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
QUEUE_DEPTH = 7


@pytest.fixture
async def worker_status() -> AsyncIterator[str]:
    """A Worker status endpoint on loopback: {"worker": {"queue": 7}}."""

    async def status(request: web.Request) -> web.Response:
        return web.json_response({"worker": {"queue": QUEUE_DEPTH, "state": "Running"}})

    app = web.Application()
    app.router.add_get("/worker/status", status)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/worker/status"
    finally:
        await runner.cleanup()


async def scrape(chat: Chat) -> dict[str, Metric]:
    return {m.name: m for m in text_string_to_metric_families(await scrape_text(chat))}


async def scrape_text(chat: Chat) -> str:
    """GET /metrics from the metrics listener the bot serves beside the Teams one."""
    app = make_metrics_app(chat.client.server.app[METRICS_KEY], chat.config.metrics)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/metrics")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return await response.text()


def value(families: dict[str, Metric], sample: str, **labels: str) -> float:
    for family in families.values():
        for s in family.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    raise AssertionError(f"no sample {sample} {labels}")


async def test_metrics_hold_what_the_test_did(alert_bot: AlertBot, worker_status: str) -> None:
    bot = alert_bot
    watch = fast_watch(queue_depth=QueueDepthCheck(url=worker_status, json_path="worker.queue"))
    bot.config = watch_config(bot.config, None, watch=watch)
    chat = await bot.start()

    # A rollback of InternalStage (not watched, so the watcher's counts stay Lab's), with
    # Teams answering the first proactive send with a 429.
    await chat.say("rollback InternalStage")
    approval = chat.cards[-1]
    request_id = approval["actions"][0]["data"]["request_id"]
    chat.connector.fail_next(1, status=429, retry_after=0.05)
    await chat.click("approve", approval)
    assert (await chat.wait_request(request_id, "succeeded")).state == "succeeded"
    await chat.say("rollback InternalStage")  # a second request, left pending

    # Lab's Health breaks until an alert is raised; the app pool read comes on its own cadence.
    bot.lab.set_fault(bot.lab.host_for("Lab"), "health", "down")
    await bot.runs_until(lambda rs: any(r.action == "raise" for r in lab_runs(rs)))
    families = await scrape(chat)
    while "mcms_app_pool_state" not in families or not families["mcms_app_pool_state"].samples:
        seen = len(bot.watcher.history)
        await bot.runs_until(lambda rs, seen=seen: len(rs) > seen)  # type: ignore[misc]
        families = await scrape(chat)
    await bot.watcher.stop()  # no run may land between reading the history and the scrape
    runs = lab_runs(bot.watcher.history)
    families = await scrape(chat)

    assert value(families, "mcms_runs_total", command="rollback", outcome="succeeded") == 1
    assert value(families, "mcms_runs_total", environment="InternalStage") == 1
    assert not [
        s for s in families["mcms_runs"].samples if s.labels["environment"] != "InternalStage"
    ]
    run = await chat.store.run_for_request(request_id)
    assert run is not None
    steps = await chat.store.list_steps(run.id)
    assert (
        value(
            families, "mcms_step_duration_seconds_count", environment="InternalStage", step="smoke"
        )
        == 1
    )
    total_steps = sum(
        s.value for s in families["mcms_step_duration_seconds"].samples if s.name.endswith("_count")
    )
    assert total_steps == len(steps) == len(LAB_STEPS)
    bounds = {s.labels["le"] for s in families["mcms_step_duration_seconds"].samples
              if s.name.endswith("_bucket")}  # fmt: skip
    assert bounds == {floatToGoString(b) for b in STEP_BUCKETS_S} | {"+Inf"}
    smoke_ms = next(ms for i, state, ms, _ in steps if i == LAB_STEPS.index("smoke"))
    assert value(families, "mcms_step_duration_seconds_sum", step="smoke") == pytest.approx(
        (smoke_ms or 0) / 1000
    )
    assert value(families, "mcms_approvals_pending", environment="InternalStage") == 1
    for quiet in ("Lab", "InternalProd"):  # present at zero, so a panel never shows "no data"
        assert value(families, "mcms_approvals_pending", environment=quiet) == 0

    last = runs[-1]
    health = [next(c for c in r.results if c.name == "Health") for r in runs]
    assert families["mcms_smoke_duration_seconds"].type == "histogram"
    lab_health = {"environment": "Lab", "check": "Health"}
    assert value(families, "mcms_smoke_duration_seconds_count", **lab_health) == len(runs)
    assert value(families, "mcms_smoke_duration_seconds_sum", **lab_health) == pytest.approx(
        sum(c.latency_ms for c in health) / 1000
    )
    for bound in SMOKE_BUCKETS_S:
        within = sum(c.latency_ms / 1000 <= bound for c in health)
        le = floatToGoString(bound)
        assert value(families, "mcms_smoke_duration_seconds_bucket", le=le, **lab_health) == within
    assert value(families, "mcms_smoke_runs_total", environment="Lab") == len(runs)
    failed = [r for r in runs if not r.passed]
    assert value(families, "mcms_smoke_failed_runs_total", environment="Lab") == len(failed)
    assert value(families, "mcms_smoke_failures_total", environment="Lab", check="Health") == len(
        failed
    )
    assert value(families, "mcms_smoke_failures_total", environment="Lab", check="Swagger") == 0
    assert value(families, "mcms_smoke_consecutive_failures", environment="Lab") == (
        last.consecutive_failures
    )
    assert last.consecutive_failures >= 2
    assert value(families, "mcms_alert_open", environment="Lab") == 1
    host = bot.lab.host_for("Lab")
    for pool in ("MCMS.Portal", "MCMS.Api"):
        assert value(families, "mcms_app_pool_state", environment="Lab", host=host, pool=pool,
                     mcms_app_pool_state="Started") == 1  # fmt: skip
        assert value(families, "mcms_app_pool_state", environment="Lab", host=host, pool=pool,
                     mcms_app_pool_state="Stopped") == 0  # fmt: skip
    assert value(families, "mcms_worker_queue_depth", environment="Lab") == QUEUE_DEPTH

    assert value(families, "mcms_outbound_throttled_total") == 1
    assert value(families, "mcms_outbound_retries_total") == 1
    assert value(families, "mcms_outbound_sent_total") >= 3
    assert_prometheus_conventions(families, await scrape_text(chat))


# Series about the whole process rather than one environment.
PROCESS_WIDE = {"mcms_build_info", "mcms_outbound_sent", "mcms_outbound_throttled",
                "mcms_outbound_retries", "mcms_outbound_failed"}  # fmt: skip


def assert_prometheus_conventions(families: dict[str, Metric], text: str) -> None:
    """What Prometheus tools expect of every series we expose (the issue's reproduction:
    smoke latency was a last-value gauge in ms, runs had no environment, `_created` doubled
    every counter, and there was no build info nor process collector)."""
    assert "_created" not in text
    ours = {name: f for name, f in families.items() if name.startswith("mcms_")}
    assert not [n for n in ours if n.endswith(("_ms", "_milliseconds"))], "base units only"
    for name, family in ours.items():
        if family.type == "counter":
            assert {s.name for s in family.samples} <= {f"{name}_total"}, name
        if family.type == "histogram":
            assert name.endswith("_seconds"), name
        if name not in PROCESS_WIDE:
            assert family.samples, name
            assert all(s.labels.get("environment") for s in family.samples), name
    assert value(families, "mcms_build_info", version=installed_version() or "?") == 1
    for process in ("process_cpu_seconds_total", "process_resident_memory_bytes"):
        assert value(families, process) > 0, process


def series_names(families: dict[str, Metric]) -> set[str]:
    """Every series name /metrics declares: sample names, and those its types imply."""
    names: set[str] = set()
    for family in families.values():
        names |= {s.name for s in family.samples}
        suffixes = {
            "counter": ["_total"],
            "histogram": ["_bucket", "_count", "_sum"],
        }.get(family.type, [""])
        names |= {family.name + suffix for suffix in suffixes}
    return names


async def test_dashboard_loads_and_names_only_series_that_exist(chat: Chat) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exposed = series_names(await scrape(chat))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    names = r"\b(?:mcms|process)_[a-z0-9_]+"
    used = {name for expr in exprs for name in re.findall(names, expr)}
    assert used, "the dashboard queries our series"
    assert used <= exposed, f"not in /metrics: {sorted(used - exposed)}"
    assert all(re.search(r"\bmcms_", e) for e in exprs), "every query reads our series"
    titles = " | ".join(p["title"] for p in dashboard["panels"])
    for panel in ("SLA", "Error rate", "App pool state", "Worker queue depth"):
        assert panel in titles  # the playbook's §7 panels
    assert dashboard.get("id") is None and dashboard["uid"] == "mcms-ops"  # importable as is


def test_dashboard_import_asks_for_the_prometheus_data_source() -> None:
    """`__inputs` makes Grafana's import dialog ask which Prometheus to use; every panel,
    query and variable then names that input, nothing else."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    [source] = dashboard["__inputs"]
    assert (source["type"], source["pluginId"]) == ("datasource", "prometheus")
    wanted = {"type": "prometheus", "uid": f"${{{source['name']}}}"}
    for panel in dashboard["panels"]:
        assert panel["datasource"] == wanted, panel["title"]
        assert all(t["datasource"] == wanted for t in panel["targets"]), panel["title"]
    for variable in dashboard["templating"]["list"]:
        assert variable["datasource"] == wanted, variable["name"]
    required = {(r["type"], r["id"]) for r in dashboard["__requires"]}
    assert ("datasource", "prometheus") in required
    assert {("panel", p["type"]) for p in dashboard["panels"]} <= required


def test_app_pool_state_is_a_state_timeline_naming_every_state() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    [panel] = [p for p in dashboard["panels"] if p["title"] == "App pool state"]
    assert panel["type"] == "state-timeline"
    [target] = panel["targets"]
    [mapping] = panel["fieldConfig"]["defaults"]["mappings"]
    shown = {int(code): option["text"] for code, option in mapping["options"].items()}
    assert sorted(shown.values()) == sorted(POOL_STATES)
    for code, state in shown.items():  # the query turns each state into its mapped number
        assert f"{code} * max by (environment, host, pool) (mcms_app_pool_state{{" in target["expr"]
        assert f'mcms_app_pool_state="{state}"}})' in target["expr"].split(f"{code} * ", 1)[1]


async def test_metrics_are_not_served_on_the_teams_listener(chat: Chat) -> None:
    response = await chat.client.get("/metrics")

    assert response.status == 404


async def test_metrics_listener_defaults_to_loopback_port_9464() -> None:
    assert (Metrics().host, Metrics().port) == ("127.0.0.1", 9464)
    with pytest.raises(ValueError, match="set token_env"):
        Metrics(host="0.0.0.0")  # noqa: S104


async def test_metrics_with_a_token_need_the_bearer(
    chat: Chat, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCMS_METRICS_TOKEN", "scrape-me-please")
    config = Metrics(host="0.0.0.0", token_env="MCMS_METRICS_TOKEN")  # noqa: S104
    app = make_metrics_app(chat.client.server.app[METRICS_KEY], config)
    async with TestClient(TestServer(app)) as client:
        missing = await client.get("/metrics")
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        right = await client.get("/metrics", headers={"Authorization": "Bearer scrape-me-please"})

        assert (missing.status, wrong.status) == (401, 401)
        assert right.status == 200 and "mcms_approvals_pending" in await right.text()
