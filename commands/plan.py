"""The plan of a rollback or deploy: what the approval card shows and what the run does.

A plan is pure data. Its hash (sha256 of canonical JSON of the fields that decide what
runs) is what an approval binds to: if the plan built again at execution differs — a new
package, other hosts, another current version, a host no longer excluded — the approval
is void. It holds the whole release: every site (with its app pool and folder) and every
service of the environment, the hosts it runs on and the ones excluded (with why), and
two step lists: the forward steps (playbook §6, Preflight first) and the restore steps run
when it fails or is cancelled after a change (unless `on_failure` is "stop").
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from commands.config import Environment
from commands.config.scripts import HOSTS
from commands.dr.matrix import MATRIX

Kind = Literal["rollback", "deploy"]

# Event names of the playbook's notify-deploy.ps1: a rollback starts with RolledBack, a
# forward deploy with Approved (Blue/Green BG-3); both end with Deployed.
START_EVENT: dict[Kind, str] = {"rollback": "RolledBack", "deploy": "Approved"}
END_EVENT = "Deployed"

# Step actions that change a host; a run that started one has something to restore.
CHANGING_ACTIONS = frozenset(
    {
        "stop_site",
        "stop_pool",
        "recycle_pool",
        "stop_service",
        "deploy_package",
        "switch",
        "script",
        "start_pool",
        "start_site",
        "start_service",
    }
)


@dataclass(frozen=True)
class PlanStep:
    """One step: `action` says what it does (bot/runs/steps.py), `target` on what."""

    key: str
    title: str
    action: str = ""
    target: str = ""

    @staticmethod
    def of(action: str, title: str, target: str = "") -> PlanStep:
        return PlanStep(f"{action}:{target}" if target else action, title, action, target)

    @property
    def changes_hosts(self) -> bool:
        return (self.action or self.key) in CHANGING_ACTIONS


@dataclass(frozen=True)
class PlanSite:
    name: str
    app_pool: str
    folder: str  # inside the release; "" = its root
    pool_action: str
    start_order: int


@dataclass(frozen=True)
class PlanService:
    name: str
    executable: str | None  # inside the release; None = binaries not switched
    arguments: str
    start_order: int


ScriptValue = str | int | bool


@dataclass(frozen=True)
class PlanScript:
    """One of the team's scripts with its parameters bound for this plan (`at` = where it
    runs; a notify script appears once per notify step, `event` being that step's)."""

    name: str
    path: str
    at: str
    runs_on: str
    timeout_s: float
    parameters: tuple[tuple[str, ScriptValue], ...]
    event: str = ""

    @property
    def command(self) -> str:
        """As an operator would type it: `notify-deploy.ps1 -EventType RolledBack ...`."""
        words = [self.path.rsplit("\\", 1)[-1]]
        for name, value in self.parameters:
            if value is True:
                words.append(f"-{name}")
            elif value is False:
                words.append(f"-{name}:$false")
            elif isinstance(value, str) and (not value or " " in value):
                words.append(f"-{name} '{value}'")
            else:
                words.append(f"-{name} {value}")
        where = "on every host" if self.runs_on == HOSTS else f"on {self.runs_on}"
        return f"{' '.join(words)} ({where})"


@dataclass(frozen=True)
class Exclusion:
    """A host the run leaves alone, and why (unreachable, or excluded by the requester)."""

    host: str
    reason: str


