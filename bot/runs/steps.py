"""What each forward plan step does (playbook §6), one small function per step action.

A step returns a short detail for the card and the audit, or raises `StepError` (an
expected failure, said in words, naming every host) / a RemoteError. Steps that act on
hosts act on all of them at once, each host with the step's whole deadline (farm.py).
The preflight keeps each host's state in `RunMemory.before`: what a restore puts back.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from adapters.smoke import NO_ANSWER, CheckResult
from adapters.store.rows import HostSwitch
from adapters.winrm.hoststate import (
    ControlResult,
    HostState,
    Preflight,
    ScriptRan,
    Switched,
    Synced,
    release_of,
)
from bot.runs.farm import HostResult, StepError, on_hosts, verdict
from commands.config import Environment, Host
from commands.config.scripts import HOSTS
from commands.context import Services
from commands.dr.engine import open_run_folder, result_record, run_dr_tests
from commands.dr.judge import DrResult, worst
from commands.dr.matrix import MATRIX, DrTest
from commands.plan import END_EVENT, START_EVENT, Plan, PlanScript
from commands.smoke import run_smoke

# How often the post-deploy smoke is retried while the app warms up.
SMOKE_RETRY_S = 2.0
MB = 2**20

Notify = Callable[[str], Awaitable[None]]


@dataclass
class RunMemory:
    """What the run learns as it goes, for the restore and the final card."""

    before: dict[str, HostState] = field(default_factory=dict)  # host → pre-run state
    touched: bool = False  # a step that changes hosts has started
    verified: bool = False  # the target's smoke passed: the change is done
    precheck_passed: bool | None = None
    after: dict[str, HostState] = field(default_factory=dict)  # read by the restore's verify


@dataclass(frozen=True)
class StepContext:
    services: Services
    plan: Plan
    env: Environment
    run_id: str
    request_id: str
    requested_by: str
    approved_by: str
    deadline_s: float  # each host's, for this step
    memory: RunMemory
    notify: Notify

    @property
    def hosts(self) -> tuple[Host, ...]:
        """The configured hosts this plan runs on (excluded ones are left alone)."""
        return tuple(h for h in self.env.hosts if h.name in self.plan.hosts)


Step = Callable[[StepContext, str], Awaitable[str]]


async def preflight(ctx: StepContext, target: str) -> str:
    plan, env = ctx.plan, ctx.env
    required = plan.expanded_bytes + env.disk_margin_mb * MB

    async def check(host: Host) -> Preflight:
        return await ctx.services.hosts(host).preflight(
            [s.name for s in plan.sites],
            list(plan.pools),
            [s.name for s in plan.services],
            plan.releases_root,
            version=plan.target_version,
            sha256=plan.sha256,
            package_dir=env.host_package_dir,
            required_bytes=required,
            timeout_s=ctx.deadline_s,
        )

    results = await on_hosts(ctx.hosts, ctx.deadline_s, check)
    problems = [
        f"{r.host}: {r.error}" if r.value is None else f"{r.host}: {'; '.join(r.value.problems)}"
        for r in results
        if r.value is None or r.value.problems
    ]
    if problems:
        ready = [r.host for r in results if r.value is not None and not r.value.problems]
        tail = f" (ready: {', '.join(ready)})" if ready else ""
        raise StepError(
            "Preflight found problems; nothing was stopped or changed. "
            + " | ".join(problems)
            + tail
        )
    found = {r.host: r.value for r in results if r.value is not None}
    ctx.memory.before = {host: p.state for host, p in found.items()}
    pre_state = {host: state.to_json() for host, state in ctx.memory.before.items()}
    await ctx.services.store.set_pre_state(ctx.run_id, json.dumps(pre_state))

    def words(p: Preflight) -> str:
        if p.release_whole:
            return f"ready (release {plan.target_version} kept whole)"
        free = f"{p.free_bytes // MB} MB free" if p.free_bytes is not None else "free disk ?"
        return f"ready (package verified, {free}, {required // MB} MB needed)"

    return verdict(results, words)


async def sync_package(ctx: StepContext, target: str) -> str:
    """The run's package onto every host's package folder that lacks it (or holds another
    copy), from the store as the hosts reach it; each copy hashed on its host before it is
    renamed in. All hosts at once, each with its own deadline; nothing else is touched."""
    plan, env = ctx.plan, ctx.env
    source = env.package_source_dir
    if source is None:  # the plan has this step only when it is set
        raise StepError("package_source_dir is not configured: a bug in the bot")

    async def act(host: Host) -> Synced:
        return await ctx.services.hosts(host).sync_package(
            plan.target_version,
            plan.sha256,
            source,
            env.host_package_dir,
            timeout_s=ctx.deadline_s,
        )

    def words(done: Synced) -> str:
        if not done.copied:
            return "already there (SHA-256 matches)"
        return "replaced a differing copy (verified)" if done.replaced else "copied (verified)"

    return verdict(await on_hosts(ctx.hosts, ctx.deadline_s, act), words)


async def precheck(ctx: StepContext, target: str) -> str:
    results, _ = await run_smoke(ctx.services, ctx.plan.environment)
    passed = sum(r.passed for r in results)
    ctx.memory.precheck_passed = passed == len(results)
    if all(r.status == NO_ANSWER for r in results):
        return "no check answered: the service is fully stopped (informational)"
    return f"{passed}/{len(results)} checks pass before the change (informational)"


async def _notify(ctx: StepContext, event: str) -> str:
    plan = ctx.plan
    await ctx.services.audit.append(
        event,
        environment=plan.environment,
        request_id=ctx.request_id,
        run_id=ctx.run_id,
        actor={"name": ctx.approved_by, "aad_object_id": None},
        status="notified",
        detail={
            "from": plan.current_version,
            "to": plan.target_version,
            "sha256": plan.sha256,
            "hosts": list(plan.hosts),
            "excluded": [e.host for e in plan.excluded],
        },
    )
    # Queued, never awaited: chat trouble must not fail or delay the run (the audit above
    # is the record).
    await ctx.notify(
        f"**{event}** — {plan.environment}: {plan.current_version or '?'} → "
        f"{plan.target_version} ({ctx.run_id})"
    )
    ran = [await run_script(ctx, script) for script in plan.scripts_at("notify", event)]
    return f"{event} recorded; message queued" + "".join(f"; {r}" for r in ran)


async def run_script(ctx: StepContext, script: PlanScript) -> str:
    """One of the team's scripts, its bound parameters splatted, on every host of the plan
    at once (each its own deadline) or on its runner host; a non-zero exit, a timeout or an
    unreachable host fails the step, with the last lines of its output."""
    parameters = dict(script.parameters)

    async def act(host: Host) -> ScriptRan:
        ran = await ctx.services.hosts(host).run_script(
            script.path, parameters, timeout_s=script.timeout_s
        )
        if ran.ended == "timeout":
            raise StepError(
                f"{script.command} did not finish within {script.timeout_s:g} s and was "
                f"stopped; its output ends: {ran.last_lines() or '(none)'}"
            )
        if ran.exit_code != 0:
            raise StepError(
                f"{script.command} exited {ran.exit_code}: {ran.last_lines() or '(no output)'}"
            )
        return ran

    def words(ran: ScriptRan) -> str:
        return f"{script.name} exit 0 ({ran.duration_ms} ms): {ran.last_lines(1)}"

    if script.runs_on == HOSTS:
        return verdict(await on_hosts(ctx.hosts, script.timeout_s + 1, act), words)
    runner = ctx.services.config.runner_host(script.runs_on)
    if runner is None:  # the config refuses an unknown runs_on; a reload may not have
        raise StepError(f"runner host {script.runs_on} of script {script.name} is not configured")
    return verdict(await on_hosts([runner], script.timeout_s + 1, act), words)


async def script(ctx: StepContext, target: str) -> str:
    found = next((p for p in ctx.plan.scripts if p.name == target and p.at != "notify"), None)
    if found is None:
        raise StepError(f"the plan has no script step {target}: a bug in the bot")
    return await run_script(ctx, found)


async def notify_start(ctx: StepContext, target: str) -> str:
    return await _notify(ctx, START_EVENT[ctx.plan.kind])


async def notify_end(ctx: StepContext, target: str) -> str:
    return await _notify(ctx, END_EVENT)


def _control(method: str, what: str) -> Step:
    """A step that calls one HostOps control (act, wait, verify) on every host at once."""

    async def step(ctx: StepContext, target: str) -> str:
        async def act(host: Host) -> ControlResult:
            control = getattr(ctx.services.hosts(host), method)
            result: ControlResult = await control(target, timeout_s=ctx.deadline_s)
            return result

        results = await on_hosts(ctx.hosts, ctx.deadline_s, act)
        return f"{what} {target} — " + verdict(results, lambda r: r.words)

    return step


async def deploy_package(ctx: StepContext, target: str) -> str:
    plan, env = ctx.plan, ctx.env
    # Never prune what any component ran before the run: a restore needs it.
    used = {plan.current_version, plan.target_version}
    for state in ctx.memory.before.values():
        used |= {release_of(s.physical_path, plan.releases_root) for s in state.sites}
        used |= {release_of(s.image_path, plan.releases_root) for s in state.services}
    protect = tuple(sorted(v for v in used if v))

    async def act(host: Host) -> str:
        result = await ctx.services.hosts(host).deploy_release(
            plan.target_version,
            plan.sha256,
            env.host_package_dir,
            plan.releases_root,
            keep=env.keep_releases,
            protect=protect,
            timeout_s=ctx.deadline_s,
        )
        return "expanded (SHA-256 verified on the host)" if result.copied else "kept folder reused"

    return verdict(await on_hosts(ctx.hosts, ctx.deadline_s, act), str)


async def switch(ctx: StepContext, target: str) -> str:
    plan = ctx.plan
    sites = [(s.name, plan.site_path(s, plan.target_version)) for s in plan.sites]
    images = [
        (s.name, image)
        for s in plan.services
        if (image := plan.image_path(s, plan.target_version)) is not None
    ]

    async def act(host: Host) -> tuple[Switched, ...]:
        return await ctx.services.hosts(host).switch_release(
            sites, images, releases_root=plan.releases_root, timeout_s=ctx.deadline_s
        )

    results = await on_hosts(ctx.hosts, ctx.deadline_s, act)
    await record_switches(ctx, results_by_host(results), "switch")
    detail = verdict(results, lambda done: f"{sum(s.changed for s in done)} switched, read back")
    # Every component points at the target now: that is what the history calls current.
    await ctx.services.store.record_deployment(
        plan.environment,
        plan.target_version,
        plan.sha256,
        ctx.services.now(),
        stable=False,
        run_id=ctx.run_id,
    )
    return f"→ {plan.target_path}: {detail}"


def results_by_host(
    results: list[HostResult[tuple[Switched, ...]]],
) -> dict[str, tuple[Switched, ...]]:
    return {r.host: r.value for r in results if r.value is not None}


async def record_switches(
    ctx: StepContext, switched: dict[str, tuple[Switched, ...]], reason: str
) -> None:
    """The per-host history: what each component of each host pointed at, and now does."""
    now = ctx.services.now()
    await ctx.services.store.record_switches(
        [
            HostSwitch(
                ctx.run_id, ctx.plan.environment, host, s.kind, s.name, s.before, s.after,
                reason, now,
            )
            for host, done in switched.items()
            for s in done
            if s.changed
        ]
    )  # fmt: skip


async def smoke_until_passing(
    ctx: StepContext, *, once: bool = False
) -> tuple[list[CheckResult], int]:
    """The environment's smoke, again every SMOKE_RETRY_S while the app warms up, until every
    check passes or the step's deadline comes (or once): the last results, the attempts."""
    deadline = time.monotonic() + ctx.deadline_s
    attempts = 0
    while True:
        attempts += 1
        results, _ = await run_smoke(ctx.services, ctx.plan.environment)
        if once or all(r.passed for r in results):
            return results, attempts
        if time.monotonic() + SMOKE_RETRY_S >= deadline:
            return results, attempts
        await asyncio.sleep(SMOKE_RETRY_S)


