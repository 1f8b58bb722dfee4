"""Start the bot: load and check the config, open the adapters, serve until a signal."""

from __future__ import annotations

import asyncio
import dataclasses
import faulthandler
import logging
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from adapters.store.rows import Request
from adapters.tls import use_os_trust_store
from bot.logs import setup_logging
from bot.preflight import machine_problems
from bot.runs.executor import Executor
from bot.runs.expiry import DEFAULT_SWEEP_S, expiry_loop
from bot.runs.leases import lease_loop, settling
from bot.runs.policy_runs import PolicyApprovedRuns
from bot.runs.recovery import recover
from bot.services import AuditKeyMissing, Runtime, audit_key, open_runtime, redactor_for
from bot.teams.activities import CardActionResult
from bot.teams.admission import Refusal, service_url_problem
from bot.teams.app import TEAMS_KEY, listen_host, make_app
from bot.teams.auth import AuthConfigError, BotCredentials
from bot.teams.card_clicks import CardActions
from bot.teams.freeze_cards import FreezeCards
from bot.teams.outbound_queue import OutboundQueue, RetryPolicy
from bot.teams.proactive import TeamsSender
from bot.teams.reporter import QueueReporter
from bot.watch.alert_clicks import AlertActions
from bot.watch.alerts import Alerter
from bot.watch.audit_heads import HeadPublisher, PublishingAudit, daily_heads_loop
from bot.watch.break_glass import BreakGlassNotice
from bot.watch.grafana import GrafanaWebhook
from bot.watch.housekeeping import DAY_S, retention_loop
from bot.watch.metrics import Metrics
from bot.watch.metrics_server import make_metrics_app
from bot.watch.notices import DEFAULT_EVERY_S as NOTICE_EVERY_S
from bot.watch.notices import notice_loop
from bot.watch.run_alerts import FlowAlerts, RunAlerts
from bot.watch.watcher import Watcher
from commands.bluegreen.model import SWITCH_COMMAND
from commands.config import Config, ConfigError, load_config
from commands.dispatch import CommandDispatcher
from commands.registry import default_registry
from commands.types import Actor

log = logging.getLogger(__name__)


EXECUTOR_KEY = web.AppKey("executor", Executor)
QUEUE_KEY = web.AppKey("outbound", OutboundQueue)
WATCHER_KEY = web.AppKey("watcher", Watcher)
METRICS_KEY = web.AppKey("metrics", Metrics)
HEADS_KEY = web.AppKey("audit_heads", HeadPublisher)
# Long enough for a step in flight to finish; a run cut off here is `interrupted` at start.
DRAIN_TIMEOUT_S = 60.0


