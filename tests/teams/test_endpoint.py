"""POST /api/messages end to end in local mode: the real aiohttp app and CloudAdapter, the
recorded Teams activities, and a fake Bot Connector at the activities' serviceUrl."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.teams.activities import CardActionError, CardActionResult, CardReply
from bot.teams.app import listen_host, make_app
from bot.teams.auth import AuthConfigError
from commands.config import Server, Teams, load_config
from commands.types import Actor, Invocation, Reply
from tests.teams_factory import (
    ALEX,
    CARD_MESSAGE_ID,
    CHANNEL_THREAD,
    PERSONAL_CONVERSATION,
    TENANT,
    make_conversation_update,
    make_installation_update,
    make_invoke,
    make_message,
    make_submit,
)

if TYPE_CHECKING:  # a runtime import would come before pytest's assertion rewriting
    from tests.fake_connector import FakeConnector

pytest_plugins = ["tests.fake_connector"]

TEAMS = Teams(allowed_tenants=[TENANT])
CARD = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "Plan"}]}
DECIDED = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "OK"}]}
ADAPTIVE = "application/vnd.microsoft.card.adaptive"


class EchoDispatcher:
    """Echoes the command; `card` adds a card, `boom` fails like a bug would."""

    def __init__(self) -> None:
        self.invocations: list[Invocation] = []

    async def handle(self, invocation: Invocation) -> Reply:
        self.invocations.append(invocation)
        if invocation.text == "boom":
            raise RuntimeError("db password=hunter2 leaked in a traceback")
        return Reply(
            text=f"echo: {invocation.text}", card=CARD if invocation.text == "card" else None
        )


@dataclass
class CardActions:
    """Knows one verb, `approve`; `explode` fails like a bug would."""

    calls: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(
        self,
        verb: str,
        data: dict[str, Any],
        actor: Actor,
        tenant_id: str | None,
        conversation_id: str,
        reply_to_id: str | None,
        correlation_id: str,
    ) -> CardActionResult:
        self.calls.append(
            {
                "verb": verb,
                "data": data,
                "actor": actor,
                "tenant_id": tenant_id,
                "conversation_id": conversation_id,
                "reply_to_id": reply_to_id,
                "correlation_id": correlation_id,
            }
        )
        if verb == "explode":
            raise RuntimeError("internal detail")
        if verb == "approve":
            return CardReply(DECIDED)
        return CardActionError("UnknownVerb", f"I don't know the action {verb!r}.")


@dataclass
class References:
    saved: list[dict[str, Any]] = field(default_factory=list)
    fail: bool = False

    async def __call__(
        self,
        conversation_id: str,
        reference_json: str,
        conversation_type: str,
        service_url: str,
        tenant_id: str | None,
    ) -> None:
        if self.fail:
            raise OSError("disk full")
        self.saved.append(
            {
                "conversation_id": conversation_id,
                "reference": json.loads(reference_json),
                "conversation_type": conversation_type,
                "service_url": service_url,
                "tenant_id": tenant_id,
            }
        )


@dataclass
class Bot:
    client: TestClient[Any, Any]
    connector: FakeConnector
    dispatcher: EchoDispatcher
    actions: CardActions
    references: References

    async def send(self, activity: dict[str, Any]) -> tuple[int, Any]:
        """POST an activity as Teams would, aimed at the fake connector; (status, JSON or None)."""
        activity["serviceUrl"] = self.connector.url
        response = await self.client.post("/api/messages", json=activity)
        body = await response.json() if response.content_type == "application/json" else None
        return response.status, body


@pytest.fixture
async def bot(fake_connector: FakeConnector, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Bot]:
    monkeypatch.delenv(TEAMS.app_id_env, raising=False)
    dispatcher, actions, references = EchoDispatcher(), CardActions(), References()
    app = make_app(
        TEAMS,
        dispatcher,
        mode="local",
        card_action=actions,
        on_conversation_reference=references,
    )
    async with TestClient(TestServer(app)) as client:
        yield Bot(client, fake_connector, dispatcher, actions, references)


# -- messages ------------------------------------------------------------------------------


async def test_personal_message_reaches_dispatcher_and_reply_answers_it(bot: Bot) -> None:
    activity = make_message("/rollback Lab")

    status, _ = await bot.send(activity)

    assert status == 201
    assert bot.dispatcher.invocations == [
        Invocation(
            text="/rollback Lab",
            actor=Actor(ALEX.name, ALEX.aad_object_id),
            tenant_id=TENANT,
            conversation_id=PERSONAL_CONVERSATION,
            conversation_type="personal",
            correlation_id=activity["id"],
        )
    ]
    [reply] = bot.connector.calls
    assert (reply.method, reply.conversation_id) == ("POST", PERSONAL_CONVERSATION)
    assert reply.activity_id == activity["id"]  # POST …/activities/{replyToId}
    assert reply.body["text"] == "echo: /rollback Lab"
    assert reply.body["replyToId"] == activity["id"]
    assert not reply.body.get("attachments")


async def test_channel_mention_is_stripped_and_reply_goes_into_the_thread(bot: Bot) -> None:
    activity = make_message("status Lab", conversation_type="channel")
    assert activity["text"].startswith("<at>")

    await bot.send(activity)

    [invocation] = bot.dispatcher.invocations
    assert invocation.text == "status Lab"
    assert invocation.conversation_type == "channel"
    [reply] = bot.connector.calls
    assert reply.conversation_id == CHANNEL_THREAD
    assert reply.path.endswith(f"/activities/{activity['id']}")
    assert reply.body["text"] == "echo: status Lab"


async def test_reply_card_arrives_alone_with_the_text_as_its_summary(bot: Bot) -> None:
    """Text + card in one activity makes the Agents Playground split it and answer without
    an id, so the card could not be edited later: the card goes alone, text as summary."""
    await bot.send(make_message("card"))

    [reply] = bot.connector.calls
    assert "text" not in reply.body
    assert reply.body["summary"] == "echo: card"
    assert reply.body["attachments"] == [{"contentType": ADAPTIVE, "content": CARD}]


async def test_a_failing_command_apologises_with_the_correlation_id_and_no_detail(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    activity = make_message("boom")

    status, _ = await bot.send(activity)

    assert status == 201
    [apology] = bot.connector.calls
    assert activity["id"] in apology.body["text"]
    assert "hunter2" not in apology.body["text"] and "Traceback" not in apology.body["text"]
    # The correlation id is a field of the log line, not words in its message.
    [failed] = [r for r in caplog.records if r.exc_info]
    assert getattr(failed, "correlation_id", None) == activity["id"]
    assert activity["id"] not in failed.getMessage()


async def test_a_reply_the_connector_refuses_is_logged_and_not_a_500(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    """A 500 invites a redelivery of the message, which would run the command twice."""
    bot.connector.fail_next(2, status=403)  # e.g. the bot was removed from the chat
    activity = make_message("help")

    status, _ = await bot.send(activity)

    assert status == 201
    assert [c.status for c in bot.connector.calls] == [403, 403]  # the reply, the apology
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert errors and all(getattr(r, "correlation_id", None) == activity["id"] for r in errors)


async def test_the_fake_connector_throttles_on_request(fake_connector: FakeConnector) -> None:
    fake_connector.fail_next(1, status=429, retry_after=1.5)
    url = f"{fake_connector.url}v3/conversations/c1/activities"
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json={"type": "message"}) as first:
            assert (first.status, first.headers["Retry-After"]) == (429, "1.5")
        async with session.post(url, json={"type": "message"}) as second:
            assert second.status == 200 and (await second.json())["id"]

    assert [c.status for c in fake_connector.calls] == [429, 200]
    assert [c.conversation_id for c in fake_connector.activities] == ["c1"]


# -- card actions --------------------------------------------------------------------------


async def test_execute_click_returns_the_callbacks_card_in_the_invoke_response(bot: Bot) -> None:
    activity = make_invoke("approve", {"request_id": "R-1"})

    status, body = await bot.send(activity)

    assert status == 200
    assert body == {"statusCode": 200, "type": ADAPTIVE, "value": DECIDED}
    [call] = bot.actions.calls
    assert call == dict(
        verb="approve",
        data={"request_id": "R-1"},
        actor=Actor(ALEX.name, ALEX.aad_object_id),
        tenant_id=TENANT,
        conversation_id=PERSONAL_CONVERSATION,
        reply_to_id=CARD_MESSAGE_ID,
        correlation_id=activity["id"],
    )
    assert bot.connector.calls == []  # the card travels in the invoke response only


@pytest.mark.parametrize(
    ("activity", "code", "status_code"),
    [
        (make_invoke("frobnicate", {}), "UnknownVerb", 400),
        (make_invoke("approve", {}, action_type="Action.Submit"), "NotSupported", 400),
        (make_invoke("", {}), "BadRequest", 400),
        (make_invoke("explode", {}), "InternalError", 500),
    ],
    ids=["unknown-verb", "not-action-execute", "no-verb", "callback-raises"],
)
async def test_refused_card_actions_answer_http_200_with_an_error_body(
    bot: Bot, activity: dict[str, Any], code: str, status_code: int
) -> None:
    status, body = await bot.send(activity)

    assert status == 200
    assert body["statusCode"] == status_code
    assert body["type"] == "application/vnd.microsoft.error"
    assert body["value"]["code"] == code
    assert "internal detail" not in body["value"]["message"]


async def test_card_action_without_a_callback_answers_a_400_error_body(
    fake_connector: FakeConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TEAMS.app_id_env, raising=False)
    app = make_app(TEAMS, EchoDispatcher(), mode="local")
    activity = make_invoke("approve", {}, service_url=fake_connector.url)
    async with TestClient(TestServer(app)) as client:
        response = await client.post("/api/messages", json=activity)
        body = await response.json()

    assert response.status == 200
    assert (body["statusCode"], body["value"]["code"]) == (400, "NotSupported")


async def test_submit_fallback_takes_the_card_action_path_and_replaces_the_card(bot: Bot) -> None:
    status, _ = await bot.send(make_submit("approve", {"request_id": "R-1"}))

    assert status == 201
    assert bot.dispatcher.invocations == []
    [call] = bot.actions.calls
    assert (call["verb"], call["data"]) == ("approve", {"request_id": "R-1"})
    [update] = bot.connector.calls
    assert (update.method, update.activity_id) == ("PUT", CARD_MESSAGE_ID)
    assert update.body["attachments"] == [{"contentType": ADAPTIVE, "content": DECIDED}]


async def test_refused_submit_fallback_is_answered_in_text(bot: Bot) -> None:
    await bot.send(make_submit("frobnicate", {}))

    [answer] = bot.connector.calls
    assert answer.method == "POST"
    assert answer.body["text"] == "I don't know the action 'frobnicate'."


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b"[1, 2]", "application/json", 400),
        (b'{"text": "no type"}', "application/json", 400),
        (b'{"type": "message", "timestamp": "yesterday", "conversation": {"id": "c"}}',
         "application/json", 400),
        (b'{"type": "message", "serviceUrl": "http://127.0.0.1:9/"}', "application/json", 400),
        (b'{"type": "message", "conversation": {"id": "c"}}', "application/json", 400),
        (b'{"type": "message"}', "text/plain", 415),
    ],
    ids=["not-json", "json-array", "no-type", "bad-timestamp", "no-conversation",
         "no-service-url", "not-json-content-type"],
)  # fmt: skip
async def test_a_body_that_is_not_an_activity_is_a_client_error(
    bot: Bot, body: bytes, content_type: str, status: int
) -> None:
    response = await bot.client.post(
        "/api/messages", data=body, headers={"Content-Type": content_type}
    )

    assert response.status == status
    assert bot.dispatcher.invocations == [] and bot.connector.calls == []


# -- installation and conversation references ----------------------------------------------


async def test_installation_greets_once_and_stores_the_conversation_reference(bot: Bot) -> None:
    activity = make_installation_update()

    status, _ = await bot.send(activity)

    assert status == 201
    [saved] = bot.references.saved
    assert saved["conversation_id"] == PERSONAL_CONVERSATION
    assert (saved["conversation_type"], saved["tenant_id"]) == ("personal", TENANT)
    assert saved["service_url"] == bot.connector.url
    assert saved["reference"]["serviceUrl"] == bot.connector.url
    assert saved["reference"]["conversation"]["id"] == PERSONAL_CONVERSATION
    assert saved["reference"]["bot"]["id"] == activity["recipient"]["id"]
    [greeting] = bot.connector.calls
    assert "`help`" in greeting.body["text"] and "\n" not in greeting.body["text"]


async def test_channel_installation_greeting_says_to_mention_the_bot(bot: Bot) -> None:
    await bot.send(make_installation_update(conversation_type="channel"))

    [greeting] = bot.connector.calls
    assert "@mention" in greeting.body["text"]
    assert bot.references.saved[0]["conversation_type"] == "channel"


async def test_bot_added_to_a_team_stores_the_reference_without_a_second_greeting(
    bot: Bot,
) -> None:
    await bot.send(make_conversation_update())

    assert [s["conversation_id"] for s in bot.references.saved] == ["team-id"]
    assert bot.connector.calls == []


async def test_uninstall_greets_nobody(bot: Bot) -> None:
    await bot.send(make_installation_update(action="remove"))

    assert bot.connector.calls == []


async def test_every_message_refreshes_the_conversation_reference(bot: Bot) -> None:
    await bot.send(make_message("help"))
    await bot.send(make_message("status Lab", conversation_type="channel"))

    assert [s["conversation_id"] for s in bot.references.saved] == [
        PERSONAL_CONVERSATION,
        CHANNEL_THREAD,
    ]


async def test_a_failing_reference_store_does_not_cost_the_user_the_answer(bot: Bot) -> None:
    bot.references.fail = True

    await bot.send(make_message("help"))

    [reply] = bot.connector.calls
    assert reply.body["text"] == "echo: help"


# -- health, mode, binding -----------------------------------------------------------------


async def test_healthz_reports_local_mode_to_this_machine_only(bot: Bot) -> None:
    response = await bot.client.get("/healthz")
    proxied = await bot.client.get("/healthz", headers={"Forwarded": "for=203.0.113.9"})

    assert response.status == 200
    assert await response.json() == {"status": "ok", "mode": "local"}
    assert await proxied.json() == {"status": "ok"}


async def test_local_mode_says_so_loudly_at_startup(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(TEAMS.app_id_env, raising=False)
    with caplog.at_level(logging.WARNING, logger="bot.teams.app"):
        async with TestClient(TestServer(make_app(TEAMS, EchoDispatcher(), mode="local"))):
            pass

    assert any("UNAUTHENTICATED LOCAL MODE" in r.getMessage() for r in caplog.records)


DEMO_CONFIG = Path(__file__).resolve().parents[2] / "lab" / "demo-bot.toml"


def test_the_demo_config_says_local_mode_on_loopback() -> None:
    config = load_config(DEMO_CONFIG)

    assert config.server.mode == "local"
    assert listen_host(config) == "127.0.0.1"


def test_local_mode_with_a_non_loopback_host_is_not_a_valid_config() -> None:
    with pytest.raises(ValueError, match="must be loopback"):
        Server(mode="local", host="0.0.0.0")  # noqa: S104
    assert Server(mode="teams", host="0.0.0.0").host == "0.0.0.0"  # noqa: S104


def test_an_app_id_without_its_password_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(TEAMS.app_id_env, "some-app-id")
    monkeypatch.delenv(TEAMS.app_password_env, raising=False)
    monkeypatch.setenv(TEAMS.app_tenant_id_env, TENANT)

    with pytest.raises(AuthConfigError, match=TEAMS.app_password_env):
        make_app(TEAMS, EchoDispatcher(), mode="teams")


@pytest.mark.parametrize("missing", [TEAMS.app_id_env, TEAMS.app_tenant_id_env])
def test_teams_mode_without_its_credentials_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    for name in (TEAMS.app_id_env, TEAMS.app_password_env, TEAMS.app_tenant_id_env):
        monkeypatch.setenv(name, "set")
    monkeypatch.delenv(missing)

    with pytest.raises(AuthConfigError, match=f"^{missing} not set"):
        make_app(TEAMS, EchoDispatcher(), mode="teams")


def test_local_mode_refuses_an_app_id_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TEAMS.app_id_env, "11111111-2222-3333-4444-555555555555")

    with pytest.raises(AuthConfigError, match=TEAMS.app_id_env):
        make_app(TEAMS, EchoDispatcher(), mode="local")


# -- found by the fuzz campaign (tests/fuzz) ------------------------------------------------


@pytest.mark.parametrize(
    "body",
    ["[" * 100_000 + "]" * 100_000, '{"type": "message", "value": ' + "[" * 40 + "]" * 40 + "}"],
    ids=["deeper-than-json-can-parse", "deeper-than-any-activity"],
)
async def test_deeply_nested_json_is_a_400_not_a_500(bot: Bot, body: str) -> None:
    response = await bot.client.post(
        "/api/messages", data=body, headers={"Content-Type": "application/json"}
    )

    assert response.status == 400 and "nests deeper" in (await response.json())["error"]
    assert bot.dispatcher.invocations == []


@pytest.mark.parametrize("name", ["task/fetch", "signin/verifyState", "composeExtension/query", ""])
async def test_an_invoke_the_bot_does_not_serve_is_a_400_not_botbuilders_501(
    bot: Bot, name: str
) -> None:
    activity = make_invoke("approve", {})
    activity["name"] = name

    status, body = await bot.send(activity)

    assert status == 400 and body["statusCode"] == 400
    assert bot.actions.calls == []
