"""Recovering from a process that died: at start, and — with instances sharing a
PostgreSQL store — whenever another instance's lease runs out.

Before the executor takes work: every run left `running` by a dead process is marked
`interrupted` (its lock passing to this process until its hosts are settled), its card and
conversation told — with the last completed step and each host's state read over WinRM
(and, when the preflight had read it, what each host was before the run); an
approval that never became a run is marked `interrupted` too. While the bot runs, the same
path settles a run whose instance stopped renewing its lease (`take_over`): exactly one
surviving instance does it, without waiting for the dead one to come back. Then the hosts
are settled the way the run's own failure would have settled them (`restore_decision`):
with `on_failure = "restore"` the restore steps run — by the process that settles it, under
the environment lock it took over — and the outcome (restored, restore-failed, not-restored,
unchanged, kept) is recorded on the run, the card and in the conversation.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass

from adapters.store.rows import InterruptedRun, Request
from adapters.winrm.hoststate import HostState
from bot.ports import Reporter
from bot.runs.record import RunRecord
from bot.runs.runner import Runner
from bot.runs.steps import RunMemory
from commands.bluegreen.model import SWITCH_COMMAND
from commands.cards.run import RunView, render_run_card
from commands.context import Services
from commands.plan import Plan

log = logging.getLogger(__name__)


def _cause(services: Services, run: InterruptedRun) -> str:
    """What stopped the run: a restart (one machine, SQLite), or the death of the process
    that ran it, on this machine or another (PostgreSQL)."""
    if run.owner is None or services.store.dialect == "sqlite":
        return "a bot restart"
    return f"the loss of bot process {run.owner}"


async def _record_interrupted(services: Services, run: InterruptedRun) -> None:
    request = await services.store.get_request(run.request_id)
    detail = {
        "last_completed_step": run.last_completed_step or "none",
        "instance": run.owner or "unknown",
        "taken_over_by": services.store.owner,
    }
    if run.resumed:
        detail["note"] = "the process settling its hosts stopped first: settled again"
    await services.audit.append(
        "Interrupted",
        environment=run.environment,
        request_id=run.request_id,
        run_id=run.run_id,
        step=run.current_step,
        status="interrupted",
        detail=detail,
    )
    if request is not None and not run.resumed:
        await services.timeline.append(
            f"{request.command} {run.environment} → {request.version} interrupted by "
            f"{_cause(services, run)} ({run.run_id}, during {run.current_step or 'start'})"
        )


# What happened to the hosts, by restore outcome (schema.RESTORE_OUTCOMES), for the note.
_AFTER = {
    "restored": "The restore steps ran (on_failure = restore): every host is back as it was "
    "before the run, read back — see below.",
    "restore-failed": "The restore steps ran (on_failure = restore) but did not bring every "
    "host back: check the hosts below (read just now) and `status {env}` before retrying.",
    "not-restored": "Nothing was restored automatically (on_failure = {on_failure}): check "
    "the hosts below (read just now) and `status {env}` before retrying.",
    "unchanged": "No host had been changed yet: nothing to restore.",
    "kept": "The change had been verified before that (its smoke or DR gates passed): kept.",
}


def _note(services: Services, run: InterruptedRun, plan: Plan, restore: str) -> str:
    after = _AFTER.get(restore, _AFTER["not-restored"]).format(
        env=run.environment, on_failure=plan.on_failure
    )
    return (
        f"Interrupted by {_cause(services, run)} during step "
        f"'{run.current_step or 'starting'}' "
        f"(last completed: {run.last_completed_step or 'none'}). The {run.environment} lock "
        f"is released. {after}"
    )


def changed_anything(plan: Plan, current_step: str | None) -> bool:
    """Whether a run stopped at `current_step` may have changed a host (a step that changes
    hosts had started by then)."""
    keys = [s.key for s in plan.steps]
    if current_step not in keys:
        return True  # a restore step, or unknown: assume the worst
    return any(s.changes_hosts for s in plan.steps[: keys.index(current_step) + 1])


def _pre_state(run: InterruptedRun) -> dict[str, HostState]:
    if not run.pre_state_json:
        return {}
    try:
        return {h: HostState.from_json(s) for h, s in json.loads(run.pre_state_json).items()}
    except (ValueError, KeyError, TypeError):
        log.warning("unreadable pre-run state of %s", run.run_id)
        return {}


async def _view(services: Services, run: InterruptedRun, request: Request, plan: Plan) -> RunView:
    """The run's card as its recorded steps say (restore steps included, if it had begun)."""
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
    return view


async def _restore(
    services: Services,
    reporter: Reporter,
    run: InterruptedRun,
    request: Request,
    plan: Plan,
    view: RunView,
) -> tuple[str, tuple[str, ...], RunView]:
    """What the run's own failure path would have done about the hosts, done now by the
    process that settles it: the same decision (`restore_decision`) and, when the
    environment says `on_failure = "restore"`, the same restore steps (each on every host,
    recorded, shown on the card). Returns the outcome, each host in words, the card."""
    env = services.config.environments.get(run.environment)
    if env is None:
        return "not-restored", ("the environment is no longer configured",), view
    forward = {s.key: s.state for s in view.steps[: view.restore_at or len(view.steps)]}
    memory = RunMemory(
        before=_pre_state(run),
        touched=changed_anything(plan, run.current_step),
        # The change was verified before the process died: its smoke passed, or with DR
        # gates, the gates (what those steps conclude: bot/runs/steps.py `_verified`).
        verified=view.restore_at is None
        and forward.get("gates" if plan.gates else "smoke") == "passed",
    )
    conversation = run.conversation_id or ""

    async def show(current: RunView, final: bool) -> None:
        if conversation and run.progress_activity_id:
            await reporter.update(
                conversation, run.progress_activity_id, f"{run.run_id}: restoring",
                render_run_card(current, services.config.tz), final=final,
            )  # fmt: skip

    record = RunRecord(services, view, request.id, show)
    runner = Runner(services, reporter, request, plan, env, run.run_id, record, conversation)
    runner.memory = memory
    outcome = await runner.settle_interrupted()
    return outcome.restore or "unchanged", outcome.hosts, record.view


