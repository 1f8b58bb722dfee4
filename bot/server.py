"""Start the bot: load and check the config, open the adapters, serve until a signal."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.actions import CardActions
from bot.app import TEAMS_KEY, listen_host, make_app, mode_of
from bot.auth import AuthConfigError
from bot.executor import Executor
from bot.lifecycle import DEFAULT_SWEEP_S, expiry_loop, recover
from bot.logs import setup_logging
from bot.outbound import OutboundQueue, RetryPolicy
from bot.reporter import QueueReporter
from bot.sender import TeamsSender
from bot.services import Runtime, open_runtime, redactor_for
from bot.teams import CardActionResult
from commands.config import Config, ConfigError, load_config
from commands.dispatch import CommandDispatcher
from commands.registry import default_registry
from commands.types import Actor

log = logging.getLogger(__name__)


EXECUTOR_KEY = web.AppKey("executor", Executor)
QUEUE_KEY = web.AppKey("outbound", OutboundQueue)
# Long enough for a step in flight to finish; a run cut off here is `interrupted` at start.
DRAIN_TIMEOUT_S = 60.0


def build_app(
    runtime: Runtime,
    *,
    sweep_s: float = DEFAULT_SWEEP_S,
    outbound_policy: RetryPolicy | None = None,
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
    executor = Executor(services, reporter)
    actions.append(CardActions(services, executor, reporter))
    app[EXECUTOR_KEY] = executor
    app[QUEUE_KEY] = queue

    async def background(app: web.Application) -> AsyncIterator[None]:
        # Settle what a dead process left before any new work can start; telling the
        # conversations about it goes on in the background (chat may be slow or down).
        recovered = await recover(services)
        if recovered.runs:
            log.warning(
                "marked interrupted at start: %s", ", ".join(r.run_id for r in recovered.runs)
            )
        teller = asyncio.create_task(recovered.tell(services, reporter))
        sweeper = asyncio.create_task(expiry_loop(services, reporter, sweep_s))
        yield
        sweeper.cancel()
        teller.cancel()
        await executor.drain(DRAIN_TIMEOUT_S)
        try:
            await asyncio.wait_for(queue.drain(), 10)
        except TimeoutError:
            log.warning("outbound messages still queued at shutdown were dropped")
        await queue.close()

    app.cleanup_ctx.append(background)
    return app


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
        await stop.wait()
        log.info("stopping")
        await runner.cleanup()
    finally:
        await runtime.close()


def serve(config_path: str) -> int:
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    setup_logging(Path(config.paths.app_logs_dir), redactor_for(config))
    try:
        asyncio.run(_serve(config))
    except AuthConfigError as exc:
        log.error("%s", exc)
        return 1
    except OSError as exc:
        log.error("cannot listen on port %d: %s", config.server.port, exc.strerror or exc)
        return 1
    return 0
