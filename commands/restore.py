"""What a restore does on one host, and whether it worked — decided from two reads (pure).

The run keeps each host's pre-run state (read by the preflight, before the first change).
A restore then compares it with what the host reports now:
- `path_changes`: every site and switched service whose path differs goes back to it;
- `state_changes`: what was stopped is stopped again (sites, pools, services), then what
  was running is started again, in the plan's start order (a site's pool first);
- `differences`: after the restore, anything still not as before, in words — empty means
  the host is verified back where it was.
A component in neither an up nor a down state before the run (Paused, Missing...) is left
as it is and said so. Afterwards only a settled state counts: a service still
StartPending is not verified running.
"""

from __future__ import annotations

from dataclasses import dataclass

from adapters.winrm.hoststate import DOWN_STATES, UP_STATES, HostState, same_path
from commands.config import Environment
from commands.drift import component_versions
from commands.plan import Plan, PlanSite, start_sequence


@dataclass(frozen=True)
class StateChange:
    kind: str  # "site" | "pool" | "service"
    name: str
    action: str  # "Start" | "Stop"


SETTLED_UP = frozenset({"Started", "Running"})
SETTLED_DOWN = frozenset({"Stopped"})


def is_up(state: str | None) -> bool | None:
    """True for running states, False for stopped ones, None for anything else."""
    if state in UP_STATES:
        return True
    if state in DOWN_STATES:
        return False
    return None


def settled(state: str | None, up: bool) -> bool:
    """Whether `state` is really up (Started/Running) or really down (Stopped)."""
    return state in (SETTLED_UP if up else SETTLED_DOWN)


def _states(state: HostState, kind: str) -> dict[str, str]:
    if kind == "site":
        return {r.name.casefold(): r.state for r in state.sites}
    if kind == "pool":
        return {r.name.casefold(): r.state for r in state.pools}
    return {r.name.casefold(): r.state for r in state.services}


def path_changes(
    before: HostState, now: HostState, plan: Plan
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(site, path) and (service, ImagePath) pairs to write back; only what differs."""
    sites = []
    for site in plan.sites:
        was, is_now = before.site(site.name), now.site(site.name)
        if (
            was
            and was.physical_path
            and is_now
            and not same_path(was.physical_path, is_now.physical_path)
        ):
            sites.append((site.name, was.physical_path))
    services = []
    for service in plan.services:
        if service.executable is None:
            continue  # the run never switched it
        svc_was, svc_now = before.service(service.name), now.service(service.name)
        if svc_was and svc_was.image_path and svc_now and svc_was.image_path != svc_now.image_path:
            services.append((service.name, svc_was.image_path))
    return sites, services


def state_changes(before: HostState, now: HostState, plan: Plan) -> list[StateChange]:
    """Stops first (sites, pools, services), then starts in the plan's start order."""
    was = {k: _states(before, k) for k in ("site", "pool", "service")}
    cur = {k: _states(now, k) for k in ("site", "pool", "service")}

    def wanted(kind: str, name: str) -> bool | None:
        return is_up(was[kind].get(name.casefold()))

    def there(kind: str, name: str, up: bool) -> bool:
        return settled(cur[kind].get(name.casefold()), up)

    changes: list[StateChange] = []
    for kind, names in (
        ("site", [s.name for s in plan.sites]),
        ("pool", list(plan.pools)),
        ("service", [s.name for s in plan.services]),
    ):
        for name in names:
            if wanted(kind, name) is False and not there(kind, name, up=False):
                changes.append(StateChange(kind, name, "Stop"))
    started: set[str] = set()
    for part in start_sequence(plan.sites, plan.services):
        steps: list[tuple[str, str]] = []
        if isinstance(part, PlanSite):
            if part.app_pool not in started:
                started.add(part.app_pool)
                steps.append(("pool", part.app_pool))
            steps.append(("site", part.name))
        else:
            steps.append(("service", part.name))
        for kind, name in steps:
            if wanted(kind, name) is True and not there(kind, name, up=True):
                changes.append(StateChange(kind, name, "Start"))
    return changes


def differences(before: HostState, now: HostState, plan: Plan) -> list[str]:
    """What is still not as before the run, in words (empty: verified)."""
    out: list[str] = []
    sites, services = path_changes(before, now, plan)
    for name, path in sites:
        found = now.site(name)
        out.append(f"site {name} points at {found.physical_path if found else '?'}, was {path}")
    for name, image in services:
        svc = now.service(name)
        out.append(f"service {name} runs {svc.image_path if svc else '?'}, was {image}")
    for kind, names in (
        ("site", [s.name for s in plan.sites]),
        ("pool", list(plan.pools)),
        ("service", [s.name for s in plan.services]),
    ):
        was, cur = _states(before, kind), _states(now, kind)
        for name in names:
            then, current = was.get(name.casefold()), cur.get(name.casefold())
            up = is_up(then)
            if up is None:
                continue  # neither up nor down before the run: not restored, not compared
            if not settled(current, up):
                out.append(f"{_word(kind)} {name} is {current or 'unreadable'}, was {then}")
    return out


def not_restorable(before: HostState, plan: Plan) -> list[str]:
    """Components whose pre-run state a restore leaves alone (neither running nor stopped)."""
    out = []
    for kind, names in (
        ("site", [s.name for s in plan.sites]),
        ("pool", list(plan.pools)),
        ("service", [s.name for s in plan.services]),
    ):
        states = _states(before, kind)
        for name in names:
            state = states.get(name.casefold())
            if is_up(state) is None:
                out.append(f"{_word(kind)} {name} was {state or 'unreadable'}: left as it is")
    return out


def _word(kind: str) -> str:
    return {"site": "site", "pool": "app pool", "service": "service"}[kind]


def host_words(
    env: Environment,
    plan: Plan,
    host: str,
    now: HostState | None,
    before: HostState | None,
    *,
    changed: bool,
    error: str | None = None,
    kept: bool = False,
) -> str:
    """One host in words, read just now: every component's state and release, and whether
    that is the pre-run state — what the final card, a failed run's alert and the message
    after a restart say. `changed`: whether the run may have changed the host."""
    if now is None:
        return f"{host}: unreadable now ({error or 'no answer'}) — check it by hand"
    parts = ", ".join(f"{v.name} {v.state} {v.label}" for v in component_versions(now, env))
    if before is None:
        verdict = (
            "as before the run: it changed nothing"
            if not changed
            else "no pre-run state was kept to compare with"
        )
    elif kept:
        verdict = "changed by the run, and verified by its smoke"
    else:
        diffs = differences(before, now, plan)
        verdict = (
            "NOT as before the run: " + "; ".join(diffs)
            if diffs
            else "as before the run (verified: read back just now)"
        )
    return f"{host}: {parts} — {verdict}"
