"""The bot's own Bot Connector client: every reply, post and edit on the event loop.

Through the real CloudAdapter and the fake connector on loopback: turn replies and
proactive sends share one kept-alive session, need no worker thread, carry the bot's token
fetched once (again after a 401), and every failure is the OutboundError the queue decides on.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from botbuilder.schema import Activity, Attachment
from botframework.connector.auth._user_token_client_impl import _UserTokenClientImpl

from bot.teams.app import TEAMS_KEY, make_app
from bot.teams.auth import AuthOverrides, _StaticTokenCredentials
from bot.teams.connector import (
    TOKEN_FALLBACK_LIFETIME_S,
    TOKEN_MARGIN_S,
    BotToken,
    ConnectorPool,
    _body,
    token_lifetime_s,
)
from bot.teams.endpoint import TeamsEndpoint
from bot.teams.proactive import Permanent, TeamsSender, Transient
from commands.config import Teams
from commands.types import Invocation, Reply
from tests.teams.test_outbound import card, reference_json
from tests.teams_factory import TENANT, make_message

if TYPE_CHECKING:
    from tests.fake_connector import FakeConnector

TEAMS = Teams(allowed_tenants=[TENANT])
APP_ID = "11111111-2222-3333-4444-555555555555"


class Echo:
    async def handle(self, invocation: Invocation) -> Reply:
        return Reply(text=f"you said {invocation.text}")


class NoWorkerThreads(ThreadPoolExecutor):
    """The loop's default executor in these tests: any hop to a worker thread fails."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"a worker thread was asked to run {fn!r}")


