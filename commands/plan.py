"""The plan of a rollback or deploy: what the approval card shows and what the run does.

A plan is pure data. Its hash (sha256 of canonical JSON of the fields that decide what
runs) is what an approval binds to: if the plan built again at execution differs — a new
package, other hosts, another current version — the approval is void.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Literal

from commands.config import Environment

Kind = Literal["rollback", "deploy"]

# Event names of the playbook's notify-deploy.ps1: a rollback starts with RolledBack, a
# forward deploy with Approved (Blue/Green BG-3); both end with Deployed.
START_EVENT: dict[Kind, str] = {"rollback": "RolledBack", "deploy": "Approved"}
END_EVENT = "Deployed"


@dataclass(frozen=True)
class PlanStep:
    key: str
    title: str


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
    site: str
    app_pool: str
    pool_action: str
    service: str
    releases_root: str
    smoke_deadline_s: int
    steps: tuple[PlanStep, ...]

    def binding(self) -> dict[str, object]:
        """The fields an approval binds to (`source` only explains, so it is left out)."""
        data = asdict(self)
        data.pop("source")
        return data

    @property
    def hash(self) -> str:
        canonical = json.dumps(self.binding(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> Plan:
        data = json.loads(text)
        data["hosts"] = tuple(data["hosts"])
        data["steps"] = tuple(PlanStep(**s) for s in data["steps"])
        return Plan(**data)

    @property
    def target_path(self) -> str:
        return f"{self.releases_root}\\{self.target_version}"


def plan_steps(
    kind: Kind, env: Environment, target_version: str, smoke_deadline_s: int
) -> tuple[PlanStep, ...]:
    """Playbook §6 (single-node rollback) as steps; deploy is the same flow forward."""
    pool = env.iis.app_pool
    recycle = env.iis.pool_action == "recycle"
    target_path = f"{env.releases_root}\\{target_version}"
    return (
        PlanStep("precheck", "Pre-check smoke (informational; all refused = service stopped)"),
        PlanStep("notify_start", f"Notify {START_EVENT[kind]} (audit + channel)"),
        PlanStep("stop_site", f"Stop IIS site {env.iis.site}"),
        PlanStep("stop_pool", f"Recycle app pool {pool}" if recycle else f"Stop app pool {pool}"),
        PlanStep("stop_worker", f"Stop Worker service {env.worker.service}"),
        PlanStep(
            "deploy_package",
            f"Deploy package {target_version}: verify SHA-256 on the host; switch to the kept "
            "release folder, or expand it",
        ),
        PlanStep("switch_site", f"Point site {env.iis.site} at {target_path}"),
        PlanStep("start_pool", f"Start app pool {pool} and wait until Started"),
        PlanStep("start_site", f"Start IIS site {env.iis.site} and wait until Started"),
        PlanStep("start_worker", f"Start Worker {env.worker.service} and wait until Running"),
        PlanStep("smoke", f"Smoke until every check passes (deadline {smoke_deadline_s} s)"),
        PlanStep("notify_end", f"Notify {END_EVENT} (audit + channel)"),
        PlanStep("timeline", "Timeline line"),
    )


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
    smoke_deadline_s: int = 120,
) -> Plan:
    return Plan(
        kind=kind,
        environment=environment,
        current_version=current_version,
        target_version=target_version,
        sha256=sha256,
        package=package,
        source=source,
        hosts=tuple(h.name for h in env.hosts),
        site=env.iis.site,
        app_pool=env.iis.app_pool,
        pool_action=env.iis.pool_action,
        service=env.worker.service,
        releases_root=env.releases_root,
        smoke_deadline_s=smoke_deadline_s,
        steps=plan_steps(kind, env, target_version, smoke_deadline_s),
    )