@dataclass(frozen=True)
class Plan:
    kind: Kind
    environment: str
    current_version: str | None
    target_version: str
    sha256: str
    package: str
    source: str  # why this target: "requested", "deployment history", ...
    hosts: tuple[str, ...]
    releases_root: str
    smoke_deadline_s: int
    steps: tuple[PlanStep, ...]
    sites: tuple[PlanSite, ...] = ()
    services: tuple[PlanService, ...] = ()
    excluded: tuple[Exclusion, ...] = ()
    expanded_bytes: int = 0  # the package's uncompressed size (preflight's disk check)
    on_failure: str = "restore"
    restore_steps: tuple[PlanStep, ...] = field(default=())
    # DR tests (matrix keys, matrix order) run after smoke; all must pass.
    gates: tuple[str, ...] = ()
    # The team's scripts, bound (their steps are in `steps`; notify ones run in the notify steps).
    scripts: tuple[PlanScript, ...] = ()

    def binding(self) -> dict[str, object]:
        """The fields an approval binds to: `source` only explains, and of an exclusion only
        the host counts (its error text may differ from one read to the next)."""
        data = asdict(self)
        data.pop("source")
        data["excluded"] = sorted(e.host for e in self.excluded)
        return data

    @property
    def hash(self) -> str:
        canonical = json.dumps(self.binding(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> Plan:
        data: dict[str, Any] = json.loads(text)
        if "sites" not in data:
            data = _from_single_component(data)
        data["hosts"] = tuple(data["hosts"])
        data["steps"] = tuple(_step(s) for s in data["steps"])
        data["restore_steps"] = tuple(_step(s) for s in data.get("restore_steps", ()))
        data["sites"] = tuple(PlanSite(**s) for s in data["sites"])
        data["services"] = tuple(PlanService(**s) for s in data["services"])
        data["excluded"] = tuple(Exclusion(**e) for e in data.get("excluded", ()))
        data["gates"] = tuple(data.get("gates", ()))
        data["scripts"] = tuple(
            PlanScript(**{**p, "parameters": tuple((n, v) for n, v in p["parameters"])})
            for p in data.get("scripts", ())
        )
        return Plan(**data)

    def scripts_at(self, at: str, event: str = "") -> tuple[PlanScript, ...]:
        return tuple(p for p in self.scripts if p.at == at and p.event == event)

    @property
    def target_path(self) -> str:
        return f"{self.releases_root}\\{self.target_version}"

    @property
    def pools(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.app_pool for s in self.sites))

    def site_path(self, site: PlanSite, version: str) -> str:
        """Where `site` points when it runs `version`."""
        base = f"{self.releases_root}\\{version}"
        return f"{base}\\{site.folder}" if site.folder else base

    def image_path(self, service: PlanService, version: str) -> str | None:
        """The ImagePath of `service` running `version`, quoted; None when not switched."""
        if service.executable is None:
            return None
        exe = f'"{self.releases_root}\\{version}\\{service.executable}"'
        return f"{exe} {service.arguments}" if service.arguments else exe


def _step(data: dict[str, Any]) -> PlanStep:
    key = str(data["key"])
    action = str(data.get("action") or key.split(":", 1)[0])
    return PlanStep(key, str(data["title"]), action, str(data.get("target", "")))


def _from_single_component(data: dict[str, Any]) -> dict[str, Any]:
    """A plan stored by a bot before components existed (one site, one service): readable,
    so its card can still be shown; its hash differs, so approving it voids it."""
    out = {k: v for k, v in data.items() if k not in ("site", "app_pool", "pool_action", "service")}
    out["sites"] = [
        {
            "name": data["site"],
            "app_pool": data["app_pool"],
            "folder": "",
            "pool_action": data["pool_action"],
            "start_order": 1,
        }
    ]
    out["services"] = [
        {"name": data["service"], "executable": None, "arguments": "", "start_order": 2}
    ]
    return out


def components_of(env: Environment) -> tuple[tuple[PlanSite, ...], tuple[PlanService, ...]]:
    parts = env.components
    sites = tuple(
        PlanSite(s.name, s.app_pool, s.folder, s.pool_action, s.start_order) for s in parts.sites
    )
    services = tuple(
        PlanService(s.name, s.executable, s.arguments, s.start_order) for s in parts.services
    )
    return sites, services


def start_sequence(
    sites: tuple[PlanSite, ...], services: tuple[PlanService, ...]
) -> list[PlanSite | PlanService]:
    """Start order: by `start_order`, sites before services at the same order, then as
    configured (default: every site, then every service — services last, as the playbook)."""
    ranked: list[tuple[int, int, int, PlanSite | PlanService]] = [
        (s.start_order, 0, i, s) for i, s in enumerate(sites)
    ]
    ranked += [(s.start_order, 1, i, s) for i, s in enumerate(services)]
    return [item for *_, item in sorted(ranked, key=lambda r: r[:3])]


def plan_steps(
    kind: Kind,
    sites: tuple[PlanSite, ...],
    services: tuple[PlanService, ...],
    releases_root: str,
    target_version: str,
    smoke_deadline_s: int,
    gates: tuple[str, ...] = (),
    scripts: tuple[PlanScript, ...] = (),
    sync_from: str | None = None,
) -> tuple[PlanStep, ...]:
    """Playbook §6 for the whole release, Preflight first (only a package sync, which touches
    no component, may come before it); deploy is the same flow forward.

    Stop order: sites, pools, services; start order: `start_sequence` (a site's pool
    before the site). Every step acts on every host of the plan at once.
    """
    target_path = f"{releases_root}\\{target_version}"
    pools = dict.fromkeys(s.app_pool for s in sites)
    steps = []
    if sync_from is not None:
        # Before the preflight, which then verifies every host's copy: it writes only the
        # hosts' package folders (a verified copy renamed in), never a site or a service.
        steps.append(
            PlanStep.of(
                "sync_package",
                f"Sync package {target_version} from {sync_from} to every host's package "
                "folder that lacks it, SHA-256 checked on the host",
            )
        )
    steps += [
        PlanStep.of(
            "preflight",
            "Preflight on every host, read-only: reachable, components exist, release whole or "
            "package there with the right SHA-256, free disk",
        ),
        PlanStep.of("precheck", "Pre-check smoke (informational; all refused = service stopped)"),
        _notify_step("notify_start", START_EVENT[kind], scripts),
    ]
    steps += _script_steps(scripts, "before_stop")
    steps += [PlanStep.of("stop_site", f"Stop IIS site {s.name}", s.name) for s in sites]
    for pool in pools:
        if next(s.pool_action for s in sites if s.app_pool == pool) == "recycle":
            steps.append(PlanStep.of("recycle_pool", f"Recycle app pool {pool}", pool))
        else:
            steps.append(PlanStep.of("stop_pool", f"Stop app pool {pool}", pool))
    steps += [PlanStep.of("stop_service", f"Stop service {s.name}", s.name) for s in services]
    steps.append(
        PlanStep.of(
            "deploy_package",
            f"Deploy package {target_version}: verify SHA-256 on the host; switch to the kept "
            "release folder, or expand it",
        )
    )
    switched = [s.name for s in sites] + [s.name for s in services if s.executable is not None]
    steps.append(
        PlanStep.of(
            "switch",
            f"Switch {', '.join(switched)} to {target_path} and read each back",
        )
    )
    steps += _script_steps(scripts, "after_switch")
    started: set[str] = set()
    for part in start_sequence(sites, services):
        if isinstance(part, PlanSite):
            if part.app_pool not in started:
                started.add(part.app_pool)
                title = f"Start app pool {part.app_pool} and wait until Started"
                steps.append(PlanStep.of("start_pool", title, part.app_pool))
            title = f"Start IIS site {part.name} and wait until Started"
            steps.append(PlanStep.of("start_site", title, part.name))
        else:
            title = f"Start service {part.name} and wait until Running"
            steps.append(PlanStep.of("start_service", title, part.name))
    steps += _script_steps(scripts, "after_start")
    steps += [
        PlanStep.of("smoke", f"Smoke until every check passes (deadline {smoke_deadline_s} s)"),
    ]
    if gates:
        steps.append(PlanStep.of("gates", f"DR gates {', '.join(gate_ids(gates))}: each must pass"))
    steps += [
        _notify_step("notify_end", END_EVENT, scripts),
        PlanStep.of("timeline", "Timeline line"),
    ]
    return tuple(steps)


RESTORE_STEPS: tuple[PlanStep, ...] = (
    PlanStep.of("restore_switch", "Restore: switch every component back to its pre-run path"),
    PlanStep.of(
        "restore_states", "Restore: every site, pool and service back to its pre-run state"
    ),
    PlanStep.of(
        "restore_verify", "Restore: read every host back and compare with the pre-run state"
    ),
    PlanStep.of("restore_smoke", "Restore: smoke (must pass if it passed before the run)"),
)


def _notify_step(action: str, event: str, scripts: tuple[PlanScript, ...]) -> PlanStep:
    calls = [p.command for p in scripts if p.at == "notify" and p.event == event]
    return PlanStep.of(
        action, f"Notify {event} (audit + channel{''.join('; ' + c for c in calls)})"
    )


def _script_steps(scripts: tuple[PlanScript, ...], at: str) -> list[PlanStep]:
    return [PlanStep.of("script", f"Run {p.command}", p.name) for p in scripts if p.at == at]


class ScriptBindError(ValueError):
    """A script's parameter, bound for this plan, breaks its type or pattern."""


def bind_scripts(
    env: Environment,
    kind: Kind,
    environment: str,
    current_version: str | None,
    target_version: str,
) -> tuple[PlanScript, ...]:
    """Every configured script with its parameters bound (ScriptBindError names the one that
    does not fit); a notify script once per notify event."""
    out: list[PlanScript] = []
    for script in env.scripts:
        events = (START_EVENT[kind], END_EVENT) if script.at == "notify" else ("",)
        for event in events:
            values = {
                "environment": environment,
                "target_version": target_version,
                "current_version": current_version or "",
                "kind": kind,
                "event": event,
            }
            try:
                bound = tuple((p.name, p.bind(values)) for p in script.parameters)
            except ValueError as exc:
                raise ScriptBindError(f"script {script.name}: {exc}") from exc
            out.append(
                PlanScript(
                    script.name, script.path, script.at, script.runs_on, script.timeout_s,
                    bound, event,
                )
            )  # fmt: skip
    return tuple(out)


def gate_ids(gates: tuple[str, ...]) -> list[str]:
    """`("smoke", "e2e")` → `["DR-SMOKE", "DR-E2E"]`."""
    return [t.id for t in MATRIX if t.key in gates]


def build_plan(
    kind: Kind,
    environment: str,
    env: Environment,
    *,
    current_version: str | None,
    target_version: str,
    sha256: str,
    package: str,
    source: str,
    hosts: tuple[str, ...] | None = None,
    excluded: tuple[Exclusion, ...] = (),
    expanded_bytes: int = 0,
    smoke_deadline_s: int = 120,
) -> Plan:
    sites, services = components_of(env)
    gates = tuple(t.key for t in MATRIX if t.key in env.gates)
    scripts = bind_scripts(env, kind, environment, current_version, target_version)
    return Plan(
        kind=kind,
        environment=environment,
        current_version=current_version,
        target_version=target_version,
        sha256=sha256,
        package=package,
        source=source,
        hosts=hosts if hosts is not None else tuple(h.name for h in env.hosts),
        releases_root=env.releases_root,
        smoke_deadline_s=smoke_deadline_s,
        steps=plan_steps(
            kind,
            sites,
            services,
            env.releases_root,
            target_version,
            smoke_deadline_s,
            gates,
            scripts,
            env.package_source_dir,
        ),
        sites=sites,
        services=services,
        excluded=excluded,
        expanded_bytes=expanded_bytes,
        on_failure=env.on_failure,
        restore_steps=RESTORE_STEPS if env.on_failure == "restore" else (),
        gates=gates,
        scripts=scripts,
    )
