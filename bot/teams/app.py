"""The bot's aiohttp application: POST /api/messages and GET /healthz.

Two modes, chosen in the config (`[server] mode`), never by what the environment happens
to hold: "teams" (every request's JWT is checked, bad tokens get 401; the bot refuses to
start without its app id and password) or "local" (botbuilder accepts every request
unsigned: for the Agents Playground and the demo only, so the config must also say a
loopback host, and requests that came through a proxy are refused).

/healthz answers `{"status": "ok"}`; only a client on this machine (not through a proxy)
also learns the mode.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from bot.teams.activities import CardActionHandler, ConversationReferenceHook, TeamsBot
from bot.teams.admission import Mode
from bot.teams.auth import AuthOverrides, BotCredentials, make_authentication
from bot.teams.endpoint import RefusalHook, TeamsEndpoint, is_direct_loopback
from commands.config import Config, Teams
from commands.types import Dispatcher

log = logging.getLogger(__name__)

MODE_KEY = web.AppKey("mode", str)
TEAMS_KEY = web.AppKey("teams", TeamsEndpoint)


def listen_host(config: Config) -> str:
    """The address to bind: config.server.host (local mode is checked loopback by the config)."""
    return config.server.host


def make_app(
    teams: Teams,
    dispatcher: Dispatcher,
    *,
    mode: Mode,
    card_action: CardActionHandler | None = None,
    on_conversation_reference: ConversationReferenceHook | None = None,
    on_refused: RefusalHook | None = None,
    auth_overrides: AuthOverrides | None = None,
) -> web.Application:
    """The application; raises bot.teams.auth.AuthConfigError when the credentials in the
    environment do not fit `mode` (the message names the variable).

    `auth_overrides` points the JWT validation and the outbound login at loopback (tests).
    """
    creds = BotCredentials.from_config(teams, mode)
    bot = TeamsBot(
        dispatcher, card_action=card_action, on_conversation_reference=on_conversation_reference
    )
    endpoint = TeamsEndpoint(
        bot,
        make_authentication(creds, mode, auth_overrides),
        app_id=creds.app_id,
        mode=mode,
        on_refused=on_refused,
    )
    app = web.Application()
    app[MODE_KEY] = mode
    app[TEAMS_KEY] = endpoint
    app.router.add_post("/api/messages", endpoint.handle)
    app.router.add_get("/healthz", _healthz)
    app.on_startup.append(_announce_mode(teams))

    async def close_connector(app: web.Application) -> None:
        await endpoint.close()

    # After the other cleanups (on_cleanup runs after cleanup_ctx): the outbound queue's
    # last messages still go out through this session.
    app.on_cleanup.append(close_connector)
    return app


async def _healthz(request: web.Request) -> web.Response:
    if is_direct_loopback(request):
        return web.json_response({"status": "ok", "mode": request.app[MODE_KEY]})
    return web.json_response({"status": "ok"})


def _announce_mode(teams: Teams) -> Callable[[web.Application], Awaitable[None]]:
    async def announce(app: web.Application) -> None:
        if app[MODE_KEY] == "local":
            log.warning(
                'UNAUTHENTICATED LOCAL MODE ([server] mode = "local"): every request to '
                "/api/messages from this machine is accepted without a token. For the demo "
                'and Agents Playground only; set mode = "teams" and %s to serve Teams.',
                teams.app_id_env,
            )
        else:
            log.info("teams mode: every request to /api/messages needs a valid Bot Framework JWT")

    return announce
