"""What each plan step does (playbook §6), one small function per step key.

A step returns a short detail for the card and the audit, or raises `StepError` (an
expected failure, said in words) / a RemoteError (host trouble, already in words). The
executor gives each step its deadline; a step acting on several hosts shares it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from adapters.smoke import NO_ANSWER
from commands.config import Environment
from commands.context import Services
from commands.plan import END_EVENT, START_EVENT, Plan
from commands.smoke import run_smoke

# How often the post-deploy smoke is retried while the app warms up.
SMOKE_RETRY_S = 2.0


class StepError(Exception):
    """A step could not do its job; the message says what happened and what to check."""


@dataclass(frozen=True)
class StepContext:
    services: Services
    plan: Plan
    env: Environment
    run_id: str
    request_id: str
    requested_by: str
    approved_by: str
    deadline: float  # time.monotonic() value

    def remaining(self) -> float:
        return max(0.5, self.deadline - time.monotonic())


Notify = Callable[[str], Awaitable[None]]
Step = Callable[[StepContext, Notify], Awaitable[str]]


async def precheck(ctx: StepContext, notify: Notify) -> str:
    results, _ = await run_smoke(ctx.services, ctx.plan.environment)
    passed = sum(r.passed for r in results)
    if all(r.status == NO_ANSWER for r in results):
        return "no check answered: the service is fully stopped (informational)"
    return f"{passed}/{len(results)} checks pass before the change (informational)"


async def _notify(ctx: StepContext, notify: Notify, event: str) -> str:
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
        },
    )
    text = (
        f"**{event}** — {plan.environment}: {plan.current_version or '?'} → "
        f"{plan.target_version} ({ctx.run_id})"
    )
    await notify(text)
    return f"{event} sent"


async def notify_start(ctx: StepContext, notify: Notify) -> str:
    return await _notify(ctx, notify, START_EVENT[ctx.plan.kind])


async def notify_end(ctx: StepContext, notify: Notify) -> str:
    return await _notify(ctx, notify, END_EVENT)


def _control(method: str, what: str, name_of: Callable[[Plan], str]) -> Step:
    """A step that calls one HostOps control (act, wait, verify) on every host in turn.

    `method` is a HostOps method name (start_site, stop_pool, ...); each host gets what is
    left of the step's deadline, so several hosts share it.
    """

    async def step(ctx: StepContext, notify: Notify) -> str:
        name = name_of(ctx.plan)
        done = []
        for host in ctx.env.hosts:
            control = getattr(ctx.services.hosts(host), method)
            state = await control(name, timeout_s=ctx.remaining())
            done.append(f"{host.name}: {state}")
        return f"{what} {name} — " + ", ".join(done)

    return step


def _site(plan: Plan) -> str:
    return plan.site


def _pool(plan: Plan) -> str:
    return plan.app_pool


def _worker(plan: Plan) -> str:
    return plan.service


async def stop_pool(ctx: StepContext, notify: Notify) -> str:
    # Playbook §6 step 2 says "recycle"; some hosts are configured for a full stop instead.
    method = "recycle_pool" if ctx.plan.pool_action == "recycle" else "stop_pool"
    return await _control(method, "app pool", _pool)(ctx, notify)


async def deploy_package(ctx: StepContext, notify: Notify) -> str:
    plan, env = ctx.plan, ctx.env
    protect = tuple(v for v in (plan.current_version, plan.target_version) if v)
    done = []
    for host in env.hosts:
        result = await ctx.services.hosts(host).deploy_release(
            plan.target_version,
            plan.sha256,
            env.host_package_dir,
            plan.releases_root,
            keep=env.keep_releases,
            protect=protect,
            timeout_s=ctx.remaining(),
        )
        how = "expanded (SHA-256 verified on the host)" if result.copied else "kept folder reused"
        done.append(f"{host.name}: {how}")
    return "; ".join(done)


async def switch_site(ctx: StepContext, notify: Notify) -> str:
    plan = ctx.plan
    done = []
    for host in ctx.env.hosts:
        path = await ctx.services.hosts(host).switch_site(
            plan.site, plan.releases_root, plan.target_version, timeout_s=ctx.remaining()
        )
        done.append(f"{host.name}: {path}")
    # The site points at the target now: that is what the history calls current.
    await ctx.services.store.record_deployment(
        plan.environment,
        plan.target_version,
        plan.sha256,
        ctx.services.now(),
        stable=False,
        run_id=ctx.run_id,
    )
    return "physicalPath → " + ", ".join(done)


async def smoke(ctx: StepContext, notify: Notify) -> str:
    attempts = 0
    while True:
        attempts += 1
        results, _ = await run_smoke(ctx.services, ctx.plan.environment)
        if all(r.passed for r in results):
            await ctx.services.store.mark_stable(ctx.plan.environment, ctx.plan.target_version)
            return f"{len(results)}/{len(results)} checks pass (attempt {attempts})"
        if time.monotonic() + SMOKE_RETRY_S >= ctx.deadline:
            failing = ", ".join(f"{r.name}={r.status}" for r in results if not r.passed)
            raise StepError(
                f"smoke still failing at its deadline after {attempts} attempts ({failing}); "
                f"the new version runs but does not answer as expected — check the app log "
                f"on the host, then `smoke {ctx.plan.environment}` or roll back"
            )
        await asyncio.sleep(SMOKE_RETRY_S)


async def timeline(ctx: StepContext, notify: Notify) -> str:
    plan = ctx.plan
    path = await ctx.services.timeline.append(
        f"{plan.kind} {plan.environment} {plan.current_version or '?'} → {plan.target_version} "
        f"deployed, smoke passed ({ctx.run_id}, requested by {ctx.requested_by}, approved by "
        f"{ctx.approved_by})"
    )
    return f"written to {path.name}"


STEPS: dict[str, Step] = {
    "precheck": precheck,
    "notify_start": notify_start,
    "stop_site": _control("stop_site", "site", _site),
    "stop_pool": stop_pool,
    "stop_worker": _control("stop_service", "Worker", _worker),
    "deploy_package": deploy_package,
    "switch_site": switch_site,
    "start_pool": _control("start_pool", "app pool", _pool),
    "start_site": _control("start_site", "site", _site),
    "start_worker": _control("start_service", "Worker", _worker),
    "smoke": smoke,
    "notify_end": notify_end,
    "timeline": timeline,
}


def deadline_for(key: str, env: Environment) -> float:
    t = env.timeouts
    return {
        "precheck": t.precheck_s,
        "stop_site": t.stop_s,
        "stop_pool": t.stop_s,
        "stop_worker": t.stop_s,
        "deploy_package": t.deploy_s,
        "switch_site": t.stop_s,
        "start_pool": t.start_s,
        "start_site": t.start_s,
        "start_worker": t.start_s,
        "smoke": t.smoke_s,
    }.get(key, 30.0)