async def _settle_interrupted(services: Services, reporter: Reporter, run: InterruptedRun) -> None:
    """Restore (per on_failure), record the outcome, release the lock the run held, tell.

    The lock is held (by this process) from the takeover until the outcome is recorded, so
    no new run starts on hosts a restore is putting back. If this process is cancelled or
    killed before that, the lock stays — its owner gone, the run `interrupted` with no
    outcome — and the next taker (a restart, or a surviving instance) settles it again."""
    store = services.store
    request = await store.get_request(run.request_id)
    if request is None:
        await store.release_lock(run.environment, run.run_id)
        return
    plan = Plan.from_json(request.plan_json)
    view = await _view(services, run, request, plan)
    try:
        restore, hosts, view = await _restore(services, reporter, run, request, plan, view)
    except Exception:
        # A broken store or bug, not a host: say so rather than hold the lock forever.
        log.exception("settling the hosts broke", extra={"run_id": run.run_id})
        restore = "restore-failed"
        hosts = (f"settling the hosts broke: check `status {run.environment}`",)
    await store.set_interrupted_restore(run.run_id, restore, "; ".join(hosts) or None)
    await store.release_lock(run.environment, run.run_id)
    await services.audit.append(
        "HostsAfterInterrupt",
        environment=run.environment,
        request_id=run.request_id,
        run_id=run.run_id,
        status="interrupted",
        detail={"hosts": list(hosts), "restore": restore},
    )
    if not run.conversation_id:
        return
    note = _note(services, run, plan, restore)
    view = view.finish("interrupted", services.now(), note, hosts, restore)
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
        f"{note} Restore: {restore}. "
        f"Hosts now: {' | '.join(hosts) or 'not read'}",
        None,
    )


@dataclass(frozen=True)
class Recovered:
    """What a dead process left, now settled in the store and the audit; still to be told."""

    runs: list[InterruptedRun]
    requests: list[Request]
    # Why the requests never ran, for their conversations.
    why: str = "the bot restarted before it ran"

    async def tell(self, services: Services, reporter: Reporter) -> None:
        """Settle each run's hosts (restore per on_failure), release its lock and tell its
        conversation; slow hosts or failing chat must not hold up the bot's start."""

        async def settle(run: InterruptedRun) -> None:
            try:
                await _settle_interrupted(services, reporter, run)
            except Exception:
                log.exception("could not settle an interrupted run", extra={"run_id": run.run_id})

        # Each run holds its own environment's lock: their hosts are settled side by side.
        await asyncio.gather(*(settle(run) for run in self.runs))
        for request in self.requests:
            if request.conversation_id:
                again = (
                    f"bluegreen {request.environment} {request.version}"
                    if request.command == SWITCH_COMMAND
                    else f"{request.command} {request.environment}"
                )
                await reporter.post(
                    request.conversation_id,
                    f"⚠️ {request.id} was approved but {self.why}; nothing ran. "
                    f"Ask again with `{again}`.",
                    None,
                )


async def take_over(services: Services) -> Recovered:
    """Settle the runs of instances whose lease ran out (each by exactly one instance), and
    the approvals they took but never started: those are not started here — the approver
    saw an approval card, not a handover, and the instance's death may be the incident —
    but refused with a message to ask again (each by exactly one instance: the
    transition out of `approved` is the guard)."""
    interrupted = await services.store.take_over_expired_runs()
    for run in interrupted:
        await _record_interrupted(services, run)
    return Recovered(
        interrupted,
        await _settle_approved(services, orphaned=True),
        "the bot instance that took the approval stopped before the run began",
    )


async def _settle_approved(services: Services, *, orphaned: bool) -> list[Request]:
    """Approved requests that will never start, marked interrupted; those this call did."""
    store = services.store
    if orphaned:
        candidates = await store.orphaned_approvals()
        why = "the bot process that took the approval stopped before the run began"
    else:
        # At start. Shared with other instances (PostgreSQL), only approvals whose approving
        # process is gone (its owner file here, or its process lease): a live instance may
        # be about to start its own, however long ago it was approved. Alone (SQLite),
        # every approval without a run was this bot's.
        shared = store.dialect == "postgresql"
        candidates = await (
            store.orphaned_approvals(at_start=True) if shared else store.approved_without_run()
        )
        why = "bot restarted before the run began"
    never_ran: list[Request] = []
    for request in candidates:
        if await store.transition_request(request.id, ["approved"], "interrupted", reason=why):
            never_ran.append(request)
            await services.audit.append(
                "Interrupted",
                environment=request.environment,
                request_id=request.id,
                status="interrupted",
                detail={"note": f"approved, but {why}; nothing ran"},
            )
    return never_ran


async def recover(services: Services, *, settle_approved: bool = True) -> Recovered:
    """Settle what a dead process left behind, before the executor takes any work: runs
    whose owner process is gone; with `settle_approved` (the bot's start), also approvals
    that never became a run. The break-glass CLI passes False: beside a running bot, an
    approval without a run yet may be the bot's own, about to start."""
    store = services.store
    interrupted = await store.mark_running_runs_interrupted()
    for run in interrupted:
        await _record_interrupted(services, run)
    if not settle_approved:
        return Recovered(interrupted, [])
    never_ran = await _settle_approved(services, orphaned=False)
    return Recovered(interrupted, never_ran)
