"""`status [ENVIRONMENT]` — per environment: version, IIS/Worker state per host, last smoke, lock;
and per blue/green pair of those environments: the live slot as its router reports it.

Hosts and routers are read concurrently, one WinRM round trip each, every host once; an
unreachable host or router is a line in the card saying so, never a failed command.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from commands.cards import elements as cards
from commands.config import VERSION_PATTERN
from commands.context import Services
from commands.hosts import HostLine, read_hosts
from commands.pair_status import pair_section
from commands.registry import Command, CommandCall
from commands.timefmt import ago, show
from commands.types import Reply


def version_from_path(physical_path: str | None) -> str | None:
    """`D:\\MCMS\\releases\\1.4.2` → `1.4.2`; anything else → None."""
    if not physical_path:
        return None
    last = physical_path.rstrip("\\/").replace("/", "\\").rsplit("\\", 1)[-1]
    return last if VERSION_PATTERN.fullmatch(last) else None


async def _environment_section(
    services: Services, name: str, read: Awaitable[list[HostLine]]
) -> list[cards.Element]:
    env = services.config.environments[name]
    tz, now = services.config.tz, services.now()
    lines = await read
    deployment = await services.store.current_deployment(name)
    if deployment is not None:
        version = (
            f"{deployment.version} (deployment history{', stable' if deployment.stable else ''})"
        )
    else:
        seen = {version_from_path(h.state.physical_path) for h in lines if h.state}
        seen.discard(None)
        version = (
            f"{', '.join(sorted(v for v in seen if v))} (from the site's physicalPath)"
            if seen
            else "unknown (no deployment history, host path unreadable)"
        )
    smoke = await services.store.last_smoke(name)
    smoke_text = (
        f"{'PASS' if smoke.passed else 'FAIL'} at {show(smoke.at, tz)} ({ago(smoke.at, now)})"
        if smoke
        else "never run — try `smoke " + name + "`"
    )
    lock = await services.store.lock_holder(name)
    run_text = (
        f"run {lock.holder_run_id} by {lock.holder_name} since {show(lock.since, tz)}"
        if lock and lock.holder_run_id and lock.since
        else "none"
    )
    rows, colors = [], []
    for line in lines:
        if line.state is None:
            rows.append([line.host, "unreachable", "", "", cards.plain(line.error or "", 300)])
            colors.append("Attention")
            continue
        s = line.state
        healthy = (s.site_state, s.pool_state, s.service_state) == ("Started", "Started", "Running")
        rows.append(
            # The host's own words: escaped, so a crafted path cannot become a link.
            [
                line.host,
                *(
                    cards.plain(v, 200)
                    for v in (s.site_state, s.pool_state, s.service_state, s.physical_path or "?")
                ),
            ]
        )
        colors.append("Good" if healthy else "Warning")
    return [
        cards.title(f"{name}" + (f" — {env.description}" if env.description else "")),
        cards.facts(
            [
                ("Current version", version),
                ("Last smoke", smoke_text),
                ("Run in progress", run_text),
            ]
        ),
        cards.table(["Host", "Site", "App pool", "Worker", "Path"], rows, colors),
    ]


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
    summary=(
        "Version, IIS site / app pool / Worker state, last smoke, run in progress; "
        "a pair's live slot."
    ),
    role="operator",
    env_arg="optional",
    max_extra_args=0,
    run=run,
)
