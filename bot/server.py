"""Start the bot: load and check the config, open the adapters, serve until a signal."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

from aiohttp import web

from bot.app import listen_host, make_app, mode_of
from bot.auth import AuthConfigError
from bot.logs import setup_logging
from bot.services import Runtime, open_runtime, redactor_for
from commands.config import Config, ConfigError, load_config
from commands.dispatch import CommandDispatcher
from commands.registry import default_registry

log = logging.getLogger(__name__)


def build_app(runtime: Runtime) -> web.Application:
    """The aiohttp app wired to the real commands; the store keeps conversation references."""
    config = runtime.services.config
    dispatcher = CommandDispatcher(runtime.services, default_registry())

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

    return make_app(config.teams, dispatcher, on_conversation_reference=remember)


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
