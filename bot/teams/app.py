"""The bot's aiohttp application: POST /api/messages and GET /healthz.

Two modes, decided by whether the app id environment variable (config.teams.app_id_env)
is set: "authenticated" (every request's JWT is checked, bad tokens get 401) or "local"
(botbuilder accepts every request unsigned: for the Agents Playground and the demo only,
so the server must listen on 127.0.0.1 whatever the config says — see `listen_host`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Literal

from aiohttp import web

from bot.teams.activities import CardActionHandler, ConversationReferenceHook, TeamsBot
from bot.teams.auth import AuthOverrides, BotCredentials, make_authentication
from bot.teams.endpoint import TeamsEndpoint
from commands.config import Config, Teams
from commands.types import Dispatcher

log = logging.getLogger(__name__)

Mode = Literal["local", "authenticated"]
LOOPBACK = "127.0.0.1"

MODE_KEY = web.AppKey("mode", str)
TEAMS_KEY = web.AppKey("teams", TeamsEndpoint)


def mode_of(teams: Teams) -> Mode:
    """Authenticated when the app id environment variable is set, else local."""
    return "authenticated" if BotCredentials.from_config(teams).authenticated else "local"


def listen_host(config: Config) -> str:
    """The address to bind: config.server.host, but always 127.0.0.1 in local mode."""
    if mode_of(config.teams) == "local":
        return LOOPBACK
    return config.server.host


def make_app(
    teams: Teams,
    dispatcher: Dispatcher,
    *,
    card_action: CardActionHandler | None = None,
    on_conversation_reference: ConversationReferenceHook | None = None,
    auth_overrides: AuthOverrides | None = None,
) -> web.Application:
    """The application; raises bot.teams.auth.AuthConfigError if the Teams credentials are partial.

    `auth_overrides` points the JWT validation and the outbound login at loopback (tests).
    """
    creds = BotCredentials.from_config(teams)
    bot = TeamsBot(
        dispatcher, card_action=card_action, on_conversation_reference=on_conversation_reference
    )
    endpoint = TeamsEndpoint(bot, make_authentication(creds, auth_overrides), app_id=creds.app_id)
    mode: Mode = "authenticated" if creds.authenticated else "local"

    app = web.Application()
    app[MODE_KEY] = mode
    app[TEAMS_KEY] = endpoint
    app.router.add_post("/api/messages", endpoint.handle)
    app.router.add_get("/healthz", _healthz)
    app.on_startup.append(_announce_mode(teams))
    return app


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "mode": request.app[MODE_KEY]})


def _announce_mode(teams: Teams) -> Callable[[web.Application], Awaitable[None]]:
    async def announce(app: web.Application) -> None:
        if app[MODE_KEY] == "local":
            log.warning(
                "UNAUTHENTICATED LOCAL MODE: %s is not set, so every request to /api/messages "
                "is accepted without a token. Listening on %s only; set the app id (and "
                "password) to serve Teams.",
                teams.app_id_env,
                LOOPBACK,
            )
        else:
            log.info("authenticated mode: every request to /api/messages needs a valid JWT")

    return announce
