"""POST /api/alerts: Grafana's webhook, with its bearer token, to the subscribed chat."""

from __future__ import annotations

import asyncio
import copy
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import card_texts
from tests.teams_factory import PERSONAL_CONVERSATION

if TYPE_CHECKING:
    from tests.conftest import Chat

TOKEN = "grafana-test-token"

# As Grafana 11 unified alerting's webhook contact point sends it (trimmed of nothing we read).
FIRING: dict[str, Any] = {
    "receiver": "mcms-bot",
    "status": "firing",
    "orgId": 1,
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "MCMS SLA", "environment": "lab", "grafana_folder": "MCMS"},
            "annotations": {
                "summary": "Health latency above 2000 ms",
                "description": "p95 of mcms_smoke_latency_ms over 5 min is 2450 ms",
            },
            "startsAt": "2026-11-27T08:10:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "https://grafana.example/alerting/grafana/abc/view",
            "fingerprint": "8d3f0c1b2a4e5f60",
            "silenceURL": "https://grafana.example/alerting/silence/new",
            "dashboardURL": "https://grafana.example/d/mcms-ops",
            "panelURL": "https://grafana.example/d/mcms-ops?viewPanel=1",
            "values": {"B": 2450, "C": 1},
            "valueString": "[ var='B' labels={} value=2450 ]",
        }
    ],
    "groupLabels": {"alertname": "MCMS SLA"},
    "commonLabels": {"alertname": "MCMS SLA", "environment": "lab"},
    "commonAnnotations": {},
    "externalURL": "https://grafana.example/",
    "version": "1",
    "groupKey": '{}:{alertname="MCMS SLA"}',
    "truncatedAlerts": 0,
    "title": "[FIRING:1] MCMS SLA (lab)",
    "state": "alerting",
    "message": "**Firing**",
}


def resolved() -> dict[str, Any]:
    payload = copy.deepcopy(FIRING)
    payload["status"] = "resolved"
    payload["alerts"][0]["status"] = "resolved"
    payload["alerts"][0]["endsAt"] = "2026-11-27T08:25:00Z"
    return payload


async def post(chat: Chat, body: Any, authorization: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = await chat.client.post("/api/alerts", json=body, headers=headers)
    return response.status, await response.json()


async def cards_after(chat: Chat, count: int, timeout: float = 5) -> list[Any]:
    async with asyncio.timeout(timeout):
        while len(chat.replies) < count:
            await asyncio.sleep(0.02)
    await chat.settle()
    return chat.replies


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MCMS_GRAFANA_TOKEN", TOKEN)
    return TOKEN


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Basic {TOKEN}", TOKEN, "Bearer ", f"Bearer {TOKEN}x"],
    ids=["missing", "wrong", "basic-scheme", "no-scheme", "empty", "longer"],
)
async def test_wrong_or_missing_token_is_401_and_nothing_is_posted(
    chat: Chat, token: str, authorization: str | None
) -> None:
    await chat.say("subscribe Lab")
    before = len(chat.connector.calls)
    status, body = await post(chat, FIRING, authorization)
    assert status == 401 and "Bearer" in body["error"]
    await asyncio.sleep(0.1)
    await chat.settle()
    assert len(chat.connector.calls) == before


