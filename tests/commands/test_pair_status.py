"""`status` and a blue/green pair: the live slot comes from the router, read over WinRM."""

from __future__ import annotations

from typing import Any

from tests.conftest import Chat, card_texts, table_rows

PROD, STAGE, ROUTER = "prod-web01", "stage-web01", "arr-front01"


def pair_facts(card: dict[str, Any]) -> dict[str, str]:
    """The facts of the pair's section (the first FactSet of the card)."""
    facts = next(e for e in card["body"] if e["type"] == "FactSet")
    return {f["title"]: f["value"] for f in facts["facts"]}


def farm_rows(card: dict[str, Any]) -> list[list[str]]:
    return [r for r in table_rows(card) if r[0] in (PROD, STAGE) and len(r) == 8]


async def test_status_shows_the_live_slot_read_from_the_router(chat: Chat) -> None:
    await chat.say("status")
    card = chat.cards[-1]
    assert card["body"][0]["text"].startswith("Pair prod — InternalProd ↔ InternalStage")
    facts = pair_facts(card)
    assert facts["Live slot"] == "InternalProd — 1.4.0 (read from the router)"
    assert facts["Standby slot"] == "InternalStage — 1.4.1"
    assert "first seen live by this bot" in facts["Live since"]
    assert facts["Router"].startswith("arr-front01, ARR farm MCMS, public URL http://127.0.0.1:")
    assert farm_rows(card) == [
        [PROD, "InternalProd", "online", "enabled", "Available", "0", "0", "0"],
        [STAGE, "InternalStage", "offline", "disabled", "Unavailable", "0", "0", "0"],
    ]
    assert not any("clean blue/green" in t for t in card_texts(card))
    assert [c.op for c in chat.lab.calls(ROUTER)] == ["arr-read-farm"]


async def test_status_follows_a_switch_made_outside_the_bot(chat: Chat) -> None:
    await chat.say("status InternalProd")
    first_since = pair_facts(chat.cards[-1])["Live since"]
    chat.clock.advance(minutes=10)
    chat.lab.set_farm_server(ROUTER, STAGE, enabled=True, state="Available")
    chat.lab.set_farm_server(ROUTER, PROD, enabled=False, state="Unavailable")

    await chat.say("status InternalProd")

    facts = pair_facts(chat.cards[-1])
    assert facts["Live slot"] == "InternalStage — 1.4.1 (read from the router)"
    assert facts["Standby slot"] == "InternalProd — 1.4.0"
    assert facts["Live since"] != first_since and "switched outside it" in facts["Live since"]


async def test_status_says_when_the_farm_was_changed_behind_the_bots_back(chat: Chat) -> None:
    chat.lab.set_farm_server(ROUTER, STAGE, enabled=True, state="Available")

    await chat.say("status")

    card = chat.cards[-1]
    facts = pair_facts(card)
    assert facts["Live slot"] == "none: both slots take traffic (read from the router)"
    assert (facts["InternalProd"], facts["InternalStage"]) == ("1.4.0", "1.4.1")
    warning = next(t for t in card_texts(card) if "clean blue/green" in t)
    assert "both InternalProd and InternalStage are online" in warning


async def test_status_after_an_interrupted_drain_names_the_live_slot_and_the_drain(
    chat: Chat,
) -> None:
    """What a bot killed during the drain leaves behind: the new slot online, the old one
    draining. status must say which slot users reach, per the router."""
    chat.lab.set_farm_server(ROUTER, STAGE, enabled=True, state="Available")
    chat.lab.set_farm_server(ROUTER, PROD, state="Drain")

    await chat.say("status")

    card = chat.cards[-1]
    assert pair_facts(card)["Live slot"] == "InternalStage — 1.4.1 (read from the router)"
    warning = next(t for t in card_texts(card) if "clean blue/green" in t)
    assert "prod-web01 is draining (0 request(s) in flight)" in warning
    assert farm_rows(card)[0][:5] == [PROD, "InternalProd", "drain", "enabled", "Drain"]


async def test_status_with_the_router_down_says_so_and_still_shows_the_environments(
    chat: Chat,
) -> None:
    chat.lab.set_fault(ROUTER, "winrm", "down")

    await chat.say("status")

    card = chat.cards[-1]
    assert pair_facts(card)["Live slot"] == "unknown: the router could not be read"
    assert any("arr-front01" in t and t.startswith("⚠") for t in card_texts(card))
    titles = [e["text"].split(" ")[0] for e in card["body"] if e.get("size") == "Medium"]
    assert titles == ["Pair", "Lab", "InternalStage", "InternalProd"]


async def test_a_switch_recorded_by_the_bot_is_shown_as_such(chat: Chat) -> None:
    await chat.store.record_switch("prod", "InternalProd", chat.runtime.services.now())
    await chat.say("status")
    assert "switched by this bot" in pair_facts(chat.cards[-1])["Live since"]


async def test_status_of_an_environment_outside_any_pair_leaves_the_router_alone(
    chat: Chat,
) -> None:
    await chat.say("status Lab")
    assert not any(t.startswith("Pair ") for t in card_texts(chat.cards[-1]))
    assert chat.lab.winrm_requests(ROUTER) == 0


async def test_status_reads_each_slot_host_once_for_its_section_and_its_pair(chat: Chat) -> None:
    await chat.say("status InternalStage")
    texts = card_texts(chat.cards[-1])
    assert texts[0].startswith("Pair prod") and any(t.startswith("InternalStage") for t in texts)
    for host in (PROD, STAGE):
        assert [c.op for c in chat.lab.calls(host) if c.op == "read-state"] == ["read-state"]
    # The package share line hashes packages: only for the environments shown, once each.
    assert [c.op for c in chat.lab.calls(STAGE) if c.op == "read-share"] == ["read-share"]
    assert [c.op for c in chat.lab.calls(PROD) if c.op == "read-share"] == []
