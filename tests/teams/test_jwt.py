"""Authenticated mode: real RS256 tokens from a local OpenID/JWKS authority.

A valid Teams token reaches the dispatcher and the reply carries our outbound token; every
kind of bad token is a 401 (stock botbuilder 4.17.1 says 500 for most), and then neither the
dispatcher nor the connector hears anything.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

import bot.teams.auth
from bot.teams.app import make_app
from commands.config import Teams
from commands.types import Invocation, Reply
from tests.teams_factory import TENANT, make_invoke, make_message

if TYPE_CHECKING:  # a runtime import would come before pytest's assertion rewriting
    from tests.fake_connector import FakeConnector
    from tests.jwt_fixtures import JwtAuthority

pytest_plugins = ["tests.fake_connector", "tests.jwt_fixtures", "tests.tls_fixtures"]

TEAMS = Teams(allowed_tenants=[TENANT])


class EchoDispatcher:
    def __init__(self) -> None:
        self.invocations: list[Invocation] = []

    async def handle(self, invocation: Invocation) -> Reply:
        self.invocations.append(invocation)
        return Reply(text=f"echo: {invocation.text}")


@dataclass
class SecuredBot:
    client: TestClient[Any, Any]
    connector: FakeConnector
    dispatcher: EchoDispatcher
    authority: JwtAuthority

    async def post(self, activity: dict[str, Any], authorization: str | None) -> int:
        headers = {"Authorization": authorization} if authorization is not None else {}
        response = await self.client.post("/api/messages", json=activity, headers=headers)
        return response.status


@pytest.fixture
async def secured(
    tls_fake_connector: FakeConnector,
    jwt_authority: JwtAuthority,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[SecuredBot]:
    monkeypatch.setenv(TEAMS.app_id_env, jwt_authority.app_id)
    monkeypatch.setenv(TEAMS.app_password_env, "unused: outbound uses a static token")
    monkeypatch.setenv(TEAMS.app_tenant_id_env, TENANT)
    dispatcher = EchoDispatcher()
    app = make_app(TEAMS, dispatcher, mode="teams", auth_overrides=jwt_authority.overrides())
    async with TestClient(TestServer(app)) as client:
        yield SecuredBot(client, tls_fake_connector, dispatcher, jwt_authority)


async def test_a_valid_teams_token_reaches_the_dispatcher(secured: SecuredBot) -> None:
    url = secured.connector.url
    activity = make_message("status Lab", service_url=url)

    status = await secured.post(activity, secured.authority.bearer(service_url=url))

    assert status == 201
    assert [i.text for i in secured.dispatcher.invocations] == ["status Lab"]
    [reply] = secured.connector.calls
    assert reply.body["text"] == "echo: status Lab"
    assert reply.authorization == f"Bearer {secured.authority.overrides().static_token}"


async def test_a_token_expired_within_the_five_minute_leeway_is_accepted(
    secured: SecuredBot,
) -> None:
    url = secured.connector.url
    token = secured.authority.bearer(service_url=url, expires_in=-120)

    assert await secured.post(make_message("help", service_url=url), token) == 201


async def test_healthz_reports_teams_mode_to_this_machine(secured: SecuredBot) -> None:
    response = await secured.client.get("/healthz")

    assert await response.json() == {"status": "ok", "mode": "teams"}


async def test_healthz_says_only_ok_through_a_proxy(secured: SecuredBot) -> None:
    response = await secured.client.get("/healthz", headers={"X-Forwarded-For": "203.0.113.9"})

    assert response.status == 200
    assert await response.json() == {"status": "ok"}


# Each case builds the Authorization header (or None) from the test's authority and the
# serviceUrl the activity carries.
BadHeader = Callable[["JwtAuthority", str], "str | None"]

BAD_TOKENS: dict[str, BadHeader] = {
    "wrong-audience": lambda a, url: a.bearer(service_url=url, audience="another-bot"),
    "wrong-issuer": lambda a, url: a.bearer(service_url=url, issuer="https://evil.example"),
    "expired": lambda a, url: a.bearer(service_url=url, expires_in=-3600),
    "foreign-key": lambda a, url: a.bearer(service_url=url, key=a.foreign_key),
    "unknown-kid": lambda a, url: a.bearer(service_url=url, kid="no-such-key"),
    "key-not-endorsed-for-msteams": lambda a, url: a.bearer(service_url=url, key=a.webchat_key),
    "wrong-serviceurl-claim": lambda a, url: a.bearer(service_url="https://evil.example/"),
    "missing-header": lambda a, url: None,
    "empty-header": lambda a, url: "",
    "not-a-jwt": lambda a, url: "Bearer not.a.jwt",
    "wrong-scheme": lambda a, url: a.bearer(service_url=url).replace("Bearer", "Basic"),
}


@pytest.mark.parametrize("make_header", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
@pytest.mark.parametrize("kind", ["message", "invoke"])
async def test_a_bad_token_is_401_and_nothing_runs(
    secured: SecuredBot, make_header: BadHeader, kind: str
) -> None:
    url = secured.connector.url
    if kind == "message":
        activity = make_message("status Lab", service_url=url)
    else:
        activity = make_invoke("approve", {"request_id": "R-1"}, service_url=url)

    status = await secured.post(activity, make_header(secured.authority, url))

    assert status == 401
    assert secured.dispatcher.invocations == []
    assert secured.connector.calls == []


@pytest.fixture
def silent_metadata_url() -> Iterator[str]:
    """A port that accepts connections and never answers: an OpenID endpoint gone dark."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/.well-known/openidconfiguration"
    # Closing resets the pending connections, which frees the thread stuck on them.


async def test_unreachable_signing_keys_cost_a_401_not_a_frozen_bot(
    fake_connector: FakeConnector,
    jwt_authority: JwtAuthority,
    silent_metadata_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bot.teams.auth, "AUTH_TIMEOUT_S", 0.5)
    monkeypatch.setattr(fake_connector, "url", fake_connector.url.replace("http:", "https:"))
    monkeypatch.setenv(TEAMS.app_id_env, jwt_authority.app_id)
    monkeypatch.setenv(TEAMS.app_password_env, "unused")
    monkeypatch.setenv(TEAMS.app_tenant_id_env, TENANT)
    overrides = dataclasses.replace(
        jwt_authority.overrides(), openid_metadata_url=silent_metadata_url
    )
    dispatcher = EchoDispatcher()
    url = fake_connector.url
    app = make_app(TEAMS, dispatcher, mode="teams", auth_overrides=overrides)
    async with TestClient(TestServer(app)) as c:
        pending = asyncio.create_task(
            c.post(
                "/api/messages",
                json=make_message("help", service_url=url),
                headers={"Authorization": jwt_authority.bearer(service_url=url)},
            )
        )
        health = await c.get("/healthz")  # answered while the key fetch hangs
        assert health.status == 200 and not pending.done()
        assert (await pending).status == 401
    assert dispatcher.invocations == [] and fake_connector.calls == []