def failing_words(results: list[CheckResult]) -> str:
    return ", ".join(f"{r.name}={r.status}" for r in results if not r.passed)


async def smoke(ctx: StepContext, target: str) -> str:
    results, attempts = await smoke_until_passing(ctx)
    if not all(r.passed for r in results):
        raise StepError(
            f"smoke still failing at its deadline after {attempts} attempts "
            f"({failing_words(results)}); the new version runs but does not answer as expected"
        )
    if not ctx.plan.gates:  # else the gates verify the change
        await _verified(ctx)
    return f"{len(results)}/{len(results)} checks pass (attempt {attempts})"


async def _verified(ctx: StepContext) -> None:
    await ctx.services.store.mark_stable(ctx.plan.environment, ctx.plan.target_version)
    ctx.memory.verified = True


# How often a running gate looks for a `cancel` of its run (the run's cancel is in the store).
GATE_CANCEL_POLL_S = 1.0


async def gates(ctx: StepContext, target: str) -> str:
    """The plan's DR tests against the new version; every one must pass (judged from its
    report, as `check` does). Their logs and reports go to a DR run folder of their own."""
    plan, services = ctx.plan, ctx.services
    tests = tuple(t for t in MATRIX if t.key in plan.gates)
    requested_by = {"name": ctx.approved_by, "aad_object_id": None}
    folder = open_run_folder(
        services, services.checks.dr_dir, plan.environment, tests, requested_by
    )
    folder.update_manifest(gate_of=ctx.run_id)
    cancel = asyncio.Event()
    watcher = asyncio.create_task(_watch_cancel(ctx, cancel))
    try:
        results = await run_dr_tests(
            services, plan.environment, tests, folder, observer=_GateAudit(ctx), cancel=cancel
        )
    finally:
        watcher.cancel()
    words = "; ".join(_gate_words(r) for r in results)
    if not all(r.passed for r in results):
        raise StepError(f"a DR gate did not pass: {words}. Reports: {folder.path}")
    await _verified(ctx)
    return f"{words} ({folder.run_id})"


