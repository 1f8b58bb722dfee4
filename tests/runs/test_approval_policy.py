"""The approval policy means what it says: break glass is a role, N approvers are N people,
`required = false` runs without a card, and approvers can be named by Entra group.

Every test goes through the real endpoint, the store and the lab; "nothing ran" is read from
the store's runs and the lab's mutating WinRM calls, not from the bot's words.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from adapters.entra import GraphGroups
from tests.conftest import ADELE, ALEX, MEGAN, ChatSetup, card_texts, shown
from tests.runs.test_rollback_bad_paths import mutations, runs_of
from tests.runs.test_rollback_flow import audit_events, run_events
from tests.teams_factory import User, make_invoke

if TYPE_CHECKING:
    from tests.conftest import Chat
    from tests.fake_graph import FakeGraph

pytest_plugins = ["tests.fake_graph"]

PATTI = User("Patti Fernandez", "00000000-0000-0000-0000-0000000000023", id="user-id-3")
NESTOR = User("Nestor Wilke", "00000000-0000-0000-0000-000000000024", id="user-id-4")
PROD_APPROVERS = "aaaaaaaa-0000-0000-0000-00000000000a"
REASON = "P1 outage at 03:10, second approver unreachable"


def prod_policy(**approval: Any) -> ChatSetup:
    """InternalProd with this approval policy; Alex may break glass; Patti approves Prod."""

    def tweak(raw: dict[str, Any]) -> None:
        raw["environments"]["InternalProd"]["approval"].update(approval)
        alex = next(p for p in raw["people"] if p["name"] == ALEX.name)
        alex["roles"] = ["operator", "approver", "break_glass"]
        raw["people"].append(
            {
                "name": PATTI.name,
                "aad_object_id": PATTI.aad_object_id,
                "roles": ["approver"],
                "environments": ["InternalProd"],
            }
        )

    return ChatSetup(tweak=tweak)


async def request_prod(chat: Chat, user: User = ALEX) -> tuple[dict[str, Any], str]:
    reply = await chat.say("rollback InternalProd", user=user)
    request_id = reply.text.split("(")[-1].rstrip(").")
    return chat.cards[-1], request_id


def texts(chat: Chat) -> list[str]:
    return [c.text for c in chat.replies]


def timeline(chat: Chat) -> str:
    return "".join(p.read_text() for p in Path(chat.config.paths.timeline_dir).glob("*.md"))


# -- break glass ---------------------------------------------------------------------------


@pytest.mark.parametrize("chat", [prod_policy(break_glass=True)], indirect=True)
async def test_break_glass_approves_alone_and_is_marked_and_announced(chat: Chat) -> None:
    await chat.say("subscribe InternalProd")
    card, request_id = await request_prod(chat)
    assert [a["title"] for a in card["actions"]] == ["Approve", "Reject", "Break glass"]

    no_reason = await chat.click("break_glass", card)
    assert no_reason["value"]["code"] == "ReasonRequired"
    assert await runs_of(chat, request_id) == 0

    data = {**card["actions"][2]["data"], "reason": REASON}
    answer = await chat.click("break_glass", card, data=data)

    assert answer["statusCode"] == 200
    assert any("BREAK-GLASS" in t for t in card_texts(answer["value"]))
    request = await chat.wait_request(request_id, "succeeded", "failed")
    assert request.state == "succeeded" and request.break_glass and request.reason == REASON
    [approved] = [e for e in audit_events(chat) if e["event"] == "Approved"]
    assert approved["detail"]["break_glass"] is True
    assert approved["detail"]["break_glass_reason"] == REASON
    assert "approved by BREAK GLASS by Alex Wilber" in timeline(chat)
    await chat.eventually(
        lambda: any("BREAK-GLASS approval in InternalProd" in t for t in texts(chat))
    )


@pytest.mark.parametrize("chat", [prod_policy(break_glass=True)], indirect=True)
async def test_break_glass_needs_the_role(chat: Chat) -> None:
    card, request_id = await request_prod(chat, user=MEGAN)
    data = {**card["actions"][2]["data"], "reason": REASON}

    answer = await chat.click("break_glass", card, user=ADELE, data=data)

    assert answer["value"]["code"] == "Forbidden" and "break_glass" in answer["value"]["message"]
    assert (await chat.store.get_request(request_id)).state == "pending"  # type: ignore[union-attr]
    assert await runs_of(chat, request_id) == 0 and mutations(chat) == []


async def test_break_glass_is_refused_where_the_environment_does_not_allow_it(chat: Chat) -> None:
    reply = await chat.say("rollback InternalProd")
    card = chat.cards[-1]
    request_id = reply.text.split("(")[-1].rstrip(").")
    assert [a["title"] for a in card["actions"]] == ["Approve", "Reject"]
    forged = {**card["actions"][0]["data"], "verb": "break_glass", "reason": REASON}
    invoke = make_invoke(
        "break_glass",
        forged,
        reply_to_id=chat.card_message_id(card),
        service_url=chat.connector.url,
    )

    response = await chat.client.post("/api/messages", json=invoke)
    answer = await response.json()

    assert answer["value"]["code"] == "BreakGlassOff"
    assert await runs_of(chat, request_id) == 0


# -- N distinct approvers ------------------------------------------------------------------


@pytest.mark.parametrize("chat", [prod_policy(required_count=2)], indirect=True)
async def test_two_person_rule_needs_two_approvers_neither_the_requester(chat: Chat) -> None:
    card, request_id = await request_prod(chat)
    own = await chat.click("approve", card)
    assert own["value"]["code"] == "SelfApproval"

    first = await chat.click("approve", card, user=ADELE)
    assert first["statusCode"] == 200
    assert any("1 of 2 approvals (Adele Vance)" in t for t in card_texts(first["value"]))
    again = await chat.click("approve", card, user=ADELE)
    assert any("1 of 2 approvals" in t for t in card_texts(again["value"]))
    await chat.settle()
    request = await chat.store.get_request(request_id)
    assert request is not None and request.state == "pending"
    assert await runs_of(chat, request_id) == 0 and mutations(chat) == []
    # Everyone's copy shows the tally, not only the clicker's.
    edited = chat.puts(chat.card_message_id(card))
    assert any(
        "1 of 2 approvals" in t for t in card_texts(edited[-1].body["attachments"][0]["content"])
    )

    second = await chat.click("approve", card, user=PATTI)

    assert second["statusCode"] == 200
    done = await chat.wait_request(request_id, "succeeded", "failed")
    assert done.state == "succeeded" and done.approvers == "Adele Vance, Patti Fernandez"
    events = [e for e, _ in run_events(chat, request_id)]
    assert events.count("ApprovalRecorded") == 1 and events.count("Approved") == 1
    [approved] = [e for e in audit_events(chat) if e["event"] == "Approved"]
    assert approved["detail"]["approvers"] == ["Adele Vance", "Patti Fernandez"]


@pytest.mark.parametrize("chat", [prod_policy(required_count=2)], indirect=True)
async def test_concurrent_clicks_of_two_approvers_approve_once_and_run_once(chat: Chat) -> None:
    card, request_id = await request_prod(chat, user=MEGAN)
    clicks = [chat.click("approve", card, user=u) for _ in range(20) for u in (ADELE, PATTI)]

    answers = await asyncio.gather(*clicks)

    assert all(a["statusCode"] == 200 for a in answers)
    await chat.wait_request(request_id, "succeeded", "failed")
    events = [e for e, _ in run_events(chat, request_id)]
    assert events.count("Approved") == 1 and events.count("Started") == 1
    assert events.count("ApprovalRecorded") == 1
    assert len(await chat.store.approvals_of(request_id)) == 2
    assert await runs_of(chat, request_id) == 1
    assert mutations(chat).count("switch-release") == 0  # InternalProd's host, not Lab's...
    prod = chat.lab.host_for("InternalProd")
    assert [c.op for c in chat.lab.calls(prod)].count("switch-release") == 1


def test_a_two_person_rule_that_lets_the_requester_count_is_not_a_valid_config() -> None:
    from commands.config import Approval

    with pytest.raises(ValueError, match="self_approval = false"):
        Approval(required_count=2, self_approval=True)
    with pytest.raises(ValueError, match="required = false"):
        Approval(required=False, required_count=2)


# -- no approval required ------------------------------------------------------------------


def lab_without_approval(raw: dict[str, Any]) -> None:
    raw["environments"]["Lab"]["approval"] = {"required": False}


@pytest.mark.parametrize("chat", [ChatSetup(tweak=lab_without_approval)], indirect=True)
async def test_required_false_runs_at_once_audited_as_approved_by_policy(chat: Chat) -> None:
    reply = await chat.say("rollback Lab")
    request_id = reply.text.split("(")[-1].rstrip(").")
    card = chat.cards[-1]

    assert "actions" not in card  # nothing to click
    assert any("Approved by policy" in t for t in card_texts(card))
    request = await chat.wait_request(request_id, "succeeded", "failed")
    assert request.state == "succeeded" and request.decided_by_name == "policy"
    [approved] = [e for e in audit_events(chat) if e["event"] == "Approved"]
    assert approved["detail"]["by_policy"] is True
    assert approved["actor"]["name"] == ALEX.name  # who asked is on record
    assert mutations(chat).count("switch-release") == 1


@pytest.mark.parametrize("chat", [ChatSetup(tweak=lab_without_approval)], indirect=True)
async def test_required_false_still_needs_the_operator_role(chat: Chat) -> None:
    from tests.conftest import STRANGER

    reply = await chat.say("rollback Lab", user=STRANGER)

    assert "people list" in reply.text
    assert mutations(chat) == [] and chat.cards == []


# -- approvers by Entra group (local mode: groups from the config) -------------------------


def prod_group(raw: dict[str, Any]) -> None:
    raw["environments"]["InternalProd"]["approval"]["approver_groups"] = [PROD_APPROVERS]
    raw["groups"] = [
        {"id": PROD_APPROVERS, "name": "Prod approvers", "members": [NESTOR.aad_object_id]}
    ]


@pytest.mark.parametrize("chat", [ChatSetup(tweak=prod_group)], indirect=True)
async def test_a_member_of_an_approver_group_may_approve(chat: Chat) -> None:
    card, request_id = await request_prod(chat, user=MEGAN)
    outsider = await chat.click("approve", card, user=PATTI)  # in no group, no role here
    assert outsider["value"]["code"] == "Forbidden"

    answer = await chat.click("approve", card, user=NESTOR)

    assert answer["statusCode"] == 200
    request = await chat.wait_request(request_id, "succeeded", "failed")
    assert request.decided_by_name == NESTOR.name


# Microsoft Graph on loopback stands in for Entra; its URLs are set once the fake is up.
GRAPH = GraphGroups(
    client_id="11111111-2222-3333-4444-555555555555",
    client_secret="graph-test-secret",
    default_tenant="00000000-0000-0000-0000-000000000001",
    login_url="http://127.0.0.1:9",
    graph_url="http://127.0.0.1:9",
)


def prod_group_in_entra(raw: dict[str, Any]) -> None:
    raw["environments"]["InternalProd"]["approval"]["approver_groups"] = [PROD_APPROVERS]


@pytest.mark.parametrize(
    "chat", [ChatSetup(tweak=prod_group_in_entra, groups=GRAPH)], indirect=True
)
async def test_group_membership_is_asked_of_graph_and_fails_closed(
    chat: Chat, fake_graph: FakeGraph
) -> None:
    GRAPH.login_url = GRAPH.graph_url = fake_graph.url
    fake_graph.members = {PROD_APPROVERS: {NESTOR.aad_object_id}}
    card, request_id = await request_prod(chat, user=MEGAN)
    fake_graph.fail_next(503)

    down = await chat.click("approve", card, user=NESTOR)

    assert down["value"]["code"] == "GroupLookupFailed"
    assert (await chat.store.get_request(request_id)).state == "pending"  # type: ignore[union-attr]

    answer = await chat.click("approve", card, user=NESTOR)

    assert answer["statusCode"] == 200
    request = await chat.wait_request(request_id, "succeeded", "failed")
    assert request.decided_by_name == NESTOR.name
    assert fake_graph.token_requests == 1
    refused = [e for e in audit_events(chat) if e["event"] == "DecisionRefused"]
    assert [e["status"] for e in refused] == ["GroupLookupFailed"]


async def test_a_display_name_cannot_put_a_link_into_the_approval_card(chat: Chat) -> None:
    evil = User("[Approve here](https://evil.example)", ALEX.aad_object_id, id=ALEX.id)

    await chat.say("rollback Lab", user=evil)

    fact = next(t for t in card_texts(chat.cards[-1]) if t.startswith("Requested by"))
    name = fact.removeprefix("Requested by: ").rsplit(" at ", 1)[0]
    assert shown(name) == evil.name  # shown as typed...
    # ...but inert: no unescaped bracket (a link needs them), no scheme an autolinker takes.
    assert not re.search(r"(?<!\\)[\[\]]", name) and "://" not in name
