"""Only Teams, only its tenant, only serviceUrls the mode allows — checked after the token.

Teams mode with real RS256 tokens from the local JWKS: a Web Chat or Direct Line activity
carries a token the SDK accepts (its key is endorsed for that channel), so the 403 proves
our own check; a tenant mismatch, a plain-http serviceUrl and a missing tenant are refused
the same way. Every refusal is reported for the audit, and nothing reaches a command.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.teams.admission import Refusal
from bot.teams.app import make_app
from commands.config import Teams
from commands.types import Invocation, Reply
from tests.teams_factory import TENANT, make_invoke, make_message

if TYPE_CHECKING:
    from tests.fake_connector import FakeConnector
    from tests.jwt_fixtures import JwtAuthority, SigningKey

pytest_plugins = ["tests.fake_connector", "tests.jwt_fixtures", "tests.tls_fixtures"]

TEAMS = Teams(allowed_tenants=[TENANT])
OTHER_TENANT = "99999999-0000-0000-0000-000000000009"
ROOT = Path(__file__).resolve().parents[2]


class EchoDispatcher:
    def __init__(self) -> None:
        self.invocations: list[Invocation] = []

    async def handle(self, invocation: Invocation) -> Reply:
        self.invocations.append(invocation)
        return Reply(text=f"echo: {invocation.text}")


@dataclass
class Gate:
    client: TestClient[Any, Any]
    connector: FakeConnector
    dispatcher: EchoDispatcher
    authority: JwtAuthority
    refused: list[tuple[Refusal, Any]] = field(default_factory=list)

    async def post(self, activity: dict[str, Any], *, key: SigningKey | None = None) -> int:
        url = activity["serviceUrl"]
        token = self.authority.bearer(service_url=url, key=key)
        response = await self.client.post(
            "/api/messages", json=activity, headers={"Authorization": token}
        )
        return response.status

    def nothing_happened(self) -> bool:
        return self.dispatcher.invocations == [] and self.connector.calls == []


@pytest.fixture
async def gate(
    tls_fake_connector: FakeConnector,
    jwt_authority: JwtAuthority,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Gate]:
    monkeypatch.setenv(TEAMS.app_id_env, jwt_authority.app_id)
    monkeypatch.setenv(TEAMS.app_password_env, "unused: outbound uses a static token")
    monkeypatch.setenv(TEAMS.app_tenant_id_env, TENANT)
    dispatcher = EchoDispatcher()
    refused: list[tuple[Refusal, Any]] = []

    async def on_refused(refusal: Refusal, activity: Any) -> None:
        refused.append((refusal, activity))

    app = make_app(
        TEAMS,
        dispatcher,
        mode="teams",
        on_refused=on_refused,
        auth_overrides=jwt_authority.overrides(),
    )
    async with TestClient(TestServer(app)) as client:
        yield Gate(client, tls_fake_connector, dispatcher, jwt_authority, refused)


def teams_message(gate: Gate, **changes: Any) -> dict[str, Any]:
    activity = make_message("status Lab", service_url=gate.connector.url)
    activity.update(changes)
    return activity


async def test_a_teams_activity_with_a_teams_token_is_let_in(gate: Gate) -> None:
    assert await gate.post(teams_message(gate)) == 201
    assert [i.tenant_id for i in gate.dispatcher.invocations] == [TENANT]
    assert gate.refused == []


@pytest.mark.parametrize("channel", ["webchat", "directline"])
async def test_web_chat_and_direct_line_are_refused_though_their_token_is_valid(
    gate: Gate, channel: str
) -> None:
    key = gate.authority.webchat_key if channel == "webchat" else gate.authority.directline_key
    activity = teams_message(gate, channelId=channel)

    status = await gate.post(activity, key=key)

    assert status == 403  # not 401: the SDK accepted the token; our channel check refused
    assert gate.nothing_happened()
    [(refusal, seen)] = gate.refused
    assert refusal.code == "channel" and seen.channel_id == channel


async def test_a_web_chat_token_cannot_pass_for_teams(gate: Gate) -> None:
    """The other half: claiming msteams with a key endorsed only for webchat is a 401."""
    status = await gate.post(teams_message(gate), key=gate.authority.webchat_key)

    assert status == 401 and gate.nothing_happened()


@pytest.mark.parametrize(
    ("conversation_tenant", "channel_data_tenant"),
    [(TENANT, OTHER_TENANT), (OTHER_TENANT, TENANT)],
    ids=["channel-data-differs", "conversation-differs"],
)
async def test_a_tenant_mismatch_is_refused_and_reported(
    gate: Gate, conversation_tenant: str, channel_data_tenant: str
) -> None:
    activity = teams_message(gate)
    activity["conversation"]["tenantId"] = conversation_tenant
    activity["channelData"]["tenant"] = {"id": channel_data_tenant}

    assert await gate.post(activity) == 403
    assert gate.nothing_happened()
    assert [r.code for r, _ in gate.refused] == ["tenant-mismatch"]


async def test_an_activity_without_conversation_tenant_is_refused(gate: Gate) -> None:
    activity = teams_message(gate)
    del activity["conversation"]["tenantId"]  # channelData alone is what a client can write

    assert await gate.post(activity) == 403
    assert gate.nothing_happened()
    assert [r.code for r, _ in gate.refused] == ["tenant-missing"]


async def test_a_card_click_with_a_tenant_mismatch_is_refused(gate: Gate) -> None:
    activity = make_invoke("approve", {"request_id": "R-1"}, service_url=gate.connector.url)
    activity["channelData"]["tenant"] = {"id": OTHER_TENANT}

    assert await gate.post(activity) == 403
    assert gate.nothing_happened()


async def test_teams_mode_refuses_a_plain_http_service_url(gate: Gate) -> None:
    """The token's serviceurl claim matches, so only our https rule stands in the way."""
    activity = teams_message(gate, serviceUrl=gate.connector.url.replace("https:", "http:"))

    assert await gate.post(activity) == 403
    assert gate.nothing_happened()
    assert [r.code for r, _ in gate.refused] == ["service-url"]