def _gate_words(result: DrResult) -> str:
    parts = [p for p in (result.counts, worst(result.findings) if result.findings else "") if p]
    parts += [p for p in (result.why,) if p and not result.passed]
    return f"{result.test.id} {result.outcome}" + (f" ({', '.join(parts)})" if parts else "")


async def _watch_cancel(ctx: StepContext, cancel: asyncio.Event) -> None:
    while not cancel.is_set():
        await asyncio.sleep(GATE_CANCEL_POLL_S)
        run = await ctx.services.store.get_run(ctx.run_id)
        if run is not None and run.cancel_requested_by:
            cancel.set()


class _GateAudit:
    """One `DrTest` audit line per gate as it ends, under the run's id."""

    def __init__(self, ctx: StepContext) -> None:
        self._ctx = ctx

    async def started(self, test: DrTest) -> None:
        return None

    async def finished(self, result: DrResult) -> None:
        ctx = self._ctx
        await ctx.services.audit.append(
            "DrTest",
            environment=ctx.plan.environment,
            request_id=ctx.request_id,
            run_id=ctx.run_id,
            actor={"name": ctx.approved_by, "aad_object_id": None},
            step=result.test.id,
            status=result.outcome,
            duration_ms=int(result.duration_s * 1000),
            detail=result_record(result),
        )


