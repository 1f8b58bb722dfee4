"""Runs approved requests, one mutating run per environment, reporting every step.

submit() returns at once: the card click that approved the request is answered before any
host is touched. A run re-plans first — if the plan differs from the approved one (new
package, other hosts, another current version) the approval is void and nothing runs.
Then: create the run (UNIQUE per request: a replayed approval cannot start a second one),
take the environment lock, run the steps with their deadlines, stop at the first failure
(or at a step boundary after `cancel`), release the lock, post the summary.

A process that dies mid-run leaves the run `running`; bot/recovery.py marks it
`interrupted` at the next start and releases its lock.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any

from adapters.errors import RemoteError
from adapters.store.rows import Request, Run
from bot.logs import bind_log_fields
from bot.ports import Reporter
from bot.runs.record import RunRecord
from bot.runs.steps import STEPS, StepContext, StepError, deadline_for
from commands.cards.approval import render_approval_card
from commands.cards.run import RunView, render_run_card, summary_text
from commands.change import Refusal, make_plan
from commands.config import Environment
from commands.context import Services
from commands.hosts import HostLine, read_hosts
from commands.plan import Plan

log = logging.getLogger(__name__)


def new_run_id() -> str:
    return "run-" + secrets.token_hex(4)


class Executor:
    def __init__(self, services: Services, reporter: Reporter) -> None:
        self._services = services
        self._reporter = reporter
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
            # A bug: the run is failed by _run's own handler when it got that far; here we
            # only make sure it is in the log with the request id.
            log.exception("executor failed")

    # --- the run ---------------------------------------------------------------------------

    async def _replan(self, request: Request, approved: Plan) -> Plan | str:
        """The plan built again now, or why it cannot be (both void the approval)."""
        requested = approved.target_version if approved.source == "requested" else None
        fresh = await make_plan(self._services, approved.kind, request.environment, requested)
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
        fresh = await self._replan(request, approved)
        if isinstance(fresh, str):
            await self._void(request, fresh)
            return
        if fresh.hash != approved.hash:
            changes = [
                f"{k}: {approved.binding()[k]} → {v}"
                for k, v in fresh.binding().items()
                if approved.binding()[k] != v and k != "steps"
            ]
            await self._void(request, "; ".join(changes) or "steps differ")
            return

        run_id, now = new_run_id(), services.now()
        bind_log_fields(run_id=run_id)
        try:
            await services.store.create_run(
                Run(
                    id=run_id,
                    request_id=request.id,
                    environment=request.environment,
                    state="running",
                    started_at=now,
                    conversation_id=request.conversation_id,
                )
            )
        except sqlite3.IntegrityError:
            log.info("the request already has a run; ignoring a second start")
            return
        lock = await services.store.try_lock(request.environment, run_id, request.requester_name)
        if not lock.acquired:
            why = f"{request.environment} is busy with {lock.holder_run_id} ({lock.holder_name})"
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
            return
        try:
            await services.store.transition_request(request.id, ["approved"], "running")
            await self._steps(request, approved, run_id, now)
        finally:
            await services.store.release_lock(request.environment, run_id)

    async def _steps(self, request: Request, plan: Plan, run_id: str, started: Any) -> None:
        services = self._services
        env = services.config.environments[request.environment]
        conversation = request.conversation_id or ""
        tz = services.config.tz
        approver = request.decided_by_name or "?"
        view = RunView.start(run_id, request.id, plan, request.requester_name, approver, started)
        await services.audit.append(
            "Started", environment=plan.environment, request_id=request.id, run_id=run_id,
            actor={"name": approver, "aad_object_id": request.decided_by_id}, status="running",
            detail={"plan_hash": plan.hash, "to": plan.target_version},
        )  # fmt: skip
        await self._update_approval_card(request.id)
        progress_id = await self._reporter.post(
            conversation, f"{run_id} started", render_run_card(view, tz)
        )
        if progress_id:
            await services.store.set_progress_activity(run_id, progress_id)

        async def show(current: RunView, final: bool) -> None:
            if progress_id:
                await self._reporter.update(
                    conversation, progress_id, f"{run_id}: {current.state}",
                    render_run_card(current, tz), final=final,
                )  # fmt: skip

        async def notify(text: str) -> None:
            await self._reporter.post(conversation, text, None)

        record = RunRecord(services, view, request.id, show)
        outcome: tuple[str, str | None, str | None] = (
            "succeeded",
            None,
            None,
        )  # state, event, note
        for index, step in enumerate(plan.steps):
            current = await services.store.get_run(run_id)
            if current is not None and current.cancel_requested_by:
                why = (
                    f"Cancelled by {current.cancel_requested_by} before step "
                    f"'{step.title}'. Hosts are as the last passed step left them."
                )
                outcome = ("cancelled", "Cancelled", why)
                break
            await record.step(index, "running")
            begun = time.monotonic()
            ctx = StepContext(
                services,
                plan,
                env,
                run_id,
                request.id,
                request.requester_name,
                approver,
                begun + deadline_for(step.key, env),
            )
            detail, error = await self._attempt(STEPS[step.key], ctx, notify, step.key)
            ms = int((time.monotonic() - begun) * 1000)
            if error is None:
                await record.step(index, "passed", duration_ms=ms, detail=detail)
                continue
            await record.step(index, "failed", duration_ms=ms, error=error)
            outcome = ("failed", "Failed", f"Failed at step {index + 1} '{step.title}': {error}")
            break
        state, event, note = outcome
        log.info("run %s", state, extra={"note": note} if note else None)
        hosts_after = await self._host_states(env) if state != "succeeded" else ()
        final = record.close(state, note, hosts_after)
        await self._finish(request, run_id, final, state, event, note)
        await record.show_final()
        await notify(summary_text(final))

    async def _attempt(
        self,
        step: Callable[..., Awaitable[str]],
        ctx: StepContext,
        notify: Callable[[str], Awaitable[None]],
        key: str,
    ) -> tuple[str, str | None]:
        """Run one step under its deadline: (detail, None) or ("", the reason in words)."""
        try:
            async with asyncio.timeout(max(0.1, ctx.deadline - time.monotonic())):
                return await step(ctx, notify), None
        except TimeoutError:
            return "", (
                f"did not finish within its deadline "
                f"({deadline_for(key, ctx.env):.0f} s); the host may still be working "
                "on it"
            )
        except (StepError, RemoteError) as exc:
            return "", str(exc)
        except Exception:
            ref = secrets.token_hex(4)
            log.exception("step %s failed unexpectedly", key, extra={"ref": ref})
            return "", f"internal error (reference {ref}, details in logs/app)"

    async def _host_states(self, env: Environment) -> tuple[str, ...]:
        def say(line: HostLine) -> str:
            s = line.state
            if s is None:
                return f"{line.host}: unreadable ({line.error})"
            return (
                f"{line.host}: site {s.site_state}, pool {s.pool_state}, Worker "
                f"{s.service_state}, path {s.physical_path}"
            )

        return tuple(say(line) for line in await read_hosts(self._services, env))

    async def _finish(
        self,
        request: Request,
        run_id: str,
        view: RunView,
        state: str,
        event: str | None,
        note: str | None,
    ) -> None:
        services = self._services
        await services.store.finish_run(run_id, state, services.now(), note)
        await services.store.transition_request(request.id, ["running"], state)
        if event:
            await services.audit.append(
                event,
                environment=request.environment,
                request_id=request.id,
                run_id=run_id,
                status=state,
                duration_ms=int((view.duration_s or 0) * 1000),
                detail={"note": note or "", "hosts_after": list(view.hosts_after)},
            )
            await services.timeline.append(
                f"{request.command} {request.environment} → {request.version} {state} "
                f"({run_id}): {note}"
            )
        await self._update_approval_card(request.id)
