"""The Bot Connector client botbuilder sends through: aiohttp on the event loop, not msrest.

botbuilder 4.17.1 builds a new msrest ConnectorClient for every turn and every proactive
send (about 20 ms of CPU on the event loop each, most of it msrest building its retry
table), serializes each activity twice over, sends it with `requests` on a worker thread
over a new connection, and asks Microsoft Entra for a new token each time (every client
has new credentials, hence an empty MSAL cache). This module replaces that client where
botbuilder creates it (the connector factory of bot/teams/auth.py), so every reply, post and
edit of the bot — in a turn or proactive — goes out here:

- one aiohttp session per process: kept-alive connections, TLS verified against the OS
  store (adapters/tls.py), proxies from the environment as `requests` read them;
- the same requests as botbuilder's client: URLs, headers (Authorization, User-Agent,
  x-ms-conversation-id) and JSON body;
- one attempt per call, bounded by `attempt_timeout_s`; a failure is raised as the
  OutboundError the outbound queue decides on (bot/teams/proactive.py): 429 as Throttled
  with its Retry-After, 408/412/5xx and no answer as Transient, the rest as Permanent;
- the bot's token is fetched once per app id and audience and reused until shortly before
  it expires (one worker-thread hop per fetch, for MSAL's blocking call); a 401 fetches a
  fresh one and tries once more, since a token can be revoked before its time.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit
from urllib.request import (  # type: ignore[attr-defined]  # not in typeshed
    getproxies_environment,
    proxy_bypass_environment,
)

import aiohttp
from botbuilder.schema import Activity, ResourceResponse
from botframework.connector.auth import (
    AppCredentials,
    AuthenticationConstants,
    ConnectorFactory,
    ServiceClientCredentialsFactory,
)
from botframework.connector.auth._connector_factory_impl import USER_AGENT
from yarl import URL

from adapters.tls import client_context
from bot.teams.proactive import (
    ATTEMPT_TIMEOUT_S,
    TRANSIENT_STATUSES,
    OutboundError,
    Permanent,
    Throttled,
    Transient,
    error_code,
    parse_retry_after,
)

log = logging.getLogger(__name__)

# A token is fetched again this long before it expires (MSAL's own margin), or after this
# long when it does not say when it expires.
TOKEN_MARGIN_S = 300.0
TOKEN_FALLBACK_LIFETIME_S = 600.0

Clock = Callable[[], float]


def token_lifetime_s(token: str, now: float) -> float:
    """Seconds until `token` (a JWT) expires by its `exp` claim, read without verifying it:
    the connector checks it, we only need to know when to fetch the next one."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        expires = float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError, binascii.Error):
        return TOKEN_FALLBACK_LIFETIME_S
    return expires - now


class BotToken:
    """The bot's bearer token for one app id and audience, fetched when needed and reused."""

    def __init__(self, credentials: AppCredentials, *, clock: Clock = time.time) -> None:
        self._credentials = credentials
        self._clock = clock
        self._value: str | None = None
        self._renew_at = float("-inf")
        self._lock = asyncio.Lock()
        app_id = getattr(credentials, "microsoft_app_id", None)
        # As botbuilder's AppCredentials: no app id (local mode) means no Authorization.
        self.needed = bool(app_id) and app_id != AuthenticationConstants.ANONYMOUS_SKILL_APP_ID
        self.fetches = 0

    async def header(self, *, refresh: bool = False) -> str | None:
        """`Bearer <token>`, or None when the bot sends without one."""
        if not self.needed:
            return None
        stale = self._value
        async with self._lock:
            # Another caller may have fetched while this one waited for the lock.
            if (
                self._value is None
                or self._clock() >= self._renew_at
                or (refresh and self._value == stale)
            ):
                await self._fetch(force=refresh)
        return f"Bearer {self._value}"

    async def _fetch(self, *, force: bool) -> None:
        try:
            # MSAL's client-credentials call blocks (HTTP to Entra): off the event loop.
            value = await asyncio.to_thread(self._credentials.get_access_token, force)
        except PermissionError as exc:  # Entra refused: wrong secret, app deleted...
            raise Permanent(None, "could not get the bot's token from Microsoft Entra") from exc
        except Exception as exc:  # Entra unreachable, or answering nonsense
            raise Transient(None, f"no token from Microsoft Entra ({type(exc).__name__})") from exc
        if not isinstance(value, str) or not value:
            raise Permanent(None, "Microsoft Entra returned no token for the bot")
        now = self._clock()
        lifetime = token_lifetime_s(value, now)
        self._value = value
        self._renew_at = now + lifetime - min(TOKEN_MARGIN_S, lifetime / 2)
        self.fetches += 1


