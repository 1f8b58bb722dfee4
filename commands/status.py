"""`status [ENVIRONMENT]` — per environment: every component's state and release on every
host, drift in words, last smoke, the run in progress and whether the watcher is paused,
whether each host's package share holds the rollback and deploy candidates (share_status.py);
and per blue/green pair of those environments: the live slot as its router reports it.

Hosts and routers are read concurrently, one WinRM round trip each, every host once; an
unreachable host or router is a line in the card saying so, never a failed command.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from commands.cards import elements as cards
from commands.cards.approval import frozen_words
from commands.config import VERSION_PATTERN
from commands.context import Services
from commands.drift import ComponentVersion, component_versions, drift_words
from commands.hosts import HostLine, read_hosts
from commands.pair_status import pair_section
from commands.registry import Command, CommandCall
from commands.restore import is_up
from commands.share_status import share_fact
from commands.timefmt import ago, show
from commands.types import Reply


def version_from_path(physical_path: str | None) -> str | None:
    """`D:\\MCMS\\releases\\1.4.2` → `1.4.2`; anything else → None."""
    if not physical_path:
        return None
    last = physical_path.rstrip("\\/").replace("/", "\\").rsplit("\\", 1)[-1]
    return last if VERSION_PATTERN.fullmatch(last) else None


def watch_paused(run_id: str) -> str:
    """The words the alert card and `status` use while a run holds the environment."""
    return f"watch paused: run {run_id} in progress"


def _rows(
    line: HostLine, versions: list[ComponentVersion], pools: dict[str, str]
) -> tuple[list[list[str]], list[str | None]]:
    if line.state is None:
        # The host's (or the network's) own words: escaped, so they cannot become a link.
        return [[line.host, "unreachable", "", cards.plain(line.error or "", 300)]], ["Attention"]
    rows: list[list[str]] = []
    colors: list[str | None] = []
    for v in versions:
        state = v.state
        if v.kind == "site":
            found = line.state.pool(pools.get(v.name, ""))
            pool_state = found.state if found is not None else "Missing"
            state = f"{v.state}, pool {pool_state}"
            healthy = is_up(v.state) and is_up(pool_state)
        else:
            healthy = is_up(v.state)
        rows.append(
            [line.host, f"{v.kind} {v.name}", cards.plain(state, 200), cards.plain(v.label, 200)]
        )
        colors.append("Good" if healthy else "Warning")
    return rows, colors


async def _environment_section(
    services: Services, name: str, read: Awaitable[list[HostLine]]
) -> list[cards.Element]:
    env = services.config.environments[name]
    tz, now = services.config.tz, services.now()
    share = asyncio.ensure_future(share_fact(services, name, env))
    lines = await read
    per_host = {
        line.host: component_versions(line.state, env) for line in lines if line.state is not None
    }
    everything = [v for versions in per_host.values() for v in versions]
    drift = drift_words(everything)
    deployment = await services.store.current_deployment(name)
    if deployment is not None:
        stable = ", stable" if deployment.stable else ""
        version = f"{deployment.version} (deployment history{stable})"
    else:
        seen = sorted({v.version for v in everything if v.version and v.managed})
        version = (
            f"{', '.join(seen)} (from the hosts)"
            if seen
            else "unknown (no deployment history, no component in a release folder)"
        )
    smoke = await services.store.last_smoke(name)
    smoke_text = (
        f"{'PASS' if smoke.passed else 'FAIL'} at {show(smoke.at, tz)} ({ago(smoke.at, now)})"
        if smoke
        else "never run — try `smoke " + name + "`"
    )
    lock = await services.store.lock_holder(name)
    running = lock is not None and lock.holder_run_id is not None
    run_text = (
        f"run {lock.holder_run_id} by {lock.holder_name} since {show(lock.since, tz)}"
        if lock and lock.holder_run_id and lock.since
        else "none"
    )
    if not env.watch.enabled:
        watch_text = "off (watch.enabled = false)"
    elif running and lock is not None and lock.holder_run_id:
        watch_text = watch_paused(lock.holder_run_id)
    else:
        watch_text = f"every {env.watch.interval_s:g} s"
    freeze = await services.store.freeze_of(name)
    pools = {s.name: s.app_pool for s in env.components.sites}
    rows: list[list[str]] = []
    colors: list[str | None] = []
    for line in lines:
        more_rows, more_colors = _rows(line, per_host.get(line.host, []), pools)
        rows += more_rows
        colors += more_colors
    facts = [
        ("Current version", version),
        ("Drift", drift or "none: every component on every host runs the same release"),
        ("Last smoke", smoke_text),
        ("Run in progress", run_text),
        ("Watch", watch_text),
        (
            "Freeze",
            f"🧊 {frozen_words(freeze, tz)} — `unlock {name}` lifts it"
            if freeze
            else "none (`lock " + name + " REASON` freezes it)",
        ),
    ]
    share_text, share_ok = await share
    facts.append(("Package share", cards.plain(share_text, 1000)))
    body: list[cards.Element] = [
        cards.title(f"{name}" + (f" — {env.description}" if env.description else "")),
        cards.facts(facts),
    ]
    if freeze:
        body.append(
            cards.text(
                f"**🧊 {name} is {frozen_words(freeze, tz)}**: no rollback or deploy until "
                "an approver unlocks it (break glass excepted).",
                color="Attention",
            )
        )
    if not share_ok:
        body.append(cards.text(f"**Package {cards.plain(share_text, 1000)}**", color="Warning"))
    if drift:
        body.append(cards.text(f"**Drift:** {cards.plain(drift, 1000)}", color="Warning"))
    body.append(
        cards.table(["Host", "Component", "State", "Release"], rows, colors, widths=[3, 4, 4, 3])
    )
    return body


async def run(call: CommandCall) -> Reply:
    services = call.services
    config, actor = services.config, call.invocation.actor
    names = (
        [call.environment]
        if call.environment
        else [n for n in config.environments if config.has_role(actor.aad_object_id, "operator", n)]
    )
    pairs = [p for p, pair in config.pairs.items() if set(pair.slots) & set(names)]
    needed = dict.fromkeys([*names, *(s for p in pairs for s in config.pairs[p].slots)])
    # One read per environment, awaited by its own section and by its pair's.
    reads = {
        env: asyncio.ensure_future(read_hosts(services, config.environments[env])) for env in needed
    }
    sections = await asyncio.gather(
        *(pair_section(services, p, reads) for p in pairs),
        *(_environment_section(services, n, reads[n]) for n in names),
    )
    body = [element for section in sections for element in section]
    body.append(cards.text(f"Read {show(services.now(), services.config.tz)}", subtle=True))
    scope = ", ".join([*names, *(f"pair {p}" for p in pairs)])
    return Reply(f"Status of {scope}", card=cards.card(body))


COMMAND = Command(
    name="status",
    usage="[ENVIRONMENT]",
    summary="Each component's release and state per host, drift, last smoke, run in progress; "
    "a pair's live slot.",
    role="operator",
    env_arg="optional",
    max_extra_args=0,
    run=run,
)
