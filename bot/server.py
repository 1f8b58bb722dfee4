"""Start the bot: load and check the config, open the adapters, serve until a signal."""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from adapters.tls import use_os_trust_store
from bot.logs import setup_logging
from bot.preflight import machine_problems
from bot.runs.executor import Executor
from bot.runs.expiry import DEFAULT_SWEEP_S, expiry_loop
from bot.runs.recovery import recover
from bot.services import Runtime, open_runtime, redactor_for
from bot.teams.activities import CardActionResult
from bot.teams.app import TEAMS_KEY, listen_host, make_app, mode_of
from bot.teams.auth import AuthConfigError
from bot.teams.card_clicks import CardActions
from bot.teams.outbound_queue import OutboundQueue, RetryPolicy
from bot.teams.proactive import TeamsSender
from bot.teams.reporter import QueueReporter
from bot.watch.alert_clicks import AlertActions
from bot.watch.alerts import Alerter
from bot.watch.grafana import GrafanaWebhook
from bot.watch.housekeeping import DAY_S, retention_loop
from bot.watch.metrics import Metrics
from bot.watch.run_alerts import RunAlerts
from bot.watch.watcher import Watcher
from commands.config import Config, ConfigError, load_config
from commands.dispatch import CommandDispatcher
from commands.registry import default_registry
from commands.types import Actor

log = logging.getLogger(__name__)


EXECUTOR_KEY = web.AppKey("executor", Executor)
QUEUE_KEY = web.AppKey("outbound", OutboundQueue)
WATCHER_KEY = web.AppKey("watcher", Watcher)
METRICS_KEY = web.AppKey("metrics", Metrics)
# Long enough for a step in flight to finish; a run cut off here is `interrupted` at start.
DRAIN_TIMEOUT_S = 60.0


def build_app(
    runtime: Runtime,
    *,
    sweep_s: float = DEFAULT_SWEEP_S,
    outbound_policy: RetryPolicy | None = None,
    retention_every_s: float = DAY_S,
) -> web.Application:
    """The aiohttp app wired to the real commands, the executor and the outbound queue."""
    services = runtime.services
    config = services.config
    dispatcher = CommandDispatcher(services, default_registry())
    # The card handler needs the executor, which needs the app's adapter to send: bind late.
    actions: list[CardActions] = []

    async def card_action(
        verb: str,
        data: dict[str, Any],
        actor: Actor,
        tenant_id: str | None,
        conversation_id: str,
        reply_to_id: str | None,
        correlation_id: str,
    ) -> CardActionResult:
        return await actions[0](
            verb, data, actor, tenant_id, conversation_id, reply_to_id, correlation_id
        )

    async def remember(
        conversation_id: str,
        reference_json: str,
        conversation_type: str,
        service_url: str,
        tenant_id: str | None,
    ) -> None:
        await runtime.store.save_conversation_ref(
            conversation_id, reference_json, conversation_type, service_url, tenant_id
        )

    app = make_app(
        config.teams, dispatcher, card_action=card_action, on_conversation_reference=remember
    )
    endpoint = app[TEAMS_KEY]
    queue = OutboundQueue(TeamsSender(endpoint.adapter, endpoint.app_id), outbound_policy)
    reporter = QueueReporter(services, queue)
    services.checks.connect(reporter)  # `check` cards: edited through the same queue
    # Watching and alerting: every proactive post goes through `queue` too; a run that
    # ends badly raises its own alert through the RunAlarm port.
    alerter = Alerter(services, queue, reporter)
    executor = Executor(services, reporter, RunAlerts(alerter))
    metrics = Metrics(runtime.store, lambda: queue.stats, list(config.environments))
    watcher = Watcher(services, alerter, metrics)
    alert_actions = AlertActions(services, dispatcher, alerter, reporter)
    actions.append(CardActions(services, executor.submit, reporter, alert_actions))
    app[EXECUTOR_KEY] = executor
    app[QUEUE_KEY] = queue
    app[WATCHER_KEY] = watcher
    app[METRICS_KEY] = metrics
    app.router.add_get("/metrics", metrics.handle)
    app.router.add_post("/api/alerts", GrafanaWebhook(services, alerter).handle)

    async def background(app: web.Application) -> AsyncIterator[None]:
        # Settle what a dead process left before any new work can start; telling the
        # conversations about it goes on in the background (chat may be slow or down).
        recovered = await recover(services)
        for run in recovered.runs:
            log.warning("marked interrupted at start", extra={"run_id": run.run_id})
        teller = asyncio.create_task(recovered.tell(services, reporter))
        resumer = asyncio.create_task(alerter.resume())
        sweeper = asyncio.create_task(expiry_loop(services, reporter, sweep_s))
        smoke_dir = runtime.smoke_dir or config.paths.smoke_logs_dir
        audit_dir = runtime.audit_dir or config.paths.audit_dir
        pruner = asyncio.create_task(
            retention_loop(services, smoke_dir, audit_dir, retention_every_s)
        )
        watcher.start()
        yield
        sweeper.cancel()
        teller.cancel()
        resumer.cancel()
        pruner.cancel()
        await watcher.stop()
        await alerter.close()
        await executor.drain(DRAIN_TIMEOUT_S)
        await services.checks.close(DRAIN_TIMEOUT_S)
        try:
            await asyncio.wait_for(queue.drain(), 10)
        except TimeoutError:
            log.warning("outbound messages still queued at shutdown were dropped")
        await queue.close()

    app.cleanup_ctx.append(background)
    return app


def _dump_tasks() -> None:
    """`kill -USR2 <pid>`: log what every asyncio task is waiting on (a stuck run, a send)."""
    for task in asyncio.all_tasks():
        frames = task.get_stack(limit=8)
        where = " <- ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in reversed(frames))
        log.warning("task %s: %s", task.get_name(), where or "(not started)")


async def _serve(config: Config) -> None:
    runtime = await open_runtime(config)
    try:
        app = build_app(runtime)
        host, port = listen_host(config), config.server.port
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        log.info(
            "listening on http://%s:%d/api/messages (%s mode)", host, port, mode_of(config.teams)
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGUSR2, _dump_tasks)
        await stop.wait()
        log.info("stopping")
        await runner.cleanup()
    finally:
        await runtime.close()


def serve(config_path: str, log_level: str | None = None) -> int:
    """`mcms-bot run`: the exit status (1 when the config or this machine cannot run it)."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    lacking = machine_problems(config)
    if lacking:
        print(ConfigError(config_path, tuple(lacking)), file=sys.stderr)
        return 1
    setup_logging(
        Path(config.paths.app_logs_dir),
        redactor_for(config),
        level=log_level or config.logging.level,
        keep_days=config.retention.app_log_days,
    )
    # Every outbound HTTPS call (the Bot Connector, MSAL, WinRM over HTTPS) trusts what the
    # OS trusts, like the smoke checks: an internal CA's certificates pass.
    use_os_trust_store()
    # `kill -USR1 <pid>` prints every thread's stack: the first look at a bot that hangs.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        asyncio.run(_serve(config))
    except AuthConfigError as exc:
        log.error("%s", exc)
        return 1
    except OSError as exc:
        log.error("cannot listen on port %d: %s", config.server.port, exc.strerror or exc)
        return 1
    return 0