def _body(activity: Activity) -> dict[str, Any]:
    """The activity as the connector's JSON. Card content is already JSON: msrest would walk
    every node of it (twice, with a deep copy), so it is put in after the model is done."""
    attachments = activity.attachments or []
    contents = [a.content for a in attachments]
    plain = all(isinstance(c, dict | list | str | type(None)) for c in contents)
    if plain:
        for attachment in attachments:
            attachment.content = None
    try:
        body: dict[str, Any] = activity.serialize()
    finally:
        if plain:
            for attachment, content in zip(attachments, contents, strict=True):
                attachment.content = content
    if plain:
        for serialized, content in zip(body.get("attachments") or [], contents, strict=True):
            if content is not None:
                serialized["content"] = content
    return body


def _failure(status: int, headers: Any, text: str) -> OutboundError:
    if status == 429:
        return Throttled(parse_retry_after(headers.get("Retry-After")))
    if status in TRANSIENT_STATUSES:
        return Transient(status)
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    code = error_code(payload)
    detail = f"HTTP {status}" + (f" {code}" if code else "")
    return Permanent(status, f"Teams refused the message ({detail})")


class ConnectorPool:
    """The process's HTTP session and tokens for the Bot Connector; `close()` at shutdown."""

    def __init__(self, *, attempt_timeout_s: float = ATTEMPT_TIMEOUT_S) -> None:
        self._timeout = aiohttp.ClientTimeout(total=attempt_timeout_s)
        self._attempt_timeout_s = attempt_timeout_s
        self._session: aiohttp.ClientSession | None = None
        self._tokens: dict[tuple[str, str, str, bool], BotToken] = {}
        self._token_lock = asyncio.Lock()
        self._proxies = getproxies_environment()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=client_context()),
                timeout=self._timeout,
                # Not trust_env: it reads ~/.netrc on a worker thread for every request.
                # Proxies come from the environment all the same (`_proxy`).
                headers={"User-Agent": USER_AGENT},
            )
        return self._session

    def _proxy(self, url: str) -> str | None:
        """The proxy HTTPS_PROXY / HTTP_PROXY name for `url`, unless NO_PROXY exempts its host,
        as botbuilder's `requests` chose one."""
        parts = urlsplit(url)
        if not self._proxies or proxy_bypass_environment(parts.hostname or "", self._proxies):
            return None
        return self._proxies.get(parts.scheme)

    async def token(
        self,
        factory: ServiceClientCredentialsFactory,
        app_id: str | None,
        audience: str,
        login_endpoint: str,
        validate_authority: bool,
    ) -> BotToken:
        """The cached token holder for these credentials (created on first use)."""
        key = (app_id or "", audience, login_endpoint, validate_authority)
        async with self._token_lock:
            token = self._tokens.get(key)
            if token is None:
                credentials = await factory.create_credentials(
                    app_id, audience, login_endpoint, validate_authority
                )
                token = self._tokens[key] = BotToken(credentials)
        return token

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(
        self,
        method: str,
        url: str,
        token: BotToken,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> ResourceResponse | None:
        """One request (two when a 401 asks for a fresh token); the connector's answer."""
        refresh = False
        while True:
            request_headers = {"Accept": "application/json", **(headers or {})}
            authorization = await token.header(refresh=refresh)
            if authorization is not None:
                request_headers["Authorization"] = authorization
            try:
                async with self._http().request(
                    method,
                    URL(url, encoded=True),
                    json=body,
                    headers=request_headers,
                    proxy=self._proxy(url),
                ) as response:
                    status, text = response.status, await response.text()
                    response_headers = response.headers
            except TimeoutError as exc:
                raise Transient(None, f"no answer within {self._attempt_timeout_s:g} s") from exc
            except aiohttp.ClientError as exc:
                raise Transient(None, f"cannot reach the connector: {type(exc).__name__}") from exc
            if status == 401 and token.needed and not refresh:
                refresh = True
                continue
            if status not in (200, 201, 202):
                raise _failure(status, response_headers, text)
            return _resource(text)


def _resource(text: str) -> ResourceResponse | None:
    # 202 may come without a body (the Agents Playground); botbuilder then has no id either.
    try:
        payload = json.loads(text) if text else None
    except ValueError:
        return None
    activity_id = payload.get("id") if isinstance(payload, dict) else None
    return ResourceResponse(id=activity_id) if isinstance(activity_id, str) else None


def _path(*segments: str) -> str:
    return "/".join(quote(s, safe="") for s in segments)


class _Conversations:
    """The part of botbuilder's ConversationsOperations that CloudAdapter calls."""

    def __init__(self, pool: ConnectorPool, service_url: str, token: BotToken) -> None:
        self._pool = pool
        self._base = service_url.rstrip("/") + "/v3/conversations/"
        self._token = token

    async def reply_to_activity(
        self, conversation_id: str, activity_id: str, activity: Activity
    ) -> ResourceResponse | None:
        url = self._base + _path(conversation_id, "activities", activity_id)
        headers = {"x-ms-conversation-id": conversation_id}
        return await self._pool.send("POST", url, self._token, _body(activity), headers)

    async def send_to_conversation(
        self, conversation_id: str, activity: Activity
    ) -> ResourceResponse | None:
        url = self._base + _path(conversation_id, "activities")
        return await self._pool.send("POST", url, self._token, _body(activity))

    async def update_activity(
        self, conversation_id: str, activity_id: str, activity: Activity
    ) -> ResourceResponse | None:
        url = self._base + _path(conversation_id, "activities", activity_id)
        return await self._pool.send("PUT", url, self._token, _body(activity))

    async def delete_activity(self, conversation_id: str, activity_id: str) -> None:
        url = self._base + _path(conversation_id, "activities", activity_id)
        await self._pool.send("DELETE", url, self._token)

    def __getattr__(self, name: str) -> Any:
        # Members, attachments, history...: nothing of the bot uses them; say so plainly
        # rather than fall back to a client that would bring the worker threads back.
        raise AttributeError(f"the bot's connector client does not implement {name}")


class ConnectorClient:
    """What CloudAdapter keeps in the turn state as the connector client."""

    def __init__(self, conversations: _Conversations) -> None:
        self.conversations = conversations


class AsyncConnectorFactory(ConnectorFactory):  # type: ignore[misc]
    """botbuilder's connector factory with our client: the same credentials, audience and
    login endpoint botbuilder chose (read from its factory), sent through `pool`."""

    def __init__(self, inner: Any, pool: ConnectorPool) -> None:
        self._inner = inner
        self._pool = pool

    async def create(self, service_url: str, audience: str | None = None) -> ConnectorClient:
        inner = self._inner
        token = await self._pool.token(
            inner._credential_factory,
            inner._app_id,
            audience or inner._to_channel_from_bot_oauth_scope,
            inner._login_endpoint,
            inner._validate_authority,
        )
        return ConnectorClient(_Conversations(self._pool, service_url, token))
