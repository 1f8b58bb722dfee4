"""Teams activities for tests, built from the recorded Playground payloads in fixtures/teams.

Each factory loads one recorded activity and varies only what a test names (text, user,
tenant, conversation, serviceUrl), so the wire shape stays the one Teams really sends.
Every activity gets a fresh `id`, because the bot uses it as the correlation id.
"""

from __future__ import annotations

import copy
import json
import uuid
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

FIXTURES = Path(__file__).parent / "fixtures" / "teams"

BOT_ID = "00000000-0000-0000-0000-00000000000011"
BOT_NAME = "Test Bot"
TENANT = "00000000-0000-0000-0000-0000000000001"
PERSONAL_CONVERSATION = "720a0715-8607-4f7b-b573-d7d6a36c6018"
CHANNEL_THREAD = "team-id;messageid=1795767373302"
CARD_MESSAGE_ID = "1795767389434"  # the recorded replyToId of the card that was clicked

ConversationType = Literal["personal", "channel"]


@dataclass(frozen=True)
class User:
    name: str
    aad_object_id: str
    id: str = "user-id-0"


ALEX = User("Alex Wilber", "00000000-0000-0000-0000-0000000000020")


@cache
def _recorded(name: str) -> str:
    return (FIXTURES / f"{name}.json").read_text(encoding="utf-8")


def load_fixture(name: str) -> dict[str, Any]:
    """A fresh copy of one recorded activity (file name without .json)."""
    activity: dict[str, Any] = json.loads(_recorded(name))
    return activity


def _personalize(
    activity: dict[str, Any],
    *,
    user: User,
    tenant: str,
    service_url: str | None,
    conversation_id: str | None,
) -> dict[str, Any]:
    activity["id"] = str(uuid.uuid4())
    activity["from"] = {"id": user.id, "name": user.name, "aadObjectId": user.aad_object_id}
    activity["conversation"]["tenantId"] = tenant
    activity.setdefault("channelData", {})["tenant"] = {"id": tenant}
    if service_url is not None:
        activity["serviceUrl"] = service_url
    if conversation_id is not None:
        activity["conversation"]["id"] = conversation_id
    return activity


def make_message(
    text: str,
    *,
    user: User = ALEX,
    tenant: str = TENANT,
    conversation_type: ConversationType = "personal",
    mention: bool | None = None,
    service_url: str | None = None,
    conversation_id: str | None = None,
) -> dict[str, Any]:
    """A message as Teams sends it; `mention` defaults to True in channels, False in personal."""
    if conversation_type == "channel":
        activity = load_fixture("channel-message-mention-status")
    else:
        activity = load_fixture("personal-message-rollback")
    if mention is None:
        mention = conversation_type == "channel"
    entities = [e for e in activity.get("entities", []) if e.get("type") != "mention"]
    if mention:
        tag = f"<at>{BOT_NAME}</at>"
        text = f"{tag} {text}"
        entities.insert(
            0, {"type": "mention", "mentioned": {"id": BOT_ID, "name": BOT_NAME}, "text": tag}
        )
    activity["text"] = text
    activity["entities"] = entities
    return _personalize(
        activity,
        user=user,
        tenant=tenant,
        service_url=service_url,
        conversation_id=conversation_id,
    )


def make_invoke(
    verb: str,
    data: dict[str, Any],
    *,
    reply_to_id: str = CARD_MESSAGE_ID,
    action_type: str = "Action.Execute",
    trigger: str | None = None,
    user: User = ALEX,
    tenant: str = TENANT,
    service_url: str | None = None,
    conversation_id: str | None = None,
) -> dict[str, Any]:
    """The `adaptiveCard/action` invoke of a click on a card posted as `reply_to_id`."""
    activity = load_fixture("personal-invoke-adaptiveCard-action")
    activity["replyToId"] = reply_to_id
    action = activity["value"]["action"]
    action.update(type=action_type, verb=verb, data=copy.deepcopy(data))
    if trigger is not None:
        activity["value"]["trigger"] = trigger
    return _personalize(
        activity,
        user=user,
        tenant=tenant,
        service_url=service_url,
        conversation_id=conversation_id,
    )


def make_submit(
    verb: str,
    data: dict[str, Any],
    *,
    reply_to_id: str = CARD_MESSAGE_ID,
    user: User = ALEX,
    tenant: str = TENANT,
    service_url: str | None = None,
) -> dict[str, Any]:
    """An Action.Submit fallback click: a message with `value` (verb + data) and no text."""
    activity = load_fixture("personal-message-rollback")
    del activity["text"]
    activity["replyToId"] = reply_to_id
    activity["value"] = {"verb": verb, **copy.deepcopy(data)}
    return _personalize(
        activity, user=user, tenant=tenant, service_url=service_url, conversation_id=None
    )


def make_installation_update(
    *,
    conversation_type: ConversationType = "personal",
    action: str = "add",
    tenant: str = TENANT,
    service_url: str | None = None,
) -> dict[str, Any]:
    """The installationUpdate Teams sends when the app is added to a chat or a team."""
    activity = load_fixture(f"{conversation_type}-installationUpdate")
    if conversation_type == "personal":
        # The Playground recorded its "personal" install in the team's channel; a real
        # personal install happens in the 1:1 chat, so borrow that conversation.
        activity["conversation"] = load_fixture("personal-message-rollback")["conversation"]
        activity["channelData"] = {"tenant": {"id": tenant}}
    activity["action"] = action
    return _personalize(
        activity, user=ALEX, tenant=tenant, service_url=service_url, conversation_id=None
    )


def make_conversation_update(
    *, tenant: str = TENANT, service_url: str | None = None
) -> dict[str, Any]:
    """The conversationUpdate (bot added to a team) that accompanies an installation."""
    activity = load_fixture("channel-conversationUpdate")
    return _personalize(
        activity, user=ALEX, tenant=tenant, service_url=service_url, conversation_id=None
    )