@pytest.fixture
async def local_endpoint(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[TeamsEndpoint]:
    monkeypatch.delenv(TEAMS.app_id_env, raising=False)
    endpoint = make_app(TEAMS, Echo(), mode="local")[TEAMS_KEY]
    yield endpoint
    await endpoint.close()


@pytest.fixture
def fetches(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Every token fetch of the static test credentials, as its force_refresh flag."""
    seen: list[bool] = []
    original = _StaticTokenCredentials.get_access_token

    def counted(self: _StaticTokenCredentials, force_refresh: bool = False) -> str:
        seen.append(force_refresh)
        return original(self, force_refresh)

    monkeypatch.setattr(_StaticTokenCredentials, "get_access_token", counted)
    return seen


@pytest.fixture
async def teams_endpoint(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[TeamsEndpoint]:
    monkeypatch.setenv(TEAMS.app_id_env, APP_ID)
    monkeypatch.setenv(TEAMS.app_password_env, "unused: outbound uses a static token")
    monkeypatch.setenv(TEAMS.app_tenant_id_env, TENANT)
    overrides = AuthOverrides(openid_metadata_url="http://127.0.0.1:9/unused", static_token="t0k")
    endpoint = make_app(TEAMS, Echo(), mode="teams", auth_overrides=overrides)[TEAMS_KEY]
    yield endpoint
    await endpoint.close()


async def test_posts_and_edits_need_no_worker_thread(
    local_endpoint: TeamsEndpoint, fake_connector: FakeConnector
) -> None:
    asyncio.get_running_loop().set_default_executor(NoWorkerThreads())
    sender = TeamsSender(local_endpoint.adapter, local_endpoint.app_id, mode="local")
    ref = reference_json(fake_connector.url)

    posted = await sender.post(ref, "Rollback Lab: running", card(1))
    await sender.update(ref, posted, "Rollback Lab: passed", card(2))

    assert [(c.method, c.status) for c in fake_connector.calls] == [("POST", 200), ("PUT", 200)]
    assert fake_connector.calls[1].body["attachments"][0]["content"] == card(2)


async def test_turn_replies_and_proactive_posts_share_one_kept_alive_connection(
    local_endpoint: TeamsEndpoint, fake_connector: FakeConnector
) -> None:
    app = web.Application()
    app.router.add_post("/api/messages", local_endpoint.handle)
    sender = TeamsSender(local_endpoint.adapter, local_endpoint.app_id, mode="local")
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        for text in ("one", "two"):
            message = make_message(text, service_url=fake_connector.url)
            assert (await client.post("/api/messages", json=message)).status < 300
        await sender.post(reference_json(fake_connector.url), "proactive", None)

    assert [c.text for c in fake_connector.calls] == ["you said one", "you said two", "proactive"]
    # botbuilder's own client opened a new connection (and session) for every send.
    assert len({c.peer for c in fake_connector.calls}) == 1


async def test_the_token_is_fetched_once_and_again_after_a_401(
    teams_endpoint: TeamsEndpoint, tls_fake_connector: FakeConnector, fetches: list[bool]
) -> None:
    sender = TeamsSender(teams_endpoint.adapter, teams_endpoint.app_id, mode="teams")
    ref = reference_json(tls_fake_connector.url)

    for n in range(3):
        await sender.post(ref, f"alert {n}", None)
    assert fetches == [False]

    tls_fake_connector.fail_next(1, status=401)
    await sender.post(ref, "after the token was revoked", None)

    assert fetches == [False, True]
    statuses = [(c.status, c.authorization) for c in tls_fake_connector.calls]
    assert statuses == [(200, "Bearer t0k")] * 3 + [(401, "Bearer t0k"), (200, "Bearer t0k")]


async def test_a_second_401_is_permanent_and_not_retried_again(
    teams_endpoint: TeamsEndpoint, tls_fake_connector: FakeConnector, fetches: list[bool]
) -> None:
    sender = TeamsSender(teams_endpoint.adapter, teams_endpoint.app_id, mode="teams")
    tls_fake_connector.fail_next(2, status=401)

    with pytest.raises(Permanent, match="HTTP 401"):
        await sender.post(reference_json(tls_fake_connector.url), "hello", None)

    assert len(tls_fake_connector.calls) == 2 and fetches == [False, True]


async def test_the_connector_error_code_is_kept_but_never_its_message(
    local_endpoint: TeamsEndpoint, fake_connector: FakeConnector
) -> None:
    sender = TeamsSender(local_endpoint.adapter, local_endpoint.app_id, mode="local")
    fake_connector.fail_next(1, status=403)

    with pytest.raises(Permanent) as caught:
        await sender.post(reference_json(fake_connector.url), "hello", None)

    assert str(caught.value) == "Teams refused the message (HTTP 403 ServiceError)"


async def test_a_connector_that_never_answers_is_transient_after_the_attempt_timeout() -> None:
    stalled = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        stalled.set()
        await asyncio.sleep(3600)
        return web.Response()

    app = web.Application()
    app.router.add_post("/v3/conversations/{c}/activities", hang)
    pool = ConnectorPool(attempt_timeout_s=0.3)
    async with TestServer(app, host="127.0.0.1") as server:
        token = BotToken(_StaticTokenCredentials("", "unused"))
        url = str(server.make_url("/v3/conversations/c/activities"))
        try:
            with pytest.raises(Transient, match=r"no answer within 0\.3 s"):
                await pool.send("POST", url, token, {"type": "message"})
        finally:
            await pool.close()
    assert stalled.is_set()


def _jwt(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part(claims)}.signature"


class Tokens(_StaticTokenCredentials):  # type: ignore[misc]
    """Hands out the next token of a list, as Entra would issue new ones."""

    def __init__(self, tokens: list[str]) -> None:
        super().__init__(APP_ID, "")
        self.tokens = tokens
        self.fetched = 0

    def get_access_token(self, force_refresh: bool = False) -> str:
        self.fetched += 1
        return self.tokens.pop(0)


async def test_a_token_is_reused_until_shortly_before_it_expires() -> None:
    now = [1_000_000.0]
    first, second = _jwt({"exp": now[0] + 3600}), _jwt({"exp": now[0] + 7200})
    credentials = Tokens([first, second])
    token = BotToken(credentials, clock=lambda: now[0])

    assert await token.header() == f"Bearer {first}"
    now[0] += 3600 - TOKEN_MARGIN_S - 1
    assert await token.header() == f"Bearer {first}"
    now[0] += 2
    assert await token.header() == f"Bearer {second}"
    assert credentials.fetched == 2


async def test_concurrent_sends_fetch_one_token() -> None:
    credentials = Tokens([_jwt({"exp": 2_000_000_000})] * 5)
    token = BotToken(credentials)

    headers = await asyncio.gather(*(token.header() for _ in range(5)))

    assert len(set(headers)) == 1 and credentials.fetched == 1


@pytest.mark.parametrize(
    ("token", "lifetime"),
    [
        (_jwt({"exp": 1_000_600}), 600.0),
        (_jwt({"nbf": 5}), TOKEN_FALLBACK_LIFETIME_S),
        ("opaque-token", TOKEN_FALLBACK_LIFETIME_S),
        ("a.!!!.c", TOKEN_FALLBACK_LIFETIME_S),
    ],
    ids=["jwt", "jwt-without-exp", "not-a-jwt", "garbage"],
)
def test_a_token_lifetime_is_read_from_its_exp_claim(token: str, lifetime: float) -> None:
    assert token_lifetime_s(token, 1_000_000.0) == lifetime


def test_the_body_is_the_activity_json_with_the_card_untouched() -> None:
    content = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock"}]}
    activity = Activity(
        type="message",
        summary="Rollback Lab",
        attachments=[
            Attachment(content_type="application/vnd.microsoft.card.adaptive", content=content)
        ],
    )

    body = _body(activity)

    assert body == {
        "type": "message",
        "summary": "Rollback Lab",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "content": content}
        ],
    }
    assert activity.attachments[0].content is content  # the caller's activity is unchanged


@pytest.mark.parametrize("no_proxy", [None, "127.0.0.1"], ids=["via-proxy", "no-proxy-exempts"])
async def test_a_proxy_from_the_environment_is_used_unless_no_proxy_exempts_the_host(
    monkeypatch: pytest.MonkeyPatch, fake_connector: FakeConnector, no_proxy: str | None
) -> None:
    proxied: list[str] = []

    async def proxy(request: web.Request) -> web.Response:
        proxied.append(str(request.url))
        return web.json_response({"id": "via-proxy"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy)
    async with TestServer(app, host="127.0.0.1") as server:
        monkeypatch.setenv("HTTP_PROXY", str(server.make_url("/")))
        monkeypatch.delenv("NO_PROXY", raising=False)
        if no_proxy is not None:
            monkeypatch.setenv("NO_PROXY", no_proxy)
        pool = ConnectorPool()
        token = BotToken(_StaticTokenCredentials("", "unused"))
        url = f"{fake_connector.url}v3/conversations/c/activities"
        try:
            answer = await pool.send("POST", url, token, {"type": "message", "text": "hi"})
        finally:
            await pool.close()

    if no_proxy is None:
        assert answer is not None and answer.id == "via-proxy"
        assert proxied == [url] and fake_connector.calls == []
    else:
        assert answer is not None and answer.id == "fake-1"
        assert proxied == [] and len(fake_connector.calls) == 1


async def test_a_turn_builds_no_user_token_client_the_bot_never_uses(
    local_endpoint: TeamsEndpoint, fake_connector: FakeConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[object] = []
    original = _UserTokenClientImpl.__init__

    def counted(self: _UserTokenClientImpl, *args: Any, **kwargs: Any) -> None:
        built.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(_UserTokenClientImpl, "__init__", counted)
    app = web.Application()
    app.router.add_post("/api/messages", local_endpoint.handle)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        message = make_message("hello", service_url=fake_connector.url)
        assert (await client.post("/api/messages", json=message)).status < 300

    assert [c.text for c in fake_connector.calls] == ["you said hello"]
    assert built == []  # botbuilder built one (~20 ms of msrest set-up) for every turn