def gates_deadline_s(env: Environment) -> float:
    """The gates step's bound: every suite's own timeout (each kills its run at it) and the
    smoke checks', plus a margin; a suite's own timeout always comes first."""
    total = sum(c.timeout_s for c in env.smoke) + 30.0
    for key in env.gates:
        runner = env.dr.runner(key) if env.dr is not None else None
        total += runner.timeout_s + 30.0 if runner is not None else 0.0
    return total


async def timeline(ctx: StepContext, target: str) -> str:
    plan = ctx.plan
    path = await ctx.services.timeline.append(
        f"{plan.kind} {plan.environment} {plan.current_version or '?'} → {plan.target_version} "
        f"deployed, smoke passed ({ctx.run_id}, requested by {ctx.requested_by}, approved by "
        f"{ctx.approved_by})"
    )
    return f"written to {path.name}"


STEPS: dict[str, Step] = {
    "sync_package": sync_package,
    "preflight": preflight,
    "precheck": precheck,
    "notify_start": notify_start,
    "stop_site": _control("stop_site", "site"),
    "stop_pool": _control("stop_pool", "app pool"),
    "recycle_pool": _control("recycle_pool", "app pool"),
    "stop_service": _control("stop_service", "service"),
    "deploy_package": deploy_package,
    "switch": switch,
    "script": script,
    "start_pool": _control("start_pool", "app pool"),
    "start_site": _control("start_site", "site"),
    "start_service": _control("start_service", "service"),
    "smoke": smoke,
    "gates": gates,
    "notify_end": notify_end,
    "timeline": timeline,
}


# Which timeout each step gets (each host its own); the records have a fixed bound.
DEADLINES: dict[str, str] = {
    "sync_package": "sync_s",
    "preflight": "preflight_s",
    "precheck": "precheck_s",
    "stop_site": "stop_s",
    "stop_pool": "stop_s",
    "recycle_pool": "stop_s",
    "stop_service": "stop_s",
    "deploy_package": "deploy_s",
    "switch": "stop_s",
    "start_pool": "start_s",
    "start_site": "start_s",
    "start_service": "start_s",
    "smoke": "smoke_s",
    "restore_switch": "restore_s",
    "restore_states": "restore_s",
    "restore_verify": "restore_s",
    "restore_smoke": "restore_s",
}
RECORD_S = 30.0  # notify and timeline: the audit and a file, no host


def deadline_for(action: str, env: Environment, target: str = "") -> float:
    """Each host's deadline for one step (seconds)."""
    if action == "gates":
        return gates_deadline_s(env)
    # A script's own timeout comes first (its host stops it there), then the step's.
    if action == "script":
        found = next((s for s in env.scripts if s.name == target), None)
        return (found.timeout_s if found else RECORD_S) + 5.0
    if action in ("notify_start", "notify_end"):
        return RECORD_S + sum(s.timeout_s + 5.0 for s in env.scripts if s.at == "notify")
    field = DEADLINES.get(action)
    return RECORD_S if field is None else float(getattr(env.timeouts, field))
