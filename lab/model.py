"""The state of one simulated MCMS host and the faults a test can inject into it.

A `SimHost` lives on the lab's event loop and is only touched there; everything that leaves
the loop is a JSON snapshot. Names are matched case-insensitively, as Windows does.

A host runs the release's components: IIS sites (each with its app pool and its folder
inside the release, each serving some of the portal's checks on its own port) and Windows
services (each with an ImagePath, the registry value the SCM starts).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from lab.farm import SimFarm
    from lab.runner import DrSuite
    from lab.scripts import LabScript

PORTAL_CHECKS: Final = ("health", "swagger", "kerberos")
PORTAL_PAGES: Final = ("login", "releases")
GIB: Final = 2**30

# target → modes it accepts; see lab/README.md for what each one does.
FAULT_MODES: Final[dict[str, frozenset[str]]] = {
    "winrm": frozenset({"hang", "stall", "auth", "garbage", "down"}),
    "http": frozenset({"down", "slow", "error"}),
    **{check: frozenset({"down", "slow", "error"}) for check in PORTAL_CHECKS},
    "site": frozenset({"stuck", "config_locked"}),
    "pool": frozenset({"stuck"}),
    "service": frozenset({"stuck", "registry_denied"}),
    "package": frozenset({"corrupt", "expand_fail"}),
    "disk": frozenset({"full"}),
    # A host's package share (lab.share): a sync's copy arrives with one bit flipped.
    "share": frozenset({"corrupt_copy"}),
    # An operator's script run by run-script (lab.scripts): name = its file name.
    "script": frozenset({"fail", "slow"}),
    "op": frozenset({"hold", "fail"}),
    "farm": frozenset({"config_locked"}),  # a router host's ARR farm (lab.arr)
    # The portal's HTML pages (lab.pages): "a11y" renders them with accessibility violations.
    **{page: frozenset({"down", "slow", "error", "a11y"}) for page in PORTAL_PAGES},
}
# What every release holds (lab/packages.py writes these into each zip): the root (a site
# at the release root), the Portal and Api sites' folders, and the Worker's executable.
RELEASE_FOLDERS: Final = ("", "Portal", "Api", "Worker")
RELEASE_FILES: Final = ("Worker\\MCMS.Worker.exe",)
OUTSIDE_RELEASES: Final = "C:\\Program Files\\MCMS"


@dataclass(frozen=True)
class LabSite:
    """An IIS site: its app pool, its folder inside the release, the checks it answers."""

    name: str
    app_pool: str
    folder: str = ""  # "" = the release root
    # The smoke checks and HTML pages it answers (a site at the release root: all of them).
    checks: tuple[str, ...] = (*PORTAL_CHECKS, *PORTAL_PAGES)
    http_port: int = 0  # 0 = an ephemeral port


@dataclass(frozen=True)
class LabService:
    """A Windows service; `executable` inside the release ("" = installed outside it)."""

    name: str
    executable: str = ""
    arguments: str = ""


@dataclass(frozen=True)
class LabHostSpec:
    """One simulated host: its components, its kept releases and its credentials."""

    name: str
    environment: str
    releases: tuple[str, ...] = ("1.4.0", "1.4.1", "1.4.2")
    current: str | None = None  # the release the components run; None = the last one
    sites: tuple[LabSite, ...] = (LabSite("MCMS", "MCMS"),)
    services: tuple[LabService, ...] = (LabService("MCMS.Worker"),)
    releases_root: str = "D:\\MCMS\\releases"
    # The package store as this host sees it; the lab maps it onto its real packages_dir.
    package_dir: str = "D:\\MCMS\\packages"
    # The package store as this host reaches it to copy from (sync-package): the lab's store.
    package_source_dir: str = "\\\\files\\mcms\\offline"
    username: str = "lab-admin"
    password: str = "lab-password"  # noqa: S105  # demo credentials, never a real secret
    winrm_port: int = 0  # 0 = an ephemeral port
    serving: bool = True  # sites and pools Started, services Running at start
    free_bytes: int = 50 * GIB  # on the releases volume
    # How long every script takes on this host (PowerShell starting up): 0 = instant.
    script_latency_s: float = 0.0
    # Each portal answer takes this long, so requests are really in flight (a router's drain
    # has something to wait for).
    portal_latency_s: float = 0.005


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour (see lab/README.md for targets and modes).

    Filters narrow it: `name` (a component, or for target "op" the script's op), `action`
    (Start, Stop, Recycle), `version` (an http error only while that release serves),
    `match` (for "op": parameters the call must have). `times` makes it one-shot (or N-shot):
    it disarms after affecting that many operations.
    """

    target: str
    mode: str
    delay_s: float = 0.0
    name: str | None = None
    action: str | None = None
    version: str | None = None
    match: tuple[tuple[str, str], ...] = ()
    times: int | None = None

    @classmethod
    def parse(
        cls,
        target: str,
        mode: str,
        delay_s: float = 0.0,
        *,
        name: str | None = None,
        action: str | None = None,
        version: str | None = None,
        match: Mapping[str, Any] | None = None,
        times: int | None = None,
    ) -> Fault:
        modes = FAULT_MODES.get(target)
        if modes is None:
            raise ValueError(f"unknown fault target {target!r} (known: {', '.join(FAULT_MODES)})")
        if mode not in modes:
            raise ValueError(f"target {target!r} takes mode {' | '.join(sorted(modes))}")
        if not 0 <= delay_s <= 600:
            raise ValueError("delay_s must be within 0..600")
        if mode == "slow" and delay_s <= 0:
            raise ValueError('mode "slow" needs delay_s > 0')
        if target == "op" and not name:
            raise ValueError('target "op" needs "name": the script op, e.g. site-control')
        if action is not None and action.capitalize() not in ("Start", "Stop", "Recycle"):
            raise ValueError('"action" must be Start, Stop or Recycle')
        if times is not None and not 1 <= times <= 1000:
            raise ValueError('"times" must be within 1..1000')
        pairs = tuple(sorted((str(k), str(v)) for k, v in (match or {}).items()))
        return cls(
            target,
            mode,
            delay_s,
            name,
            action.capitalize() if action else None,
            version,
            pairs,
            times,
        )

    def applies(self, name: str | None = None, action: str | None = None) -> bool:
        if self.name is not None and (name or "").casefold() != self.name.casefold():
            return False
        return self.action is None or (action or "").casefold() == self.action.casefold()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.mode, "delay_s": self.delay_s}
        for key in ("name", "action", "version", "times"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.match:
            out["match"] = dict(self.match)
        return out


class ScriptError(Exception):
    """The real script would have thrown: becomes the prelude's error JSON and exit 1.

    `duration_s` is how long the real script would have run before throwing (retries).
    """

    def __init__(self, message: str, *, duration_s: float = 0.0) -> None:
        super().__init__(message)
        self.duration_s = duration_s


@dataclass(frozen=True)
class ScriptCall:
    """One script the host received: its op, the decoded params and their exact JSON text."""

    op: str
    params: dict[str, Any]
    raw_json: str


@dataclass
class Site:
    state: str
    physical_path: str
    app_pool: str
    checks: tuple[str, ...]


@dataclass
class Service:
    state: str
    image_path: str


def image_path(root: str, release: str, service: LabService) -> str:
    """The ImagePath a service has when it runs `release` (quoted, as Windows wants it)."""
    if service.executable:
        exe = f"{root}\\{release}\\{service.executable}"
    else:
        exe = f"{OUTSIDE_RELEASES}\\{service.name}.exe"
    return f'"{exe}"' + (f" {service.arguments}" if service.arguments else "")


def release_of(path: str, root: str) -> str | None:
    """The release folder a site path or ImagePath lies in, if any."""
    text = path.strip()
    if text.startswith('"'):
        text = text[1:].split('"', 1)[0]
    prefix = root.rstrip("\\").casefold() + "\\"
    if not text.casefold().startswith(prefix):
        return None
    return text[len(prefix) :].split("\\", 1)[0] or None


@dataclass
class SimHost:
    """Mutable host state; touched only on the lab's loop."""

    spec: LabHostSpec
    sites: dict[str, Site] = field(default_factory=dict)
    pools: dict[str, str] = field(default_factory=dict)
    recycles: dict[str, int] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)
    release_dirs: list[str] = field(default_factory=list)
    # Release folder → the digest its .mcms-release marker holds; absent = no marker.
    markers: dict[str, str] = field(default_factory=dict)
    # The real directory behind spec.package_dir (None: the host sees no packages).
    packages_dir: Path | None = None
    # The real directory behind spec.package_source_dir: the lab's package store.
    store_dir: Path | None = None
    faults: dict[str, Fault] = field(default_factory=dict)
    calls: list[ScriptCall] = field(default_factory=list)
    held: list[str] = field(default_factory=list)  # ops waiting at an "op" hold
    released: asyncio.Event | None = None  # set when an "op" hold is cleared
    winrm_requests: int = 0
    winrm_actions: list[str] = field(default_factory=list)
    http_requests: int = 0
    # The ARR web farm of a router host (lab.router); None on a plain MCMS host.
    farm: SimFarm | None = None
    # What run-dr-test finds installed on this host as a DR runner (lab.runner); None: nothing.
    dr_suite: DrSuite | None = None
    # The operators' scripts installed here (lab.scripts), and every run of one, as bound.
    scripts: tuple[LabScript, ...] = ()
    script_runs: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_spec(cls, spec: LabHostSpec, packages_dir: Path | None = None) -> SimHost:
        current = spec.current or (spec.releases[-1] if spec.releases else None)
        if current is not None and current not in spec.releases:
            raise ValueError(f"{spec.name}: current release {current} is not in its releases")
        up = spec.serving
        root = spec.releases_root
        release = current or "empty"
        sites = {
            s.name: Site(
                "Started" if up else "Stopped",
                f"{root}\\{release}" + (f"\\{s.folder}" if s.folder else ""),
                s.app_pool,
                s.checks,
            )
            for s in spec.sites
        }
        pools = {s.app_pool: "Started" if up else "Stopped" for s in spec.sites}
        services = {
            s.name: Service("Running" if up else "Stopped", image_path(root, release, s))
            for s in spec.services
        }
        return cls(
            spec=spec,
            sites=sites,
            pools=pools,
            recycles=dict.fromkeys(pools, 0),
            services=services,
            release_dirs=list(spec.releases),
            packages_dir=packages_dir,
            store_dir=packages_dir,
        )

    @property
    def name(self) -> str:
        return self.spec.name

    def find(self, table: Mapping[str, Any], name: str) -> str | None:
        """The stored spelling of `name` in `table`, matched case-insensitively."""
        return next((k for k in table if k.casefold() == name.casefold()), None)

    def table(self, kind: str) -> dict[str, Any]:
        """Sites, app pools or services by name; kind is "site", "pool" or "service"."""
        tables: dict[str, dict[str, Any]] = {
            "site": self.sites,
            "pool": self.pools,
            "service": self.services,
        }
        return tables[kind]

    def fault(
        self, target: str, mode: str, name: str | None = None, action: str | None = None
    ) -> Fault | None:
        """The `mode` fault on `target` if it applies to this operation; one of its `times`
        is used up."""
        fault = self.faults.get(target)
        if fault is None or fault.mode != mode or not fault.applies(name, action):
            return None
        if fault.times is not None:
            if fault.times <= 1:
                del self.faults[target]
            else:
                self.faults[target] = Fault(**{**vars(fault), "times": fault.times - 1})
        return fault

    def has_fault(
        self, target: str, mode: str, name: str | None = None, action: str | None = None
    ) -> bool:
        return self.fault(target, mode, name, action) is not None

    def fault_mode(self, target: str) -> str | None:
        """The mode of the fault on `target`, if any (looking uses none of its `times`)."""
        fault = self.faults.get(target)
        return fault.mode if fault is not None else None

    def get_state(self, kind: str, name: str) -> str:
        if kind == "site":
            return self.sites[name].state
        if kind == "service":
            return self.services[name].state
        return self.pools[name]

    def set_state(self, kind: str, name: str, state: str) -> None:
        if kind == "site":
            self.sites[name].state = state
        elif kind == "service":
            self.services[name].state = state
        else:
            self.pools[name] = state

    def site_serving(self, name: str) -> bool:
        """A site answers only while it and its app pool are both started."""
        site = self.sites[name]
        return site.state == "Started" and self.pools.get(site.app_pool) == "Started"

    @property
    def serving(self) -> bool:
        return all(self.site_serving(name) for name in self.sites)

    def release_of(self, path: str) -> str | None:
        found = release_of(path, self.spec.releases_root)
        return found if found in self.release_dirs else None

    @property
    def current_release(self) -> str | None:
        """The release the first site serves (what the portal's health reports)."""
        first = next(iter(self.sites.values()), None)
        return None if first is None else self.release_of(first.physical_path)

    def exists(self, path: str) -> bool:
        """Whether a folder or file inside a kept release exists (RELEASE_FOLDERS/FILES)."""
        release = self.release_of(path)
        if release is None:
            return False
        text = path.strip().strip('"').rstrip("\\")
        inside = text[len(self.spec.releases_root.rstrip("\\")) + 1 + len(release) :].strip("\\")
        return inside.casefold() in {p.casefold() for p in (*RELEASE_FOLDERS, *RELEASE_FILES)}

    def snapshot(self, shells_open: int) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            "environment": self.spec.environment,
            "sites": {
                n: {
                    "state": s.state,
                    "physical_path": s.physical_path,
                    "app_pool": s.app_pool,
                    "release": self.release_of(s.physical_path),
                    "serving": self.site_serving(n),
                }
                for n, s in self.sites.items()
            },
            "app_pools": {
                n: {"state": s, "recycles": self.recycles.get(n, 0)} for n, s in self.pools.items()
            },
            "services": {
                n: {
                    "state": s.state,
                    "image_path": s.image_path,
                    "release": self.release_of(s.image_path),
                }
                for n, s in self.services.items()
            },
            "releases_root": self.spec.releases_root,
            "releases": list(self.release_dirs),
            "release_markers": {r: self.markers[r] for r in self.release_dirs if r in self.markers},
            "package_dir": self.spec.package_dir,
            "current_release": self.current_release,
            "serving": self.serving,
            "free_bytes": 0 if "disk" in self.faults else self.spec.free_bytes,
            "faults": {t: f.to_json() for t, f in self.faults.items()},
            "held": list(self.held),
            "winrm": {"requests": self.winrm_requests, "shells_open": shells_open},
            "http_requests": self.http_requests,
        }