async def test_a_service_url_other_than_the_tokens_claim_is_refused_by_the_sdk(gate: Gate) -> None:
    """botbuilder compares the activity's serviceUrl with the token's `serviceurl` claim."""
    activity = teams_message(gate)
    token = gate.authority.bearer(service_url="https://attacker.example/")

    response = await gate.client.post(
        "/api/messages", json=activity, headers={"Authorization": token}
    )

    assert response.status == 401
    assert gate.nothing_happened()


# -- local mode ----------------------------------------------------------------------------


@pytest.fixture
async def local(
    fake_connector: FakeConnector, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Any]:
    monkeypatch.delenv(TEAMS.app_id_env, raising=False)
    dispatcher = EchoDispatcher()
    stored: list[str] = []

    async def remember(conversation_id: str, ref: str, kind: str, url: str, tenant: Any) -> None:
        stored.append(url)

    app = make_app(TEAMS, dispatcher, mode="local", on_conversation_reference=remember)
    async with TestClient(TestServer(app)) as client:
        yield client, dispatcher, stored


async def test_local_mode_refuses_a_service_url_that_is_not_loopback(local: Any) -> None:
    client, dispatcher, stored = local
    activity = make_message("status Lab", service_url="https://attacker.example/")

    response = await client.post("/api/messages", json=activity)

    assert response.status == 403
    assert dispatcher.invocations == [] and stored == []


async def test_local_mode_refuses_requests_that_came_through_a_proxy(
    local: Any, fake_connector: FakeConnector
) -> None:
    client, dispatcher, stored = local
    activity = make_message("status Lab", service_url=fake_connector.url)

    response = await client.post(
        "/api/messages", json=activity, headers={"X-Forwarded-For": "203.0.113.9"}
    )

    assert response.status == 403
    assert dispatcher.invocations == [] and stored == [] and fake_connector.calls == []


# -- refusing to start ---------------------------------------------------------------------


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_teams_mode_without_the_app_id_refuses_to_start_in_one_line(tmp_path: Path) -> None:
    """The issue's reproduction: the production config, its EnvironmentFile not loaded."""
    config = (ROOT / "docs" / "config.example.toml").read_text(encoding="utf-8")
    path = tmp_path / "config.toml"
    path.write_text(config, encoding="utf-8")

    done = run_cli("run", "--config", str(path), env={"MCMS_AUDIT_KEY": "k" * 32})

    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "MCMS_BOT_APP_ID" in lines[0] and "refusing to start" in lines[0]


def test_check_config_refuses_local_mode_on_a_public_host(tmp_path: Path) -> None:
    demo = (ROOT / "lab" / "demo-bot.toml").read_text(encoding="utf-8")
    path = tmp_path / "config.toml"
    path.write_text(demo.replace('host = "127.0.0.1"\nport', 'host = "0.0.0.0"\nport'), "utf-8")

    done = run_cli("check-config", "--config", str(path), env={})

    assert done.returncode == 1
    assert "server: " in done.stderr and "must be loopback" in done.stderr


class _Transport:
    """The peer an aiohttp request reports as `request.remote`."""

    def __init__(self, peer: str) -> None:
        self._peer = peer

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return (self._peer, 40000) if name == "peername" else default


@pytest.mark.parametrize(
    ("peer", "headers", "direct"),
    [
        ("127.0.0.1", {}, True),
        ("::1", {}, True),
        ("192.0.2.7", {}, False),
        ("10.1.2.3", {}, False),
        ("127.0.0.1", {"X-Forwarded-For": "203.0.113.9"}, False),
        ("127.0.0.1", {"X-Real-IP": "203.0.113.9"}, False),
    ],
)
async def test_healthz_tells_the_mode_only_to_this_machine(
    peer: str, headers: dict[str, str], direct: bool
) -> None:
    from aiohttp.test_utils import make_mocked_request

    from bot.teams.app import MODE_KEY, _healthz
    from bot.teams.endpoint import is_direct_loopback

    app = make_app(TEAMS, EchoDispatcher(), mode="local")
    request = make_mocked_request(
        "GET", "/healthz", headers=headers, app=app, transport=_Transport(peer)
    )
    assert app[MODE_KEY] == "local"

    body = json.loads((await _healthz(request)).text or "{}")

    assert is_direct_loopback(request) is direct
    assert body == ({"status": "ok", "mode": "local"} if direct else {"status": "ok"})


async def test_no_conversation_reference_is_kept_for_a_foreign_tenant(chat: Any) -> None:
    """Proactive posts (alerts, run cards) go where references point: never a stranger's."""
    from tests.conftest import FOREIGN_TENANT
    from tests.teams_factory import PERSONAL_CONVERSATION

    reply = await chat.say("help", tenant=FOREIGN_TENANT)

    assert "not enabled for your organization" in reply.text
    assert await chat.store.get_conversation_ref(PERSONAL_CONVERSATION) is None
    await chat.say("help")
    assert await chat.store.get_conversation_ref(PERSONAL_CONVERSATION) is not None
