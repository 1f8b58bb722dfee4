"""`status`'s package share line: do the hosts' package folders hold the rollback and deploy
candidates, with the SHA-256 the bot's store verified?

The candidates are the previous stable release (where a rollback goes) and the newest package
in the store (where a deploy goes). Each host hashes its own copies (read-share, read-only),
all hosts at once, each with its own deadline. Pure words from values in `share_words`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from adapters.errors import RemoteError
from adapters.packages import Package, PackageStore
from adapters.winrm.hoststate import ShareState, version_key
from commands.config import Environment, Host
from commands.context import Services


@dataclass(frozen=True)
class Candidate:
    version: str
    role: str  # "previous stable" | "newest"
    sha256: str  # as the bot's store verified it


async def candidates(services: Services, name: str, env: Environment) -> list[Candidate]:
    """The previous stable release and the newest verified package, if any."""
    store = PackageStore(env.package_store)
    wanted: dict[str, str] = {}
    current = await services.store.current_deployment(name)
    if current is not None:
        previous = await services.store.previous_stable(name, current.version)
        if previous is not None:
            wanted[previous.version] = "previous stable"
    versions = store.versions()
    if versions:
        newest = max(versions, key=version_key)
        wanted[newest] = f"{wanted[newest]}, newest" if newest in wanted else "newest"
    found = []
    for version, role in wanted.items():
        package = await store.verify(version)
        if isinstance(package, Package):
            found.append(Candidate(version, role, package.sha256))
    return found


async def read_shares(
    services: Services, env: Environment, versions: list[str]
) -> list[ShareState | str]:
    """Each host's share (or why it could not be read), in host order."""

    async def one(host: Host) -> ShareState | str:
        try:
            async with asyncio.timeout(env.timeouts.preflight_s):
                return await services.hosts(host).read_share(
                    env.host_package_dir, versions, timeout_s=env.timeouts.preflight_s
                )
        except TimeoutError:
            return f"{host.name}: share not read within {env.timeouts.preflight_s:g} s"
        except RemoteError as exc:
            return f"{host.name}: share not read ({exc})"

    return list(await asyncio.gather(*(one(h) for h in env.hosts)))


def share_words(
    wanted: list[Candidate], shares: list[ShareState | str], syncs: bool
) -> tuple[str, bool]:
    """The status fact, and whether every host holds every candidate as verified."""
    if not wanted:
        return "no verified package in the store to look for", True
    problems: list[str] = []
    unread: list[str] = []
    for share in shares:
        if isinstance(share, str):
            unread.append(share)
            continue
        if not share.reachable:
            problems.append(f"{share.host}: package folder not reachable")
            continue
        held = {p.version: p for p in share.packages}
        for c in wanted:
            got = held.get(c.version)
            if got is None or not got.present:
                problems.append(f"{c.version} missing on {share.host}")
            elif (got.sha256 or "").lower() != c.sha256.lower():
                problems.append(
                    f"{c.version} differs on {share.host} (SHA-256 {(got.sha256 or '?')[:12]}… "
                    f"there, {c.sha256[:12]}… in the store)"
                )
    names = ", ".join(f"{c.version} ({c.role})" for c in wanted)
    if not problems and not unread:
        return f"{names} on every host, SHA-256 verified on each", True
    then = (
        "a run copies its package there first (package_source_dir)"
        if syncs
        else "copy the package there before a run (or set package_source_dir)"
    )
    parts = [f"share stale: {'; '.join(problems)} — {then}"] if problems else []
    parts += [f"not checked: {'; '.join(unread)}"] if unread else []
    return " | ".join(parts), False


async def share_fact(services: Services, name: str, env: Environment) -> tuple[str, bool]:
    wanted = await candidates(services, name, env)
    shares = await read_shares(services, env, [c.version for c in wanted]) if wanted else []
    return share_words(wanted, shares, env.package_source_dir is not None)
