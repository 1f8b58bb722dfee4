"""POST /api/messages: check the body, let CloudAdapter authenticate and run the turn.

Bodies that are not activities get a 400 here (stock CloudAdapter answers 500 for them);
authentication failures are 401 (bot/teams/auth.py); an activity refused after the token
(another channel, a tenant mismatch, a serviceUrl we must not post to: bot/teams/admission.py)
is 403 and reported to `on_refused` (the audit); a failed turn is logged with its
correlation id and answered with an apology, never re-raised (a 5xx would make the channel
resend it). In local mode only clients on this machine, not behind a proxy, are served.
Every line logged while an activity is handled carries its correlation id as a field
(bot.logs.log_fields), and so does every task the turn starts.
"""

from __future__ import annotations

import ipaddress
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from botbuilder.core import InvokeResponse, TurnContext
from botbuilder.integration.aiohttp import CloudAdapter
from botbuilder.schema import Activity, ActivityTypes

from bot.logs import log_fields
from bot.teams.activities import CardActionError, TeamsBot, apology, correlation_id_of, invoke_body
from bot.teams.admission import Mode, Refusal
from bot.teams.auth import ActivityRefused, StrictBotFrameworkAuthentication

log = logging.getLogger(__name__)

# Headers a reverse proxy adds: a request carrying one did not start on this machine.
FORWARDING_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Real-IP")

# No Teams activity nests anywhere near this deep (card data is a few levels).
MAX_DEPTH = 32

RefusalHook = Callable[[Refusal, Any], Awaitable[None]]
"""Told about each activity refused after authentication (refusal, botbuilder activity)."""


def is_direct_loopback(request: web.Request) -> bool:
    """True when the client is on this machine and the request did not come through a proxy
    (a local reverse proxy connects from 127.0.0.1 on behalf of anyone)."""
    if any(name in request.headers for name in FORWARDING_HEADERS):
        return False
    try:
        return ipaddress.ip_address((request.remote or "").split("%")[0]).is_loopback
    except ValueError:
        return False


async def _on_turn_error(turn_context: TurnContext, error: Exception) -> None:
    """Last resort for a failed turn: log with the correlation id, apologise, never re-raise.

    Not re-raising keeps the HTTP answer a 2xx: a 5xx invites the channel to deliver the
    same activity again, which would run the command a second time.
    """
    activity = turn_context.activity
    correlation_id = correlation_id_of(activity)
    fields = {"correlation_id": correlation_id}
    log.error("turn failed", exc_info=error, extra=fields)
    try:
        if activity.type == ActivityTypes.invoke:
            error_body = CardActionError("InternalError", apology(correlation_id), 500)
            response = InvokeResponse(status=200, body=invoke_body(error_body))
            await turn_context.send_activity(
                Activity(type=ActivityTypes.invoke_response, value=response)
            )
        else:
            await turn_context.send_activity(apology(correlation_id))
    except Exception:
        log.exception("could not send the apology", extra=fields)


def _deeper_than(value: object, limit: int) -> bool:
    """True when `value` nests dicts/lists more than `limit` levels (iterative: no recursion)."""
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth >= limit:
                return True
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
    return False


def _activity_problem(body: object) -> str | None:
    """Why `body` is not an activity we can answer, or None. CloudAdapter would 500 on these."""
    if not isinstance(body, dict) or not isinstance(body.get("type"), str) or not body["type"]:
        return "the body is not an activity (a JSON object with a type)"
    try:
        activity = Activity().deserialize(body)
    except (ValueError, TypeError, AttributeError):  # msrest's DeserializationError is a ValueError
        return "the body is not a valid Bot Framework activity"
    conversation = activity.conversation
    if conversation is None or not isinstance(conversation.id, str) or not conversation.id:
        return "the activity has no conversation.id"
    if not isinstance(activity.service_url, str) or not activity.service_url.startswith(
        ("https://", "http://")
    ):
        return "the activity has no http(s) serviceUrl"
    return None


def _problem(status: int, detail: str) -> web.Response:
    return web.json_response({"error": detail}, status=status)


class TeamsEndpoint:
    """POST /api/messages: rejects non-activities (400), then CloudAdapter authenticates
    (401 on any failure, see bot.teams.auth) and runs the turn on the bot."""

    def __init__(
        self,
        bot: TeamsBot,
        auth: StrictBotFrameworkAuthentication,
        *,
        app_id: str | None,
        mode: Mode,
        on_refused: RefusalHook | None = None,
    ) -> None:
        self.bot = bot
        self.app_id = app_id  # CloudAdapter.continue_conversation needs it for proactive posts
        self.mode = mode
        self.adapter = CloudAdapter(auth)
        self.adapter.on_turn_error = _on_turn_error
        self._auth = auth
        self._on_refused = on_refused

    async def close(self) -> None:
        """End the connector's HTTP session (nothing can be sent after this)."""
        await self._auth.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.mode == "local" and not is_direct_loopback(request):
            # Local mode checks no token: a proxy in front of it must not open it to others.
            return _problem(403, "local mode serves clients on this machine only")
        if request.content_type != "application/json":
            return _problem(415, "expected Content-Type: application/json")
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return _problem(400, "the body is not JSON")
        except RecursionError:  # json.loads on "[[[[…" thousands deep (found by tests/fuzz)
            return _problem(400, f"the body nests deeper than {MAX_DEPTH} levels")
        if _deeper_than(body, MAX_DEPTH):
            # Every later step (msrest, our card parsing, the audit's JSON) recurses too.
            return _problem(400, f"the body nests deeper than {MAX_DEPTH} levels")
        problem = _activity_problem(body)
        if problem is not None:
            return _problem(400, problem)
        correlation_id = str(body.get("id") or uuid.uuid4().hex[:12])
        with log_fields(correlation_id=correlation_id):
            try:
                response: web.StreamResponse = await self.adapter.process(request, self.bot)
            except ActivityRefused as refused:
                await self._tell_refused(refused)
                return _problem(403, refused.refusal.message)
            except web.HTTPException:
                raise  # 401 from CloudAdapter, among others
            except Exception:
                # Turn errors are handled by _on_turn_error; this is the connector or the SDK
                # failing around the turn: an honest 500, logged with the correlation id.
                log.exception("activity processing failed")
                return web.json_response(
                    {"error": "internal error", "correlationId": correlation_id}, status=500
                )
        return response

    async def _tell_refused(self, refused: ActivityRefused) -> None:
        log.warning("activity refused (%s): %s", refused.refusal.code, refused.refusal.message)
        if self._on_refused is None:
            return
        try:
            await self._on_refused(refused.refusal, refused.activity)
        except Exception:
            log.exception("could not record a refused activity")