def build_app(
    runtime: Runtime,
    *,
    sweep_s: float = DEFAULT_SWEEP_S,
    outbound_policy: RetryPolicy | None = None,
    retention_every_s: float = DAY_S,
    notice_every_s: float = NOTICE_EVERY_S,
) -> web.Application:
    """The aiohttp app wired to the real commands, the executor and the outbound queue."""
    config = runtime.services.config
    # Every audit line goes through PublishingAudit: a run's last line publishes the head.
    heads = HeadPublisher(runtime.services, runtime.audit_dir or config.paths.audit_dir)
    services = dataclasses.replace(
        runtime.services, audit=PublishingAudit(runtime.services.audit, heads)
    )
    # The card handler (and a run approved by policy) needs the executor, which needs the
    # app's adapter to send: bind late.
    actions: list[CardActions] = []
    executors: list[Executor] = []

    def submit(request: Request) -> bool:
        # Approval card #2 of a blue/green flow switches traffic; every other request runs.
        if request.command == SWITCH_COMMAND:
            return services.bluegreen.start_switch(request)
        return executors[0].submit(request)

    freeze_cards = FreezeCards(
        PolicyApprovedRuns(CommandDispatcher(services, default_registry()), services, submit),
        services,
    )
    dispatcher = freeze_cards

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

    mode = config.server.mode

    async def remember(
        conversation_id: str,
        reference_json: str,
        conversation_type: str,
        service_url: str,
        tenant_id: str | None,
    ) -> None:
        # Later proactive posts go to this serviceUrl with the bot's token: store only what
        # the mode allows, and only for conversations of an allowed tenant.
        problem = service_url_problem(service_url, mode)
        if problem is not None or tenant_id not in config.teams.allowed_tenants:
            log.warning(
                "conversation reference of %s not stored: %s",
                conversation_id[:80],
                problem or "tenant not allowed",
            )
            return
        await runtime.store.save_conversation_ref(
            conversation_id, reference_json, conversation_type, service_url, tenant_id
        )

    async def refused(refusal: Refusal, activity: Any) -> None:
        await services.audit.append(
            "ActivityRefused", status=refusal.code, detail=refused_detail(refusal, activity)
        )

    app = make_app(
        config.teams,
        dispatcher,
        mode=mode,
        card_action=card_action,
        on_conversation_reference=remember,
        on_refused=refused,
    )
    endpoint = app[TEAMS_KEY]
    queue = OutboundQueue(
        TeamsSender(endpoint.adapter, endpoint.app_id, mode=mode), outbound_policy
    )
    reporter = QueueReporter(services, queue)
    services.checks.connect(reporter)  # `check` cards: edited through the same queue
    freeze_cards.connect(reporter)  # pending approval cards after `lock` / `unlock`
    # Watching and alerting: every proactive post goes through `queue` too; a run that
    # ends badly raises its own alert through the RunAlarm port.
    alerter = Alerter(services, queue, reporter)
    heads.bind(alerter)
    run_alerts = RunAlerts(alerter)
    executor = Executor(services, reporter, run_alerts)
    executors.append(executor)
    services.bluegreen.connect(services, reporter, FlowAlerts(run_alerts))
    metrics = Metrics(runtime.store, lambda: queue.stats, list(config.environments))
    watcher = Watcher(services, alerter, metrics)
    alert_actions = AlertActions(services, dispatcher, alerter, reporter)
    actions.append(
        CardActions(
            services,
            submit,
            reporter,
            alert_actions,
            announce_break_glass=BreakGlassNotice(services, alerter).announce,
        )
    )
    app[EXECUTOR_KEY] = executor
    app[QUEUE_KEY] = queue
    app[WATCHER_KEY] = watcher
    app[HEADS_KEY] = heads
    app[METRICS_KEY] = metrics  # served by make_metrics_app on its own listener, not here
    app.router.add_post("/api/alerts", GrafanaWebhook(services, alerter).handle)

    async def background(app: web.Application) -> AsyncIterator[None]:
        # Settle what a dead process left before any new work can start; telling the
        # conversations about it goes on in the background (chat may be slow or down).
        recovered = await recover(services)
        for run in recovered.runs:
            log.warning("marked interrupted at start", extra={"run_id": run.run_id})
        teller = asyncio.create_task(recovered.tell(services, reporter))
        # Final card states a dead process of this bot kept but never delivered.
        finals = asyncio.create_task(reporter.resume_finals())
        # Blue/green flows left mid-way: interrupted, told with the router read now.
        flows_told = asyncio.create_task(services.bluegreen.recover())
        resumer = asyncio.create_task(alerter.resume())
        sweeper = asyncio.create_task(expiry_loop(services, reporter, sweep_s))
        smoke_dir = runtime.smoke_dir or config.paths.smoke_logs_dir
        audit_dir = runtime.audit_dir or config.paths.audit_dir
        pruner = asyncio.create_task(
            retention_loop(services, smoke_dir, audit_dir, retention_every_s)
        )
        publisher = asyncio.create_task(daily_heads_loop(heads, services))
        # What the break-glass CLI left for Teams (break-glass approvals, failed runs).
        notices = asyncio.create_task(notice_loop(services, alerter, notice_every_s))
        # Instances sharing a PostgreSQL store keep their leases and take over a dead one's.
        leases = (
            asyncio.create_task(lease_loop(services, reporter, reporter.resume_finals))
            if services.store.dialect == "postgresql"
            else None
        )
        watcher.start()
        yield
        # A restore of a dead process's run is let finish (bounded), leases still renewed:
        # cut short, its lock stays held and the next start or a survivor settles it again.
        _done, unsettled = await asyncio.wait([teller, *settling()], timeout=DRAIN_TIMEOUT_S)
        if unsettled:
            log.warning("stopped while settling an interrupted run: the next start settles it")
        if leases is not None:
            leases.cancel()
        notices.cancel()
        sweeper.cancel()
        teller.cancel()
        finals.cancel()
        flows_told.cancel()
        resumer.cancel()
        pruner.cancel()
        publisher.cancel()
        await watcher.stop()
        await executor.drain(DRAIN_TIMEOUT_S)
        await services.bluegreen.close(DRAIN_TIMEOUT_S)
        await services.checks.close(DRAIN_TIMEOUT_S)
        await heads.close()
        await alerter.close()
        try:
            await asyncio.wait_for(queue.drain(), 10)
        except TimeoutError:
            log.warning("outbound messages still queued at shutdown were dropped")
        await queue.close()

    app.cleanup_ctx.append(background)
    return app


