"""IIS and Windows-service operations on one host, on top of any `RemoteShell`.

Each operation is one remote script run (act, wait, verify, print one JSON line — one round
trip, docs/windows-hosts.md); this module turns the printed JSON into typed results and fails
loudly when the state reached is not the one asked for. It knows nothing of pywinrm: the
executor passes a WinRMShell, tests may pass the lab or an in-memory twin.

The deploy step of a rollback is two more scripts of the same shape: `deploy_release`
makes `<releases_root>\\<version>` a whole release folder (verifying the package's SHA-256
on the host, or keeping a folder whose marker proves it whole) and prunes old ones;
`switch_site` points the site's physicalPath at it and reads it back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from adapters.errors import BadReply, StateNotReached
from adapters.winrm.scripts import (
    OP_DEPLOY,
    OP_ECHO,
    OP_POOL,
    OP_READ_STATE,
    OP_SERVICE,
    OP_SITE,
    OP_SWITCH,
    VERSION_PATTERN,
    JsonValue,
)

# Leave the script time to print its verdict before the caller's deadline cuts it off.
_WAIT_SHARE: Final = 0.75


class RemoteShell(Protocol):
    """Runs one named constant script on one host (see adapters.winrm.scripts)."""

    host: str

    async def run(
        self, op: str, params: Mapping[str, JsonValue], *, timeout_s: float
    ) -> dict[str, Any]:
        """Return the JSON object the script printed last; raise adapters.errors.RemoteError."""
        ...


@dataclass(frozen=True)
class HostState:
    """What IIS and the SCM report on one host; states are IIS/SCM words or "Missing"."""

    host: str
    site_state: str
    pool_state: str
    service_state: str
    physical_path: str | None
    releases: tuple[str, ...]  # release folders kept under releases_root, oldest first

    @property
    def current_release(self) -> str | None:
        """The release folder the site points at, if it is one of the kept releases."""
        if not self.physical_path:
            return None
        leaf = self.physical_path.rstrip("\\").rsplit("\\", 1)[-1]
        return leaf if leaf in self.releases else None

    @property
    def serving(self) -> bool:
        return self.site_state == "Started" and self.pool_state == "Started"


@dataclass(frozen=True)
class DeployResult:
    """A whole release folder for `version` on one host, and what pruning removed.

    `copied` is False when a kept folder was used as it is (its marker holds the package's
    digest); `sha256_verified` is True only when the package was hashed on the host in this
    call. Folders that could not be pruned are listed in `prune_errors`: housekeeping, so
    they never fail the deploy.
    """

    host: str
    version: str
    release_path: str
    copied: bool
    sha256_verified: bool
    removed: tuple[str, ...]  # pruned release folders, oldest first
    prune_errors: tuple[str, ...] = ()


def version_key(version: str) -> tuple[tuple[int, ...], int, str]:
    """Sort key: numeric parts, then a pre-release (1.4.0-rc1) before its release (1.4.0)."""
    numbers, _, suffix = version.partition("-")
    return tuple(int(n) for n in numbers.split(".")), 0 if suffix else 1, suffix


class HostOps:
    """The operations the playbook needs on one host; every call has its own deadline."""

    def __init__(self, shell: RemoteShell, *, host: str | None = None) -> None:
        self._shell = shell
        # The inventory name, for messages; the shell's own name when not given.
        self.host = host or shell.host

    @property
    def shell(self) -> RemoteShell:
        """The shell under these operations: a DR runner host runs its suites through it."""
        return self._shell

    async def echo(self, text: str, *, timeout_s: float) -> str:
        """Send `text` there and back; proves the transport keeps values byte-exact."""
        reply = await self._shell.run(OP_ECHO, {"Text": text}, timeout_s=timeout_s)
        return self._field(reply, OP_ECHO, "text")

    async def read_state(
        self, site: str, app_pool: str, service: str, releases_root: str, *, timeout_s: float
    ) -> HostState:
        params: dict[str, JsonValue] = {
            "Site": site,
            "AppPool": app_pool,
            "Service": service,
            "ReleasesRoot": releases_root,
        }
        reply = await self._shell.run(OP_READ_STATE, params, timeout_s=timeout_s)
        releases = reply.get("releases") or []
        # PowerShell 5.1 unwraps a one-element array into a scalar on the way to JSON.
        if isinstance(releases, str):
            releases = [releases]
        if not isinstance(releases, list) or not all(isinstance(r, str) for r in releases):
            raise self._bad(OP_READ_STATE, "releases")
        kept = sorted((r for r in releases if VERSION_PATTERN.fullmatch(r)), key=version_key)
        path = reply.get("physical_path")
        return HostState(
            host=self.host,
            site_state=self._field(reply, OP_READ_STATE, "site_state"),
            pool_state=self._field(reply, OP_READ_STATE, "pool_state"),
            service_state=self._field(reply, OP_READ_STATE, "service_state"),
            physical_path=path if isinstance(path, str) and path else None,
            releases=tuple(kept),
        )

    async def deploy_release(
        self,
        version: str,
        sha256: str,
        package_dir: str,
        releases_root: str,
        *,
        keep: int,
        protect: Sequence[str] = (),
        timeout_s: float,
    ) -> DeployResult:
        """Make `<releases_root>\\<version>` whole from `<package_dir>\\MCMS_Setup_<version>.zip`.

        `package_dir` is the store as the HOST sees it (a UNC share or a local folder). A
        digest mismatch on the host raises RemoteScriptFailed and changes nothing. Then the
        newest `keep` folders stay, and so do `protect`, `version` and whatever a site serves.
        """
        params: dict[str, JsonValue] = {
            "Version": version,
            "Sha256": sha256.lower(),
            "PackageDir": package_dir,
            "ReleasesRoot": releases_root,
            "KeepCount": keep,
            "ProtectVersions": [*dict.fromkeys([version, *protect])],
        }
        reply = await self._shell.run(OP_DEPLOY, params, timeout_s=timeout_s)
        if self._field(reply, OP_DEPLOY, "version") != version:
            raise self._bad(OP_DEPLOY, "version")
        path = self._field(reply, OP_DEPLOY, "release_path")
        if _leaf(path).casefold() != version.casefold():
            raise self._bad(OP_DEPLOY, "release_path")
        removed = self._strings(reply, OP_DEPLOY, "removed")
        # Only version-named folders are pruned, never a protected one: else out of step.
        if set(removed) & {version, *protect} or not all(map(VERSION_PATTERN.fullmatch, removed)):
            raise self._bad(OP_DEPLOY, "removed")
        return DeployResult(
            host=self.host,
            version=version,
            release_path=path,
            copied=self._flag(reply, OP_DEPLOY, "copied"),
            sha256_verified=self._flag(reply, OP_DEPLOY, "sha256_verified"),
            removed=tuple(sorted(removed, key=version_key)),
            prune_errors=self._strings(reply, OP_DEPLOY, "prune_errors"),
        )

    async def switch_site(
        self, site: str, releases_root: str, version: str, *, timeout_s: float
    ) -> str:
        """Point `site` at `<releases_root>\\<version>`; returns the physicalPath read back.

        Refused (RemoteScriptFailed, nothing changed) when that folder does not exist; a
        config write still locked after the script's retries fails the same way.
        """
        wait_s = max(1, int(timeout_s * _WAIT_SHARE))
        params: dict[str, JsonValue] = {
            "Site": site,
            "ReleasesRoot": releases_root,
            "Version": version,
            "TimeoutSec": wait_s,
        }
        reply = await self._shell.run(OP_SWITCH, params, timeout_s=timeout_s)
        path = self._field(reply, OP_SWITCH, "physical_path")
        # The script already compared it; this catches a script and bot out of step.
        if _leaf(path).casefold() != version.casefold():
            raise self._bad(OP_SWITCH, "physical_path")
        return path

    async def start_site(self, name: str, *, timeout_s: float) -> str:
        return await self._control(OP_SITE, "Site", name, "Start", "Started", timeout_s)

    async def stop_site(self, name: str, *, timeout_s: float) -> str:
        return await self._control(OP_SITE, "Site", name, "Stop", "Stopped", timeout_s)

    async def start_pool(self, name: str, *, timeout_s: float) -> str:
        return await self._control(OP_POOL, "AppPool", name, "Start", "Started", timeout_s)

    async def stop_pool(self, name: str, *, timeout_s: float) -> str:
        return await self._control(OP_POOL, "AppPool", name, "Stop", "Stopped", timeout_s)

    async def recycle_pool(self, name: str, *, timeout_s: float) -> str:
        return await self._control(OP_POOL, "AppPool", name, "Recycle", "Started", timeout_s)

    async def start_service(self, name: str, *, timeout_s: float) -> str:
        return await self._control(OP_SERVICE, "Service", name, "Start", "Running", timeout_s)

    async def stop_service(self, name: str, *, timeout_s: float) -> str:
        return await self._control(OP_SERVICE, "Service", name, "Stop", "Stopped", timeout_s)

    async def _control(
        self, op: str, key: str, name: str, action: str, wanted: str, timeout_s: float
    ) -> str:
        """Run one act-wait-verify script; return the final state or raise StateNotReached."""
        wait_s = max(1, int(timeout_s * _WAIT_SHARE))
        params: dict[str, JsonValue] = {key: name, "Action": action, "TimeoutSec": wait_s}
        reply = await self._shell.run(op, params, timeout_s=timeout_s)
        state = self._field(reply, op, "state")
        if state != wanted:
            target = _TARGETS[op].format(name=name)
            raise StateNotReached(host=self.host, op=op, target=target, wanted=wanted, actual=state)
        return state

    def _field(self, reply: Mapping[str, Any], op: str, key: str) -> str:
        value = reply.get(key)
        if not isinstance(value, str):
            raise self._bad(op, key)
        return value

    def _flag(self, reply: Mapping[str, Any], op: str, key: str) -> bool:
        value = reply.get(key)
        if not isinstance(value, bool):
            raise self._bad(op, key)
        return value

    def _strings(self, reply: Mapping[str, Any], op: str, key: str) -> tuple[str, ...]:
        value = reply.get(key)
        # PowerShell 5.1 turns an empty array into null and unwraps a one-element one.
        items = [] if value is None else [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise self._bad(op, key)
        return tuple(items)

    def _bad(self, op: str, key: str) -> BadReply:
        return BadReply(
            f"{op} on {self.host} printed a result without a valid {key!r}: the remote script "
            "and this bot are out of step. Redeploy the bot or report a bug.",
            host=self.host,
        )


_TARGETS: Final = {
    OP_SITE: "IIS site {name!r}",
    OP_POOL: "application pool {name!r}",
    OP_SERVICE: "service {name!r}",
}


def _leaf(path: str) -> str:
    return path.rstrip("\\").rsplit("\\", 1)[-1]


__all__ = ["DeployResult", "HostOps", "HostState", "RemoteShell", "version_key"]