async def test_no_token_configured_refuses_even_a_bearer(
    chat: Chat, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MCMS_GRAFANA_TOKEN", raising=False)
    status, _ = await post(chat, FIRING, "Bearer ")
    assert status == 401


async def test_firing_and_resolved_post_cards_to_the_subscribed_conversation(
    chat: Chat, token: str
) -> None:
    await chat.say("subscribe Lab")
    status, body = await post(chat, FIRING, f"Bearer {token}")
    assert status == 202
    assert body == {"queued": [{"environment": "Lab", "conversation": PERSONAL_CONVERSATION}]}
    firing = (await cards_after(chat, 2))[-1]
    assert firing.conversation_id == PERSONAL_CONVERSATION
    card = firing.body["attachments"][0]["content"]
    texts = card_texts(card)
    assert texts[0] == "🔥 Grafana firing: MCMS SLA (Lab)"
    assert "**Health latency above 2000 ms**" in texts
    assert any(t.startswith("Since: 2026-11-27 17:10:00 KST") for t in texts)
    assert {a["title"] for a in card["actions"]} == {"Panel", "Dashboard", "Alert rule"}

    status, _ = await post(chat, resolved(), f"bearer {token}")  # the scheme is case-blind
    assert status == 202
    done = (await cards_after(chat, 3))[-1]
    texts = card_texts(done.body["attachments"][0]["content"])
    assert texts[0] == "✅ Grafana resolved: MCMS SLA (Lab)"
    assert any(t.startswith("Resolved: 2026-11-27 17:25:00 KST") for t in texts)


async def test_unknown_or_missing_environment_is_422_and_nothing_is_posted(
    chat: Chat, token: str
) -> None:
    await chat.say("subscribe Lab")
    before = len(chat.connector.calls)
    payload = copy.deepcopy(FIRING)
    second = copy.deepcopy(payload["alerts"][0])
    second["labels"] = {"alertname": "Disk", "environment": "Staging"}
    payload["alerts"].append(second)
    status, body = await post(chat, payload, f"Bearer {token}")
    assert status == 422
    assert "unknown environment 'Staging'" in body["error"]
    assert "nothing was posted" in body["error"] and "InternalProd" in body["error"]
    payload["commonLabels"] = {}
    del payload["alerts"][1]["labels"]["environment"]
    status, body = await post(chat, payload, f"Bearer {token}")
    assert status == 422 and "Disk: no `environment` label" in body["error"]
    assert (await post(chat, {"hello": "world"}, f"Bearer {token}"))[0] == 400
    await asyncio.sleep(0.1)
    assert len(chat.connector.calls) == before


async def test_nobody_subscribed_is_accepted_with_a_note_saying_how(chat: Chat, token: str) -> None:
    status, body = await post(chat, FIRING, f"Bearer {token}")
    assert status == 202 and body["queued"] == []
    assert "`subscribe ENVIRONMENT`" in body["note"] and "Lab" in body["note"]
    assert chat.connector.calls == []


INJECTION = (
    "[Reset your password](https://evil.example/login) **now** <at>Megan</at>\n- www.evil.example"
)


def unescaped(text: str, char: str) -> int:
    """How many `char` in `text` markdown would read as syntax (not after a backslash)."""
    count, backslashes = 0, 0
    for c in text:
        if c == char and backslashes % 2 == 0:
            count += 1
        backslashes = backslashes + 1 if c == "\\" else 0
    return count


async def test_grafana_text_cannot_inject_links_or_formatting_into_the_card(
    chat: Chat, token: str
) -> None:
    await chat.say("subscribe Lab")
    payload = copy.deepcopy(FIRING)
    alert = payload["alerts"][0]
    alert["labels"]["alertname"] = "SLA](https://evil.example)"
    alert["annotations"] = {"summary": INJECTION, "description": INJECTION}
    alert["valueString"] = INJECTION

    status, _ = await post(chat, payload, f"Bearer {token}")

    assert status == 202
    card = (await cards_after(chat, 2))[-1].body["attachments"][0]["content"]
    texts = card_texts(card)
    injected = [t for t in texts if "evil" in t]
    assert len(injected) >= 4  # title, summary, description, values: all shown...
    for text in injected:  # ...and all inert
        inner = text.removeprefix("**").removesuffix("**")
        for char in "[]*_<>":  # a link needs [ ]; the title wraps the name in our own ( )
            assert unescaped(inner, char) == 0, (char, text)
        assert "://" not in inner and "www.evil" not in inner and "\n" not in inner
    # The only links are Grafana's own buttons.
    assert {a["url"] for a in card["actions"]} <= {
        FIRING["alerts"][0]["panelURL"],
        FIRING["alerts"][0]["dashboardURL"],
        FIRING["alerts"][0]["generatorURL"],
    }
