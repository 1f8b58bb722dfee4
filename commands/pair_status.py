"""The `status` section of a blue/green pair: the live slot as its router reports it.

Which slot is live comes from the router's farm, read now, never from the bot's records;
each slot's version from its hosts. The store only adds since when the live slot has been
live (adapters/store/pairs.py). A farm that is not one slot online and the other offline
for good is said in words, with what each oddity means for users.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping

from adapters.errors import RemoteError
from adapters.router.farm import Farm
from commands.bluegreen.lock import FLOW_WORDS, holding_flow
from commands.cards import elements as cards
from commands.config import Environment, Pair
from commands.context import Services
from commands.drift import component_versions, release_versions
from commands.hosts import HOST_READ_TIMEOUT_S, HostLine
from commands.slots import PairView, view_pair
from commands.timefmt import ago, show

HostReads = Mapping[str, Awaitable[list[HostLine]]]


def slot_version(lines: list[HostLine], env: Environment) -> str:
    """The release the slot's hosts run, as their components' paths say."""
    versions = {
        v
        for line in lines
        if line.state is not None
        for v in release_versions(component_versions(line.state, env))
    }
    unreachable = sum(1 for line in lines if line.state is None)
    known = sorted(v for v in versions if v)
    if not known:
        return "unknown" + (" (host unreachable)" if unreachable else "")
    text = " / ".join(known) + (" (hosts differ)" if len(known) > 1 else "")
    return text + (f", {unreachable} host(s) unreachable" if unreachable else "")


async def pair_section(services: Services, name: str, reads: HostReads) -> list[cards.Element]:
    """Title, facts and the farm's table; `reads` are the slots' host reads, shared with
    the environments' sections so no host is read twice."""
    pair = services.config.pairs[name]
    router = pair.router
    heading = cards.title(
        f"Pair {name} — {' ↔ '.join(pair.slots)}"
        + (f" — {pair.description}" if pair.description else "")
    )
    where = f"{router.host.name}, ARR farm {router.farm}, public URL {router.public_url}"
    try:
        farm = await services.routers(router).read_farm(
            timeout_s=min(router.step_timeout_s, HOST_READ_TIMEOUT_S)
        )
    except RemoteError as exc:
        return [
            heading,
            cards.facts(
                [("Live slot", "unknown: the router could not be read"), ("Router", where)]
            ),
            cards.text(f"⚠ {exc}", color="Attention"),
        ]
    view = view_pair(name, pair, farm)
    environments = services.config.environments
    versions = {slot: slot_version(await reads[slot], environments[slot]) for slot in pair.slots}
    facts = [*await _live_facts(services, view, versions), ("Router", where)]
    facts += await _flow_facts(services, name)
    body = [heading, cards.facts(facts)]
    if view.problems:
        lines = "\n".join(f"- {p}" for p in view.problems)
        body.append(
            cards.text(
                f"⚠ The farm is not in a clean blue/green state:\n{lines}", color="Attention"
            )
        )
    body.append(_farm_table(pair, farm, view))
    return body


async def _live_facts(
    services: Services, view: PairView, versions: Mapping[str, str]
) -> list[tuple[str, str]]:
    first, second = (v.slot for v in view.slots)
    if view.live is None:
        online = [v.slot for v in view.slots if v.takes_traffic]
        what = "none: both slots take traffic" if online else "none: no slot takes traffic"
        return [
            ("Live slot", f"{what} (read from the router)"),
            (first, versions[first]),
            (second, versions[second]),
        ]
    standby = view.standby or ""
    tz, now = services.config.tz, services.now()
    record = await services.store.observe_live_slot(view.pair, view.live, now)
    how = (
        "switched by this bot"
        if record.source == "switch"
        else "at the latest: first seen live by this bot, switched outside it"
    )
    return [
        ("Live slot", f"{view.live} — {versions[view.live]} (read from the router)"),
        ("Standby slot", f"{standby} — {versions[standby]}"),
        ("Live since", f"{show(record.since, tz)} ({ago(record.since, now)}; {how})"),
    ]


async def _flow_facts(services: Services, name: str) -> list[tuple[str, str]]:
    """The blue/green flow holding the pair now, and whether Switch back is still offered."""
    held = await holding_flow(services, name)
    if held is not None:
        stage = FLOW_WORDS.get(held.state, held.state)
        return [
            (
                "Blue/green",
                f"{held.id} → {held.version}, at {stage} (requested by "
                f"{cards.plain(held.requester_name, 100)}); the pair is locked until it ends",
            )
        ]
    latest = await services.store.latest_flow(name)
    if latest is not None and latest.state in ("live", "interrupted") and not latest.switchback_by:
        return [
            (
                "Switch back",
                f"`switchback {name}` puts traffic back on {latest.from_slot} ({latest.id}, once)",
            )
        ]
    return []


def _farm_table(pair: Pair, farm: Farm, view: PairView) -> cards.Element:
    slot_of = {a.casefold(): slot for slot in pair.slots for a in pair.servers_of(slot)}
    rows, colors = [], []
    for server in farm.servers:
        slot = slot_of.get(server.address.casefold(), "(no slot)")
        rows.append(
            [
                server.address,
                slot,
                server.mode,
                "enabled" if server.enabled else "disabled",
                server.state,
                str(server.current_requests),
                str(server.total_requests),
                str(server.failed_requests),
            ]
        )
        if server.mode == "online" and slot == view.live and server.healthy:
            colors.append("Good")
        elif server.mode == "offline" and server.durable and slot != view.live:
            colors.append("Default")
        else:
            colors.append("Warning")
    return cards.table(
        ["Server", "Slot", "Mode", "Config", "State", "In flight", "Requests", "Failed"],
        rows,
        colors,
    )
