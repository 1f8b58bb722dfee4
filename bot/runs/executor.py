"""Runs approved requests, one mutating run per environment, reporting every step.

submit() returns at once: the card click that approved the request is answered before any
host is touched. A run re-plans first — if the plan differs from the approved one (new
package, other hosts, another current version) the approval is void and nothing runs.
Then: create the run (UNIQUE per request: a replayed approval cannot start a second one),
take the environment lock, run the steps (bot/runs/runner.py: Preflight first, then the
playbook; on failure or cancel the restore), and end it.

No run is ever left `running` by this process: whatever breaks — a step, the store, the
audit, the chat, a bug — the run ends failed, in this order: the restore (runner), the
store, the card, the audit (`Failed` with the error class and a correlation id), the
timeline and the alert, then the lock is released. Each of those is tried on its own, so
one that fails does not keep the next from happening. Chat is only ever queued.

A process that dies mid-run leaves the run `running`; bot/runs/recovery.py marks it
`interrupted` at the next start and releases its lock.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable
from dataclasses import replace
from datetime import datetime
from typing import Any

from adapters.store.rows import Request, Run
from bot.logs import bind_log_fields
from bot.ports import Reporter, RunAlarm, RunFailure
from bot.runs.record import RunRecord
from bot.runs.runner import Outcome, Runner, RunTakenOver
from commands.cards.approval import approver_words, render_approval_card
from commands.cards.run import RunView, render_run_card, summary_text
from commands.change import Refusal, check_running_refusal, make_plan
from commands.context import Services
from commands.plan import Plan

log = logging.getLogger(__name__)

# The lock must come free even if the store hiccups at the end of a run.
_RELEASE_ATTEMPTS = 5
_RELEASE_PAUSE_S = 0.5


def new_run_id() -> str:
    return "run-" + secrets.token_hex(4)


class Executor:
    def __init__(
        self,
        services: Services,
        reporter: Reporter,
        alarm: RunAlarm | None = None,
    ) -> None:
        self._services = services
        self._reporter = reporter
        self._alarm = alarm
        self._tasks: set[asyncio.Task[None]] = set()
        self._accepting = True

    def submit(self, request: Request) -> bool:
        """Start the run of an approved request in the background; False when shutting down."""
        if not self._accepting:
            return False
        task = asyncio.create_task(self._guarded(request), name=f"run:{request.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    @property
    def running(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout_s: float | None = None) -> None:
        """Accept no new runs; wait for the ones in flight (cancelled after `timeout_s`)."""
        self._accepting = False
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    async def _guarded(self, request: Request) -> None:
        # This task's own log context: every line of the run carries the request (and,
        # once it exists, the run) as fields.
        bind_log_fields(request_id=request.id)
        try:
            await self._run(request)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Before the run existed (re-planning, voiding): nothing ran. A run, once
            # created, is always ended by _run itself.
            log.exception("executor failed")
        # Its lock is released: a blue/green flow whose deploy this was goes on (or ends).
        self._services.bluegreen.run_ended(request.id)

    # --- before the run --------------------------------------------------------------------

    async def _replan(self, request: Request, approved: Plan) -> Plan | str:
        """The plan built again now, or why it cannot be (both void the approval)."""
        requested = approved.target_version if approved.source == "requested" else None
        fresh = await make_plan(
            self._services, approved.kind, request.environment, requested, approved.excluded
        )
        if isinstance(fresh, Refusal):
            return fresh.message.replace(" Nothing was requested.", "")
        return fresh

    async def _update_approval_card(self, request_id: str) -> None:
        services = self._services
        request = await services.store.get_request(request_id)
        if request is None or not request.conversation_id or not request.card_activity_id:
            return
        card = render_approval_card(
            request, Plan.from_json(request.plan_json), services.config.tz, services.now()
        )
        await self._reporter.update(
            request.conversation_id,
            request.card_activity_id,
            f"{request.id}: {request.state}",
            card,
            final=True,
        )

    async def _void(self, request: Request, why: str) -> None:
        services = self._services
        if await services.store.transition_request(request.id, ["approved"], "void", reason=why):
            await services.audit.append(
                "Void",
                environment=request.environment,
                request_id=request.id,
                status="void",
                detail={"reason": why},
            )
            await self._update_approval_card(request.id)
            if request.conversation_id:
                await self._reporter.post(
                    request.conversation_id,
                    f"⚠️ {request.id} is void: the plan changed after approval ({why}). Nothing "
                    f"was run. Ask again with `{request.command} {request.environment}`.",
                    None,
                )

    async def _run(self, request: Request) -> None:
        services = self._services
        approved = Plan.from_json(request.plan_json)
        try:
            fresh = await self._replan(request, approved)
        except Exception as exc:
            # Nothing has run yet: an approval that cannot be re-checked must not run.
            ref = secrets.token_hex(4)
            log.exception("re-planning %s failed [ref %s]", request.id, ref)
            fresh = (
                f"the plan could not be checked again (internal error {type(exc).__name__}, "
                f"reference {ref})"
            )
        if isinstance(fresh, str):
            await self._void(request, fresh)
            return
        if fresh.hash != approved.hash:
            changes = [
                f"{k}: {approved.binding()[k]} → {v}"
                for k, v in fresh.binding().items()
                if approved.binding()[k] != v and k not in ("steps", "restore_steps")
            ]
            await self._void(request, "; ".join(changes) or "steps differ")
            return

        run_id, now = new_run_id(), services.now()
        bind_log_fields(run_id=run_id)
        created = await services.store.create_run(
            Run(
                id=run_id,
                request_id=request.id,
                environment=request.environment,
                state="running",
                started_at=now,
                conversation_id=request.conversation_id,
            )
        )
        if not created:
            log.info("the request already has a run; ignoring a second start")
            return
        check = services.checks.reserve_for_run(request.environment, run_id)
        if check is not None:
            why = check_running_refusal(check).message.replace(
                "Nothing was requested.", "Nothing was run; ask again when it has ended."
            )
            await self._refuse_busy(request, run_id, why)
            return
        try:
            lock = await services.store.try_lock(
                request.environment, run_id, request.requester_name
            )
            if not lock.acquired:
                why = (
                    f"{request.environment} is busy with {lock.holder_run_id} ({lock.holder_name})"
                )
                await self._refuse_busy(request, run_id, why)
                return
            try:
                # Still approved? Another process's start may have settled it meanwhile (an
                # approval left without a run looks abandoned to it): then nothing runs.
                if not await services.store.transition_request(request.id, ["approved"], "running"):
                    why = "the request was settled elsewhere before its run began"
                    await services.store.finish_run(run_id, "failed", services.now(), why)
                    await services.audit.append(
                        "Failed", environment=request.environment, request_id=request.id,
                        run_id=run_id, status="not-approved", detail={"reason": why},
                    )  # fmt: skip
                    return
                await self._locked(request, approved, run_id, now)
            finally:
                await self._release(request.environment, run_id)
        finally:
            services.checks.release_run(request.environment, run_id)

    async def _refuse_busy(self, request: Request, run_id: str, why: str) -> None:
        """The run could not start: the environment is busy; nothing was touched."""
        services = self._services
        await services.store.finish_run(run_id, "failed", services.now(), why)
        await services.store.transition_request(request.id, ["approved"], "failed", reason=why)
        await services.audit.append(
            "Failed",
            environment=request.environment,
            request_id=request.id,
            run_id=run_id,
            status="busy",
            detail={"reason": why},
        )
        await self._update_approval_card(request.id)
        if request.conversation_id:
            await self._reporter.post(
                request.conversation_id, f"⚠️ {request.id} did not start: {why}", None
            )

    # --- the run ---------------------------------------------------------------------------

    async def _locked(self, request: Request, plan: Plan, run_id: str, started: datetime) -> None:
        """Everything that happens while the run holds the lock; never leaves it running."""
        services = self._services
        env = services.config.environments[request.environment]
        conversation = request.conversation_id or ""
        tz = services.config.tz
        approver = request.decided_by_name or "?"
        # The card says how it was approved: a break glass in capitals, with its reason.
        approved_by = approver_words(request)
        view = replace(
            RunView.start(run_id, request.id, plan, request.requester_name, approved_by, started),
            watch_paused=env.watch.enabled,
        )
        progress: list[str | None] = [None]

        async def show(current: RunView, final: bool) -> None:
            if progress[0] is not None:
                await self._reporter.update(
                    conversation, progress[0], f"{run_id}: {current.state}",
                    render_run_card(current, tz), final=final,
                )  # fmt: skip

        record = RunRecord(services, view, request.id, show)
        runner = Runner(services, self._reporter, request, plan, env, run_id, record, conversation)
        try:
            await services.audit.append(
                "Started", environment=plan.environment, request_id=request.id, run_id=run_id,
                actor={"name": approver, "aad_object_id": request.decided_by_id},
                status="running", detail={"plan_hash": plan.hash, "to": plan.target_version},
            )  # fmt: skip
            await self._tell(self._update_approval_card(request.id))
            progress[0] = await self._queue_progress(conversation, run_id, record)
            outcome = await runner.run()
        except RunTakenOver as lost:
            log.critical("stopped a run another instance took over: %s", lost)
            return
        except Exception as exc:
            try:
                outcome = await runner.unexpected(exc)
            except RunTakenOver as lost:
                log.critical("stopped a broken run another instance took over: %s", lost)
                return
        await self._conclude(request, runner, outcome)

    async def _queue_progress(
        self, conversation: str, run_id: str, record: RunRecord
    ) -> str | None:
        """Queue the progress card; its Teams id is stored when Teams has it (restarts edit it)."""
        if not conversation:
            return None

        async def remember(activity_id: str) -> None:
            await self._services.store.set_progress_activity(run_id, activity_id)

        try:
            return await self._reporter.post(
                conversation,
                f"{run_id} started",
                render_run_card(record.view, self._services.config.tz),
                on_sent=remember,
            )
        except Exception:
            log.exception("could not queue the progress card")
            return None

    async def _conclude(self, request: Request, runner: Runner, outcome: Outcome) -> None:
        """The end, each part on its own: store, card, audit, timeline, alert."""
        services, run_id = self._services, runner.run_id
        log.info("run %s", outcome.state, extra={"note": outcome.note} if outcome.note else None)
        final = runner.record.close(outcome.state, outcome.note, outcome.hosts, outcome.restore)

        async def store() -> None:
            await services.store.finish_run(
                run_id,
                outcome.state,
                services.now(),
                outcome.note,
                restore=outcome.restore,
                restore_note="; ".join(outcome.hosts) or None,
            )
            await services.store.transition_request(request.id, ["running"], outcome.state)

        async def card() -> None:
            await runner.record.show(final=True)
            await self._update_approval_card(request.id)
            await runner.notify(summary_text(final))

        async def audit() -> None:
            if outcome.event is None:
                return
            detail: dict[str, Any] = {
                "note": outcome.note or "",
                "restore": outcome.restore,
                "hosts_after": list(outcome.hosts),
            }
            if outcome.error_class:
                detail |= {
                    "error_class": outcome.error_class,
                    "correlation_id": outcome.correlation_id,
                }
            await services.audit.append(
                outcome.event,
                environment=request.environment,
                request_id=request.id,
                run_id=run_id,
                status=outcome.state,
                duration_ms=int((final.duration_s or 0) * 1000),
                detail=detail,
            )

        async def timeline() -> None:
            left = f"; {outcome.restore}" if outcome.restore else ""
            await services.timeline.append(
                f"{request.command} {request.environment} → {request.version} {outcome.state} "
                f"({run_id}){': ' + outcome.note if outcome.note else ''}{left}"
            )

        async def alarm() -> None:
            if self._alarm is None:
                return
            if outcome.state == "succeeded":
                await self._alarm.run_succeeded(request.environment, run_id)
                return
            failure = run_failure(request, runner, outcome)
            if failure is not None:
                await self._alarm.run_failed(failure)

        for name, part in (
            ("store", store), ("card", card), ("audit", audit), ("timeline", timeline),
            ("alert", alarm),
        ):  # fmt: skip
            await self._tell(part(), what=f"{name} of the end of {run_id}")

    async def _tell(self, work: Awaitable[None], what: str = "an approval card edit") -> None:
        try:
            await work
        except Exception:
            log.exception("could not write the %s", what)

    async def _release(self, environment: str, run_id: str) -> None:
        for attempt in range(1, _RELEASE_ATTEMPTS + 1):
            try:
                await self._services.store.release_lock(environment, run_id)
                return
            except Exception:
                log.exception(
                    "could not release the %s lock of %s (try %d)", environment, run_id, attempt
                )
                await asyncio.sleep(_RELEASE_PAUSE_S * attempt)
        log.critical(
            "the %s lock of %s is still held; the next start of the bot frees it",
            environment,
            run_id,
        )


def run_failure(request: Request, runner: Runner, outcome: Outcome) -> RunFailure | None:
    """The alert a run that did not succeed raises, or None (a cancel that put it all back)."""
    restore = outcome.restore or "unchanged"
    left_changed = restore in ("restore-failed", "not-restored")
    if outcome.state == "cancelled" and not left_changed:
        return None
    return RunFailure(
        environment=request.environment,
        run_id=runner.run_id,
        request_id=request.id,
        kind=request.command,
        target_version=runner.plan.target_version,
        state=outcome.state,
        note=outcome.note or "",
        outcome=restore,
        hosts=outcome.hosts,
        priority="P1" if left_changed else "P2",
    )