def _short(value: object, limit: int = 120) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def refused_detail(refusal: Refusal, activity: Any) -> dict[str, Any]:
    """What the audit keeps of a refused activity: enough to see who knocked, bounded."""
    conversation = getattr(activity, "conversation", None)
    sender = getattr(activity, "from_property", None)
    data = getattr(activity, "channel_data", None)
    tenant = data.get("tenant") if isinstance(data, dict) else None
    return {
        "reason": refusal.message,
        "channel_id": _short(getattr(activity, "channel_id", None)),
        "type": _short(getattr(activity, "type", None)),
        "conversation_tenant": _short(getattr(conversation, "tenant_id", None)),
        "channel_data_tenant": _short(tenant.get("id")) if isinstance(tenant, dict) else None,
        "service_url": _short(getattr(activity, "service_url", None)),
        "from": _short(getattr(sender, "aad_object_id", None) or getattr(sender, "id", None)),
        "correlation_id": _short(getattr(activity, "id", None)),
    }


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
        metrics_runner = web.AppRunner(
            make_metrics_app(app[METRICS_KEY], config.metrics), access_log=None
        )
        await metrics_runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
            await web.TCPSite(metrics_runner, config.metrics.host, config.metrics.port).start()
            log.info(
                "listening on http://%s:%d/api/messages (%s mode), /metrics on %s:%d",
                host,
                port,
                config.server.mode,
                config.metrics.host,
                config.metrics.port,
            )
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            loop.add_signal_handler(signal.SIGUSR2, _dump_tasks)
            await stop.wait()
            log.info("stopping")
        finally:
            await metrics_runner.cleanup()
            await runner.cleanup()
    finally:
        await runtime.close()


def startup_problem(config: Config) -> str | None:
    """Why the bot must not start with this config and environment (one line), or None."""
    try:
        creds = BotCredentials.from_config(config.teams, config.server.mode)
        audit_key(config)
    except (AuthConfigError, AuditKeyMissing) as exc:
        return str(exc)
    grouped = [n for n, e in config.environments.items() if e.approval.approver_groups]
    if config.server.mode == "teams" and grouped and not creds.app_password:
        return (
            f"approver_groups ({', '.join(grouped)}) are resolved with Microsoft Graph using "
            f"the bot's client secret, and {config.teams.app_type} has none "
            f"({config.teams.app_password_env}): name approvers by object id instead"
        )
    return None


def serve(config_path: str, log_level: str | None = None) -> int:
    """`mcms-bot run`: the exit status (1 when the config, this machine or the environment
    cannot run it — a missing Teams credential or audit key among them)."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    lacking = machine_problems(config)
    if lacking:
        print(ConfigError(config_path, tuple(lacking)), file=sys.stderr)
        return 1
    problem = startup_problem(config)
    if problem is not None:
        print(f"mcms-bot: refusing to start: {problem}", file=sys.stderr)
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
        log.error("cannot listen: %s", exc.strerror or exc)
        return 1
    return 0
