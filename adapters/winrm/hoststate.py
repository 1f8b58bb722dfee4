"""What one host reports about its components, as typed values (no I/O here).

`read-state` and `preflight` print the same shape: every site (state, physicalPath), every
app pool (state), every service (state, ImagePath) and the kept release folders. A site's
or service's release is the folder under the releases root its path lies in:
`D:\\MCMS\\releases\\1.4.1\\Portal` and `"D:\\MCMS\\releases\\1.4.1\\Worker\\W.exe" -x` are
both release 1.4.1.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from adapters.winrm.scripts import VERSION_PATTERN

# IIS and SCM words for "running" and "not running"; anything else is neither.
UP_STATES = frozenset({"Started", "Starting", "Running", "StartPending"})
DOWN_STATES = frozenset({"Stopped", "Stopping", "StopPending"})


def version_key(version: str) -> tuple[tuple[int, ...], int, str]:
    """Sort key: numeric parts, then a pre-release (1.4.0-rc1) before its release (1.4.0)."""
    numbers, _, suffix = version.partition("-")
    return tuple(int(n) for n in numbers.split(".")), 0 if suffix else 1, suffix


def executable_of(image_path: str) -> str:
    """The program of a service ImagePath: the quoted part, else up to the first space."""
    text = image_path.strip()
    if text.startswith('"'):
        return text[1:].split('"', 1)[0]
    return text.split(" ", 1)[0]


def release_of(path: str | None, releases_root: str) -> str | None:
    """The release folder `path` lies in (a version), or None when it is not in one."""
    if not path:
        return None
    root = releases_root.rstrip("\\").casefold() + "\\"
    text = executable_of(path) if path.lstrip().startswith('"') else path.strip()
    if not text.casefold().startswith(root):
        return None
    first = text[len(root) :].split("\\", 1)[0]
    return first if VERSION_PATTERN.fullmatch(first) else None


def same_path(a: str | None, b: str | None) -> bool:
    """Windows compares paths case-insensitively; a trailing backslash is no difference."""
    if a is None or b is None:
        return a is b
    return a.strip().rstrip("\\").casefold() == b.strip().rstrip("\\").casefold()


@dataclass(frozen=True)
class SiteState:
    name: str
    state: str  # IIS word, or "Missing"
    physical_path: str | None


@dataclass(frozen=True)
class PoolState:
    name: str
    state: str


@dataclass(frozen=True)
class ServiceState:
    name: str
    state: str  # SCM word, or "Missing"
    image_path: str | None


@dataclass(frozen=True)
class HostState:
    """Every component of one host as IIS and the SCM report it, and the kept releases."""

    host: str
    sites: tuple[SiteState, ...]
    pools: tuple[PoolState, ...]
    services: tuple[ServiceState, ...]
    releases: tuple[str, ...]  # release folders kept under the releases root, oldest first

    def site(self, name: str) -> SiteState | None:
        return next((s for s in self.sites if s.name.casefold() == name.casefold()), None)

    def pool(self, name: str) -> PoolState | None:
        return next((p for p in self.pools if p.name.casefold() == name.casefold()), None)

    def service(self, name: str) -> ServiceState | None:
        return next((s for s in self.services if s.name.casefold() == name.casefold()), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "sites": [vars(s) for s in self.sites],
            "pools": [vars(p) for p in self.pools],
            "services": [vars(s) for s in self.services],
            "releases": list(self.releases),
        }

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> HostState:
        return HostState(
            host=str(data["host"]),
            sites=tuple(SiteState(**s) for s in data["sites"]),
            pools=tuple(PoolState(**p) for p in data["pools"]),
            services=tuple(ServiceState(**s) for s in data["services"]),
            releases=tuple(data["releases"]),
        )


@dataclass(frozen=True)
class Preflight:
    """One host's answer to the read-only checks: its problems (none = go) and its state."""

    state: HostState
    problems: tuple[str, ...]
    release_whole: bool
    package_verified: bool
    free_bytes: int | None

    @property
    def host(self) -> str:
        return self.state.host


@dataclass(frozen=True)
class ControlResult:
    """One start/stop/recycle: the state before, the state reached, and whether it acted."""

    host: str
    name: str
    action: str
    before: str
    state: str
    changed: bool

    @property
    def words(self) -> str:
        if self.changed:
            return f"{self.before} → {self.state}"
        if self.state in DOWN_STATES and self.action in ("Stop", "Recycle"):
            return f"{self.state} (was already stopped)"
        return f"{self.state} (was already)"


@dataclass(frozen=True)
class Switched:
    """One component's path before and after a switch, read back from the host."""

    kind: str  # "site" | "service"
    name: str
    before: str
    after: str
    changed: bool


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


@dataclass(frozen=True)
class ScriptRan:
    """One operator script's run on a host: how it ended, its exit code, its output's tail."""

    host: str
    script: str
    ended: str  # exited | timeout
    exit_code: int | None
    duration_ms: int
    output: str

    @property
    def ok(self) -> bool:
        return self.ended == "exited" and self.exit_code == 0

    def last_lines(self, count: int = 3) -> str:
        lines = [line.strip() for line in self.output.splitlines() if line.strip()]
        return " | ".join(lines[-count:])


@dataclass(frozen=True)
class SharedPackage:
    """One package as a host's package folder holds it: present, and its SHA-256 there."""

    version: str
    present: bool
    sha256: str | None


@dataclass(frozen=True)
class ShareState:
    """What a host's package folder holds of the versions asked about."""

    host: str
    reachable: bool
    packages: tuple[SharedPackage, ...]


@dataclass(frozen=True)
class Synced:
    """A sync of one package to a host's folder: copied (and verified there) or kept."""

    host: str
    version: str
    copied: bool
    replaced: bool
