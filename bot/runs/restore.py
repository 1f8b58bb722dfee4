"""The restore steps: put every host back as the preflight found it, and prove it.

Run after a failure or a cancel, when the run had changed something and the environment
says `on_failure = "restore"`. Every restore step runs, on every host at once, even when
an earlier one failed on some host — the verify step then reads the truth and says what is
left where. The decisions (what to write back, what to stop or start, what still differs)
are pure functions in commands/restore.py.
"""

from __future__ import annotations

import time

from adapters.errors import RemoteError
from adapters.winrm.hoststate import HostState, Switched
from bot.runs.farm import StepError, on_hosts, verdict
from bot.runs.steps import (
    Step,
    StepContext,
    failing_words,
    record_switches,
    results_by_host,
    smoke_until_passing,
)
from commands.config import Host
from commands.hosts import component_names
from commands.restore import differences, not_restorable, state_changes


def _before(ctx: StepContext, host: Host) -> HostState:
    state = ctx.memory.before.get(host.name)
    if state is None:  # the preflight read every host of the plan, or the run stopped there
        raise StepError("no pre-run state was read for this host; nothing to restore to")
    return state


async def _read(ctx: StepContext, host: Host) -> HostState:
    sites, pools, services = component_names(ctx.env)
    return await ctx.services.hosts(host).read_state(
        sites, pools, services, ctx.plan.releases_root, timeout_s=ctx.deadline_s
    )


async def restore_switch(ctx: StepContext, target: str) -> str:
    plan = ctx.plan

    async def act(host: Host) -> tuple[Switched, ...]:
        before = _before(ctx, host)
        sites = [
            (s.name, site.physical_path)
            for s in plan.sites
            if (site := before.site(s.name)) is not None and site.physical_path
        ]
        images = [
            (s.name, svc.image_path)
            for s in plan.services
            if s.executable is not None
            and (svc := before.service(s.name)) is not None
            and svc.image_path
        ]
        # Idempotent: only what differs is written; every path is read back.
        return await ctx.services.hosts(host).switch_release(
            sites, images, releases_root=None, timeout_s=ctx.deadline_s
        )

    results = await on_hosts(ctx.hosts, ctx.deadline_s, act)
    await record_switches(ctx, results_by_host(results), "restore")
    detail = verdict(results, lambda done: f"{sum(s.changed for s in done)} switched back")
    # The previous release runs again: take the run's target out of the history.
    await ctx.services.store.forget_deployment(plan.environment, ctx.run_id)
    return detail


async def restore_states(ctx: StepContext, target: str) -> str:
    async def act(host: Host) -> str:
        ends = time.monotonic() + ctx.deadline_s
        before = _before(ctx, host)
        changes = state_changes(before, await _read(ctx, host), ctx.plan)
        ops = ctx.services.hosts(host)
        done, failed = [], []
        for change in changes:
            # One component that will not move must not keep the others from their state.
            method = getattr(ops, f"{change.action.lower()}_{change.kind}")
            try:
                await method(change.name, timeout_s=max(1.0, ends - time.monotonic()))
            except RemoteError as exc:
                failed.append(str(exc))
                continue
            done.append(
                f"{change.kind} {change.name} {'stopped' if change.action == 'Stop' else 'started'}"
            )
        if failed:
            raise StepError("; ".join(failed) + (f" (done: {', '.join(done)})" if done else ""))
        left = not_restorable(before, ctx.plan)
        words = ", ".join(done) if done else "nothing to start or stop"
        return words + (f" ({'; '.join(left)})" if left else "")

    return verdict(await on_hosts(ctx.hosts, ctx.deadline_s, act), str)


async def restore_verify(ctx: StepContext, target: str) -> str:
    async def act(host: Host) -> list[str]:
        now = await _read(ctx, host)
        ctx.memory.after[host.name] = now
        return differences(_before(ctx, host), now, ctx.plan)

    results = await on_hosts(ctx.hosts, ctx.deadline_s, act)
    still = [
        f"{r.host}: {'; '.join(r.value) if r.value is not None else f'unreadable ({r.error})'}"
        for r in results
        if r.value is None or r.value
    ]
    if still:
        raise StepError("not as before the run — " + " | ".join(still))
    return "every host is as it was before the run (paths and states read back)"


async def restore_smoke(ctx: StepContext, target: str) -> str:
    # Required only if it passed before the run: a restore cannot make better than it was.
    required = ctx.memory.precheck_passed is True
    results, attempts = await smoke_until_passing(ctx, once=not required)
    passed = sum(r.passed for r in results)
    if passed == len(results):
        return f"{passed}/{len(results)} checks pass again (attempt {attempts})"
    if not required:
        return (
            f"{passed}/{len(results)} checks pass — as before the run, when the pre-check did "
            "not pass either (informational)"
        )
    raise StepError(
        f"smoke passed before the run but still fails after the restore "
        f"({failing_words(results)}) after {attempts} attempts"
    )


RESTORE: dict[str, Step] = {
    "restore_switch": restore_switch,
    "restore_states": restore_states,
    "restore_verify": restore_verify,
    "restore_smoke": restore_smoke,
}
