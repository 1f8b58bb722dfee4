"""Which version a rollback or deploy goes to, and why — or why there is none.

Rollback without a version: the previous stable version from the deployment history; on a
fresh install (no history) the newest release kept on the host older than the current one,
else the newest package in the store older than it. A version given by the operator must
match the version pattern AND exist in the package store with a matching SHA-256.
Every answer is a value: `Target`, or `NoTarget` with a message saying how to proceed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from adapters.packages import Package, PackageProblem, PackageStore
from adapters.winrm.hostops import version_key
from commands.config import VERSION_PATTERN
from commands.plan import Kind


@dataclass(frozen=True)
class Target:
    package: Package
    source: str

    @property
    def version(self) -> str:
        return self.package.version


@dataclass(frozen=True)
class NoTarget:
    message: str


def _older(versions: Sequence[str], current: str) -> list[str]:
    key = version_key(current)
    return sorted((v for v in versions if version_key(v) < key), key=version_key)


async def resolve_target(
    kind: Kind,
    environment: str,
    store: PackageStore,
    *,
    requested: str | None,
    current: str | None,
    previous_stable: str | None,
    kept_on_host: Sequence[str],
) -> Target | NoTarget:
    if requested is not None:
        if not VERSION_PATTERN.fullmatch(requested):
            return NoTarget(
                f"`{requested}` is not a version (expected e.g. 1.4.2 or 1.4.2-hotfix1). "
                "Nothing was requested."
            )
        if kind == "rollback" and requested == current:
            return NoTarget(
                f"{requested} is already the current version of {environment}; nothing to roll "
                f"back. To reinstall it, use `deploy {environment} {requested}`. Nothing was "
                "requested."
            )
        return _checked(await store.verify(requested), "requested")

    if current is None:
        return NoTarget(
            f"I cannot tell which version {environment} runs now (no deployment history, and "
            "the site's physicalPath is not a release folder), so I cannot pick the previous "
            f"one. Name it: `rollback {environment} VERSION`."
        )
    if previous_stable is not None:
        return _checked(await store.verify(previous_stable), "deployment history (previous stable)")
    kept = _older([v for v in kept_on_host if VERSION_PATTERN.fullmatch(v)], current)
    if kept:
        return _checked(await store.verify(kept[-1]), "newest release kept on the host")
    stored = _older(store.versions(), current)
    if stored:
        return _checked(await store.verify(stored[-1]), "newest older package in the store")
    return NoTarget(
        f"There is no version of {environment} older than {current}: no stable version in the "
        "deployment history, no older release folder on the host, no older package in the "
        f"store. Name one explicitly: `rollback {environment} VERSION`."
    )


def _checked(result: Package | PackageProblem, source: str) -> Target | NoTarget:
    if isinstance(result, PackageProblem):
        return NoTarget(result.message + " Nothing was requested.")
    return Target(result, source)
