"""Hypothesis strategies for what a network can throw at POST /api/messages.

Activities start from the recorded Teams payloads and are then bent: random types and
names, fields missing or replaced by any JSON (wrong types, unicode, oversized strings,
huge arrays, deep nesting), forged card verbs and request ids, foreign or mismatched
tenants, other channels. Sent with the fake connector as serviceUrl (or a forbidden one),
so whatever the bot answers lands on loopback.

Message texts never name a configured environment, and a command word never stands alone:
a command that reaches a host or changes state on purpose (`status Lab`, a bare `status`,
`subscribe Lab`) is not an attack, and the
campaign asserts that nothing reaches a host and nothing changes.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

from hypothesis import strategies as st

from tests.teams_factory import ALEX, TENANT, load_fixture

ENVIRONMENT_NAMES = ("lab", "internalprod", "internalstage")
FIXTURES = (
    "personal-message-rollback",
    "channel-message-mention-status",
    "personal-invoke-adaptiveCard-action",
    "personal-conversationUpdate",
    "channel-conversationUpdate",
    "personal-installationUpdate",
    "channel-installationUpdate",
)
VERBS = ("approve", "reject", "break_glass", "start_rollback", "silence", "Action.Submit")
TYPES = ("message", "invoke", "conversationUpdate", "installationUpdate", "event", "typing")


def _safe(text: str) -> bool:
    lowered = text.lower()
    return not any(name in lowered for name in ENVIRONMENT_NAMES)


safe_text = st.text(max_size=80).filter(_safe)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | safe_text
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=25,
)
oversized = st.integers(min_value=10_000, max_value=200_000).map(lambda n: "Ω" * n)
huge_array = st.integers(min_value=1_000, max_value=20_000).map(lambda n: [{"a": 1}] * n)
# Past the endpoint's 32-level limit, but shallow enough that the test's own json.dumps never
# nears Python's recursion limit (that would depend on the stack, and flake): a body nested
# thousands deep is tests/teams/test_endpoint.py's job.
deep = st.integers(min_value=10, max_value=60).map(lambda n: _nest(n))
weird = json_values | oversized | huge_array | deep | st.sampled_from(["", " ", "\x00", "🔥" * 50])


def _nest(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"x": [value]}
    return value


request_ids = st.one_of(
    st.text(alphabet="0123456789abcdef", min_size=8, max_size=8).map(lambda h: f"R-{h}"),
    st.just("SEEDED"),  # replaced by the pending request's real id
    safe_text,
    json_values,
)
card_data = st.fixed_dictionaries(
    {},
    optional={
        "verb": st.sampled_from(VERBS) | safe_text,
        "request_id": request_ids,
        "alert_id": st.text(max_size=12).map(lambda h: f"A-{h}") | json_values,
        "environment": st.sampled_from(["Lab", "InternalProd", "Nowhere"]) | json_values,
        "version": st.sampled_from(["1.4.1", "9.9.9", "../../x"]) | json_values,
        "plan_hash": st.text(alphabet="0123456789abcdef", min_size=64, max_size=64) | json_values,
        "reason": safe_text | oversized,
        "silence_reason": safe_text,
    },
).flatmap(
    lambda d: st.dictionaries(st.text(max_size=10), json_values, max_size=3).map(
        lambda extra: {**extra, **d}
    )
)
users = st.one_of(
    # A fresh dict each time: edits below change what they are given, and a shared one would
    # make later examples depend on earlier ones.
    st.builds(lambda: {"id": "user-id-0", "name": ALEX.name, "aadObjectId": ALEX.aad_object_id}),
    st.fixed_dictionaries(
        {"id": safe_text, "name": safe_text, "aadObjectId": st.uuids().map(str) | json_values}
    ),
    json_values,
)
message_texts = st.one_of(
    safe_text,
    st.tuples(
        st.sampled_from(
            [
                "help",
                "status",
                "smoke",
                "rollback",
                "deploy",
                "cancel",
                "subscribe",
                "unsubscribe",
                "/rollback",
                "<at>Test Bot</at> rollback",
                "approve",
            ]
        ),
        # Never nothing after the word: a bare `status` reads every host on purpose (a
        # legitimate read, not an attack), and the campaign counts every WinRM request.
        safe_text.filter(lambda t: t.strip() != ""),
    ).map(" ".join),
    oversized,
)

# (dotted path, value) edits applied to the recorded activity; None deletes the key.
PATHS = (
    "type", "name", "text", "id", "channelId", "serviceUrl", "from", "recipient",
    "conversation", "conversation.id", "conversation.tenantId", "conversation.conversationType",
    "channelData", "channelData.tenant", "channelData.tenant.id", "value", "value.action",
    "value.action.type", "value.action.verb", "value.action.data", "value.trigger", "entities",
    "attachments", "replyToId", "membersAdded", "action", "locale", "timestamp",
)  # fmt: skip
edits = st.lists(
    st.tuples(st.sampled_from(PATHS) | st.text(max_size=15), st.none() | weird),
    max_size=4,
)


def _set(activity: dict[str, Any], path: str, value: Any) -> None:
    keys = path.split(".")
    node: Any = activity
    for key in keys[:-1]:
        if not isinstance(node, dict):
            return
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    if not isinstance(node, dict):
        return
    if value is None:
        node.pop(keys[-1], None)
    else:
        node[keys[-1]] = value


@st.composite
def activities(draw: st.DrawFn, service_url: str, seeded_request: str) -> Any:
    """One body for POST /api/messages (usually an activity, sometimes not even that)."""
    if draw(st.integers(0, 40)) == 0:
        return draw(json_values)  # not an activity at all
    activity = copy.deepcopy(load_fixture(draw(st.sampled_from(FIXTURES))))
    activity["id"] = str(uuid.uuid4())
    activity["serviceUrl"] = draw(
        st.sampled_from([service_url] * 8 + ["https://attacker.example/", "http://10.0.0.1/"])
    )
    activity["from"] = draw(users)
    tenant = draw(st.sampled_from([TENANT] * 6 + ["99999999-0000-0000-0000-000000000009"]))
    activity["conversation"]["tenantId"] = tenant
    activity.setdefault("channelData", {})["tenant"] = {
        "id": draw(st.sampled_from([tenant] * 6 + ["99999999-0000-0000-0000-000000000009"]))
    }
    if draw(st.integers(0, 10)) == 0:
        activity["channelId"] = draw(st.sampled_from(["webchat", "directline", "emulator"]))
    if draw(st.integers(0, 6)) == 0:
        activity["type"] = draw(st.sampled_from(TYPES) | safe_text)
    if activity["type"] == "invoke":
        activity["name"] = draw(st.sampled_from(["adaptiveCard/action"] * 6 + [
            "task/fetch", "composeExtension/query", "signin/verifyState", "fileConsent/invoke",
            "actionableMessage/executeAction", "",
        ]) | safe_text)  # fmt: skip
        data = draw(card_data)
        if data.get("request_id") == "SEEDED":
            data["request_id"] = seeded_request
        activity["value"] = {
            "action": {
                "type": draw(st.sampled_from(["Action.Execute"] * 5 + ["Action.Submit", "x"])),
                "verb": draw(st.sampled_from(VERBS) | safe_text | json_values),
                "data": data,
            },
            "trigger": draw(st.sampled_from(["manual", "automatic"]) | json_values),
        }
    elif activity["type"] == "message":
        if draw(st.integers(0, 5)) == 0:  # an Action.Submit fallback: value, no text
            activity.pop("text", None)
            data = draw(card_data)
            if data.get("request_id") == "SEEDED":
                data["request_id"] = seeded_request
            activity["value"] = data
        else:
            activity["text"] = draw(message_texts)
    for path, value in draw(edits):
        _set(activity, path, value)
    return activity
