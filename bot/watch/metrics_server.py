"""The /metrics listener: its own aiohttp app on `[metrics] host:port`, never the Teams one.

The Teams listener is published to the internet behind a reverse proxy; the series name
environments, hosts and outcomes, which are nobody's business there. The metrics app binds
127.0.0.1:9464 by default; with `metrics.token_env` set it answers only a request carrying
`Authorization: Bearer <token>` (compared in constant time), and the config refuses a
non-loopback host without a token.
"""

from __future__ import annotations

import hmac
import logging

from aiohttp import web

from bot.watch.metrics import Metrics
from commands.config import Metrics as MetricsConfig
from commands.config import secret

log = logging.getLogger(__name__)


def _authorized(header: str | None, token_env: str | None) -> bool:
    if token_env is None:
        return True
    expected = secret(token_env)
    if expected is None:
        log.warning("GET /metrics refused: %s is not set, so no scraper token can match", token_env)
        return False
    scheme, _, given = (header or "").partition(" ")
    ok = hmac.compare_digest(given.strip().encode(), expected.encode())
    return scheme.lower() == "bearer" and ok


def make_metrics_app(metrics: Metrics, config: MetricsConfig) -> web.Application:
    """GET /metrics (and nothing else), behind the bearer token when one is configured."""

    async def handle(request: web.Request) -> web.StreamResponse:
        if not _authorized(request.headers.get("Authorization"), config.token_env):
            return web.json_response(
                {"error": "a valid `Authorization: Bearer <token>` header is required"},
                status=401,
            )
        return await metrics.handle(request)

    app = web.Application()
    app.router.add_get("/metrics", handle)
    return app
