"""Recovering from a process that died: at start, and — with instances sharing a
PostgreSQL store — whenever another instance's lease runs out.

Before the executor takes work: every run left `running` by a dead process is marked
`interrupted`, its lock released, its card and conversation told — with the last completed
step and each host's state read fresh over WinRM (and, when the preflight had read it,
what each host was before the run, so the operator sees what a manual restore means); an
approval that never became a run is marked `interrupted` too. While the bot runs, the same
path settles a run whose instance stopped renewing its lease (`take_over`): exactly one
surviving instance does it, without waiting for the dead one to come back. Nothing is
restored automatically: the hosts may be mid-change, and only a person should decide.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import timedelta

from adapters.store.rows import InterruptedRun, Request
from adapters.winrm.hoststate import HostState
from bot.ports import Reporter
from commands.bluegreen.model import SWITCH_COMMAND
from commands.cards.run import RunView, render_run_card
from commands.context import Services
from commands.hosts import read_hosts
from commands.plan import Plan
from commands.restore import host_words

log = logging.getLogger(__name__)


def _cause(services: Services, run: InterruptedRun) -> str:
    """What stopped the run: a restart (one machine, SQLite), or the death of the process
    that ran it, on this machine or another (PostgreSQL)."""
    if run.owner is None or services.store.dialect == "sqlite":
        return "a bot restart"
    return f"the loss of bot process {run.owner}"


async def _record_interrupted(services: Services, run: InterruptedRun) -> None:
    request = await services.store.get_request(run.request_id)
    await services.audit.append(
        "Interrupted",
        environment=run.environment,
        request_id=run.request_id,
        run_id=run.run_id,
        step=run.current_step,
        status="interrupted",
        detail={
            "last_completed_step": run.last_completed_step or "none",
            "instance": run.owner or "unknown",
            "taken_over_by": services.store.owner,
        },
    )
    if request is not None:
        await services.timeline.append(
            f"{request.command} {run.environment} → {request.version} interrupted by "
            f"{_cause(services, run)} ({run.run_id}, during {run.current_step or 'start'})"
        )


def _note(services: Services, run: InterruptedRun) -> str:
    return (
        f"Interrupted by {_cause(services, run)} during step "
        f"'{run.current_step or 'starting'}' "
        f"(last completed: {run.last_completed_step or 'none'}). The {run.environment} lock "
        "is released. Nothing was restored automatically: check the hosts below (read just "
        f"now) and `status {run.environment}` before retrying."
    )


async def hosts_now(services: Services, run: InterruptedRun, plan: Plan) -> tuple[str, ...]:
    """Each host of the run in words, read fresh, compared with its pre-run state."""
    env = services.config.environments.get(run.environment)
    if env is None:
        return ()
    before: dict[str, HostState] = {}
    if run.pre_state_json:
        try:
            before = {h: HostState.from_json(s) for h, s in json.loads(run.pre_state_json).items()}
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable pre-run state of %s", run.run_id)
    changed = changed_anything(plan, run.current_step)
    return tuple(
        host_words(
            env,
            plan,
            line.host,
            line.state,
            before.get(line.host),
            changed=changed,
            error=line.error,
        )
        for line in await read_hosts(services, env, plan.hosts)
    )


def changed_anything(plan: Plan, current_step: str | None) -> bool:
    """Whether a run stopped at `current_step` may have changed a host (a step that changes
    hosts had started by then)."""
    keys = [s.key for s in plan.steps]
    if current_step not in keys:
        return True  # a restore step, or unknown: assume the worst
    return any(s.changes_hosts for s in plan.steps[: keys.index(current_step) + 1])


async def _tell_interrupted(services: Services, reporter: Reporter, run: InterruptedRun) -> None:
    request = await services.store.get_request(run.request_id)
    if request is None:
        return
    plan = Plan.from_json(request.plan_json)
    hosts = await hosts_now(services, run, plan)
    await services.audit.append(
        "HostsAfterInterrupt",
        environment=run.environment,
        request_id=run.request_id,
        run_id=run.run_id,
        status="interrupted",
        detail={"hosts": list(hosts)},
    )
    if not run.conversation_id:
        return
    stored = await services.store.get_run(run.run_id)
    view = RunView.start(
        run.run_id,
        request.id,
        plan,
        request.requester_name,
        request.decided_by_name or "?",
        stored.started_at if stored else services.now(),
    )
    recorded = await services.store.list_steps(run.run_id)
    if any(index >= len(view.steps) for index, *_ in recorded):
        view = view.with_restore()
    for index, state, duration_ms, error in recorded:
        if index < len(view.steps):
            view = view.with_step(index, state=state, duration_ms=duration_ms, error=error)
    view = view.finish("interrupted", services.now(), _note(services, run), hosts)
    if run.progress_activity_id:
        card = render_run_card(view, services.config.tz)
        await reporter.update(
            run.conversation_id,
            run.progress_activity_id,
            f"{run.run_id}: interrupted",
            card,
            final=True,
        )
    await reporter.post(
        run.conversation_id,
        f"⚠️ {run.run_id} ({plan.kind} {run.environment} → {plan.target_version}): "
        f"{_note(services, run)} "
        f"Hosts now: {' | '.join(hosts) or 'not read'}",
        None,
    )


@dataclass(frozen=True)
class Recovered:
    """What a dead process left, now settled in the store and the audit; still to be told."""

    runs: list[InterruptedRun]
    requests: list[Request]

    async def tell(self, services: Services, reporter: Reporter) -> None:
        """Tell each conversation; slow or failing chat must not hold up the bot's start."""
        for run in self.runs:
            try:
                await _tell_interrupted(services, reporter, run)
            except Exception:
                log.exception("could not report an interrupted run", extra={"run_id": run.run_id})
        for request in self.requests:
            if request.conversation_id:
                again = (
                    f"bluegreen {request.environment} {request.version}"
                    if request.command == SWITCH_COMMAND
                    else f"{request.command} {request.environment}"
                )
                await reporter.post(
                    request.conversation_id,
                    f"⚠️ {request.id} was approved but the bot restarted before it ran; "
                    f"nothing ran. Ask again with `{again}`.",
                    None,
                )


async def take_over(services: Services) -> Recovered:
    """Settle the runs of instances whose lease ran out (each by exactly one instance)."""
    interrupted = await services.store.take_over_expired_runs()
    for run in interrupted:
        await _record_interrupted(services, run)
    return Recovered(interrupted, [])


async def recover(services: Services, *, settle_approved: bool = True) -> Recovered:
    """Settle what a dead process left behind, before the executor takes any work: runs
    whose owner process is gone; with `settle_approved` (the bot's start), also approvals
    that never became a run. The break-glass CLI passes False: beside a running bot, an
    approval without a run yet may be the bot's own, about to start."""
    store = services.store
    interrupted = await store.mark_running_runs_interrupted()
    for run in interrupted:
        await _record_interrupted(services, run)
    never_ran: list[Request] = []
    if not settle_approved:
        return Recovered(interrupted, never_ran)
    # Shared with other instances: one of them may be starting an approval right now.
    shared = store.dialect == "postgresql"
    settled = services.now() - timedelta(seconds=store.lease_s) if shared else None
    for request in await store.approved_without_run(settled):
        if await services.store.transition_request(
            request.id, ["approved"], "interrupted", reason="bot restarted before the run began"
        ):
            never_ran.append(request)
            await services.audit.append(
                "Interrupted",
                environment=request.environment,
                request_id=request.id,
                status="interrupted",
                detail={"note": "approved, but the bot restarted before it began; nothing ran"},
            )
    return Recovered(interrupted, never_ran)
