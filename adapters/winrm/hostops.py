"""IIS and Windows-service operations on one host, on top of any `RemoteShell`.

Each operation is one remote script run (act, wait, verify, print one JSON line — one round
trip, docs/windows-hosts.md); this module turns the printed JSON into typed results
(adapters/winrm/hoststate.py) and fails loudly when the state reached is not the one asked
for. It knows nothing of pywinrm: the executor passes a WinRMShell, tests may pass the lab
or an in-memory twin.

`preflight` is read-only: it checks what a run needs before anything stops and returns the
host's state, which the run keeps to restore. `deploy_release` makes
`<releases_root>\\<version>` a whole release folder (verifying the package's SHA-256 on the
host, or keeping a folder whose marker proves it whole) and prunes old ones;
`switch_release` points every site's physicalPath and every service's ImagePath at new
binaries and reads each back — a restore uses it too, with the paths the host had before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol

from adapters.errors import BadReply, StateNotReached
from adapters.winrm.hoststate import (
    ControlResult,
    DeployResult,
    HostState,
    PoolState,
    Preflight,
    ScriptRan,
    ServiceState,
    SharedPackage,
    ShareState,
    SiteState,
    Switched,
    Synced,
    same_path,
    version_key,
)
from adapters.winrm.scripts import (
    OP_DEPLOY,
    OP_ECHO,
    OP_POOL,
    OP_PREFLIGHT,
    OP_READ_SHARE,
    OP_READ_STATE,
    OP_RUN_SCRIPT,
    OP_SERVICE,
    OP_SITE,
    OP_SWITCH,
    OP_SYNC_PACKAGE,
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
        self,
        sites: Sequence[str],
        pools: Sequence[str],
        services: Sequence[str],
        releases_root: str,
        *,
        timeout_s: float,
    ) -> HostState:
        """Every named component's state and path, and the kept releases (read-only)."""
        params: dict[str, JsonValue] = {
            "Sites": list(sites),
            "AppPools": list(pools),
            "Services": list(services),
            "ReleasesRoot": releases_root,
        }
        reply = await self._shell.run(OP_READ_STATE, params, timeout_s=timeout_s)
        return self._state(reply, OP_READ_STATE, sites, pools, services)

    async def preflight(
        self,
        sites: Sequence[str],
        pools: Sequence[str],
        services: Sequence[str],
        releases_root: str,
        *,
        version: str,
        sha256: str,
        package_dir: str,
        required_bytes: int,
        timeout_s: float,
    ) -> Preflight:
        """Read-only: what would stop a run on this host (none = go), and the host's state."""
        params: dict[str, JsonValue] = {
            "Sites": list(sites),
            "AppPools": list(pools),
            "Services": list(services),
            "ReleasesRoot": releases_root,
            "Version": version,
            "Sha256": sha256.lower(),
            "PackageDir": package_dir,
            "RequiredBytes": required_bytes,
        }
        reply = await self._shell.run(OP_PREFLIGHT, params, timeout_s=timeout_s)
        free = reply.get("free_bytes")
        if free is not None and (isinstance(free, bool) or not isinstance(free, int)):
            raise self._bad(OP_PREFLIGHT, "free_bytes")
        return Preflight(
            state=self._state(reply, OP_PREFLIGHT, sites, pools, services),
            problems=self._strings(reply, OP_PREFLIGHT, "problems"),
            release_whole=self._flag(reply, OP_PREFLIGHT, "release_whole"),
            package_verified=self._flag(reply, OP_PREFLIGHT, "package_verified"),
            free_bytes=free,
        )

    def _state(
        self,
        reply: Mapping[str, Any],
        op: str,
        sites: Sequence[str],
        pools: Sequence[str],
        services: Sequence[str],
    ) -> HostState:
        releases = self._strings(reply, op, "releases")
        kept = sorted((r for r in releases if VERSION_PATTERN.fullmatch(r)), key=version_key)
        site_rows = self._rows(reply, op, "sites", sites)
        pool_rows = self._rows(reply, op, "pools", pools)
        service_rows = self._rows(reply, op, "services", services)
        return HostState(
            host=self.host,
            sites=tuple(
                SiteState(r["name"], self._text(r, op, "state"), self._path(r, "physical_path"))
                for r in site_rows
            ),
            pools=tuple(PoolState(r["name"], self._text(r, op, "state")) for r in pool_rows),
            services=tuple(
                ServiceState(r["name"], self._text(r, op, "state"), self._path(r, "image_path"))
                for r in service_rows
            ),
            releases=tuple(kept),
        )

    def _rows(
        self, reply: Mapping[str, Any], op: str, key: str, names: Sequence[str]
    ) -> list[Mapping[str, Any]]:
        """The per-component objects, one per name asked for, in the order asked."""
        value = reply.get(key)
        # PowerShell 5.1 turns an empty array into null and unwraps a one-element one.
        rows = [] if value is None else [value] if isinstance(value, dict) else value
        if not isinstance(rows, list) or not all(
            isinstance(r, dict) and isinstance(r.get("name"), str) for r in rows
        ):
            raise self._bad(op, key)
        if [r["name"].casefold() for r in rows] != [n.casefold() for n in names]:
            raise self._bad(op, key)
        return rows

    def _text(self, row: Mapping[str, Any], op: str, key: str) -> str:
        value = row.get(key)
        if not isinstance(value, str):
            raise self._bad(op, key)
        return value

    @staticmethod
    def _path(row: Mapping[str, Any], key: str) -> str | None:
        value = row.get(key)
        return value if isinstance(value, str) and value else None

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

    async def switch_release(
        self,
        site_paths: Sequence[tuple[str, str]],
        service_images: Sequence[tuple[str, str]],
        *,
        releases_root: str | None,
        timeout_s: float,
    ) -> tuple[Switched, ...]:
        """Point each site (name, folder) and service (name, ImagePath) at new binaries.

        With `releases_root`, every path must lie inside it (a switch to a release); without
        it, the paths are what the host had before (a restore). Each is read back; a folder
        or executable that does not exist is refused before anything is written.
        """
        wait_s = max(1, int(timeout_s * _WAIT_SHARE))
        params: dict[str, JsonValue] = {
            "SiteNames": [n for n, _ in site_paths],
            "SitePaths": [p for _, p in site_paths],
            "ServiceNames": [n for n, _ in service_images],
            "ServiceImagePaths": [p for _, p in service_images],
            "ReleasesRoot": releases_root or "",
            "TimeoutSec": wait_s,
        }
        reply = await self._shell.run(OP_SWITCH, params, timeout_s=timeout_s)
        done: list[Switched] = []
        for kind, key, field, wanted in (
            ("site", "sites", "physical_path", site_paths),
            ("service", "services", "image_path", service_images),
        ):
            rows = self._rows(reply, OP_SWITCH, key, [n for n, _ in wanted])
            for row, (name, path) in zip(rows, wanted, strict=True):
                after = self._text(row, OP_SWITCH, field)
                # The script compared it already; this catches a script and bot out of step.
                if not same_path(after, path):
                    raise self._bad(OP_SWITCH, field)
                before = self._text(row, OP_SWITCH, "before")
                done.append(Switched(kind, name, before, after, not same_path(before, after)))
        return tuple(done)

    async def read_share(
        self, package_dir: str, versions: Sequence[str], *, timeout_s: float
    ) -> ShareState:
        """Which of `versions` the host's package folder holds, each hashed on the host."""
        params: dict[str, JsonValue] = {"PackageDir": package_dir, "Versions": list(versions)}
        reply = await self._shell.run(OP_READ_SHARE, params, timeout_s=timeout_s)
        reachable = self._flag(reply, OP_READ_SHARE, "reachable")
        raw = reply.get("packages")
        # PowerShell 5.1 turns an empty array into null and unwraps a one-element one.
        rows = [] if raw is None else [raw] if isinstance(raw, dict) else raw
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise self._bad(OP_READ_SHARE, "packages")
        found: list[SharedPackage] = []
        for row in rows:
            version = self._field(row, OP_READ_SHARE, "version")
            digest = row.get("sha256")
            if version not in versions or not (digest is None or isinstance(digest, str)):
                raise self._bad(OP_READ_SHARE, "packages")
            found.append(SharedPackage(version, self._flag(row, OP_READ_SHARE, "present"), digest))
        return ShareState(self.host, reachable, tuple(found))

    async def sync_package(
        self, version: str, sha256: str, source_dir: str, package_dir: str, *, timeout_s: float
    ) -> Synced:
        """Make the host's package folder hold `version` with `sha256` (copied from
        `source_dir` and verified on the host, or kept when it already matches)."""
        params: dict[str, JsonValue] = {
            "Version": version,
            "Sha256": sha256,
            "SourceDir": source_dir,
            "PackageDir": package_dir,
            "TimeoutSec": max(1, int(timeout_s * _WAIT_SHARE)),
        }
        reply = await self._shell.run(OP_SYNC_PACKAGE, params, timeout_s=timeout_s)
        if self._field(reply, OP_SYNC_PACKAGE, "version") != version:
            raise self._bad(OP_SYNC_PACKAGE, "version")
        if self._field(reply, OP_SYNC_PACKAGE, "sha256").lower() != sha256.lower():
            raise self._bad(OP_SYNC_PACKAGE, "sha256")
        return Synced(
            self.host,
            version,
            self._flag(reply, OP_SYNC_PACKAGE, "copied"),
            self._flag(reply, OP_SYNC_PACKAGE, "replaced"),
        )

    async def run_script(
        self, path: str, parameters: Mapping[str, str | int | bool], *, timeout_s: float
    ) -> ScriptRan:
        """Run one of the operators' scripts with `parameters` splatted; stopped at the
        deadline (the host's own bound comes first, so its verdict still comes back)."""
        wait_s = max(1, int(timeout_s * _WAIT_SHARE))
        params: dict[str, JsonValue] = {
            "ScriptPath": path,
            "ScriptParameters": dict(parameters),
            "TimeoutSec": wait_s,
        }
        reply = await self._shell.run(OP_RUN_SCRIPT, params, timeout_s=timeout_s)
        ended = self._field(reply, OP_RUN_SCRIPT, "ended")
        code = reply.get("exit_code")
        took = reply.get("duration_ms")
        output = reply.get("output")
        if ended not in ("exited", "timeout"):
            raise self._bad(OP_RUN_SCRIPT, "ended")
        if code is not None and (isinstance(code, bool) or not isinstance(code, int)):
            raise self._bad(OP_RUN_SCRIPT, "exit_code")
        if isinstance(took, bool) or not isinstance(took, int):
            raise self._bad(OP_RUN_SCRIPT, "duration_ms")
        return ScriptRan(
            self.host, path, ended, code, took, output if isinstance(output, str) else ""
        )

    async def start_site(self, name: str, *, timeout_s: float) -> ControlResult:
        return await self._control(OP_SITE, "Site", name, "Start", timeout_s)

    async def stop_site(self, name: str, *, timeout_s: float) -> ControlResult:
        return await self._control(OP_SITE, "Site", name, "Stop", timeout_s)

    async def start_pool(self, name: str, *, timeout_s: float) -> ControlResult:
        return await self._control(OP_POOL, "AppPool", name, "Start", timeout_s)

    async def stop_pool(self, name: str, *, timeout_s: float) -> ControlResult:
        return await self._control(OP_POOL, "AppPool", name, "Stop", timeout_s)

    async def recycle_pool(self, name: str, *, timeout_s: float) -> ControlResult:
        """Recycle a started pool; a stopped one stays stopped ("was already stopped")."""
        return await self._control(OP_POOL, "AppPool", name, "Recycle", timeout_s)

    async def start_service(self, name: str, *, timeout_s: float) -> ControlResult:
        return await self._control(OP_SERVICE, "Service", name, "Start", timeout_s)

    async def stop_service(self, name: str, *, timeout_s: float) -> ControlResult:
        return await self._control(OP_SERVICE, "Service", name, "Stop", timeout_s)

    async def _control(
        self, op: str, key: str, name: str, action: str, timeout_s: float
    ) -> ControlResult:
        """Run one act-wait-verify script; the state reached, or StateNotReached."""
        wait_s = max(1, int(timeout_s * _WAIT_SHARE))
        params: dict[str, JsonValue] = {key: name, "Action": action, "TimeoutSec": wait_s}
        reply = await self._shell.run(op, params, timeout_s=timeout_s)
        state = self._field(reply, op, "state")
        before = self._field(reply, op, "before")
        wanted = _wanted(op, action, before)
        if state != wanted:
            target = _TARGETS[op].format(name=name)
            raise StateNotReached(host=self.host, op=op, target=target, wanted=wanted, actual=state)
        changed = reply.get("changed")
        return ControlResult(self.host, name, action, before, state, changed is True)

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


def _wanted(op: str, action: str, before: str) -> str:
    """The state an action must reach; recycling a stopped pool leaves it stopped."""
    up = "Running" if op == OP_SERVICE else "Started"
    if action == "Stop":
        return "Stopped"
    if action == "Recycle" and before not in ("Started", "Starting"):
        return "Stopped"
    return up


_TARGETS: Final = {
    OP_SITE: "IIS site {name!r}",
    OP_POOL: "application pool {name!r}",
    OP_SERVICE: "service {name!r}",
}


def _leaf(path: str) -> str:
    return path.rstrip("\\").rsplit("\\", 1)[-1]


__all__ = [
    "ControlResult",
    "DeployResult",
    "HostOps",
    "HostState",
    "Preflight",
    "RemoteShell",
    "ScriptRan",
    "ShareState",
    "Switched",
    "Synced",
    "version_key",
]
