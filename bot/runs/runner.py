"""One run's steps, from Preflight to the end or the first failure, then the restore.

The forward steps run in plan order; a failure, a cancel at a step boundary, or anything
unexpected ends them. What happens next is decided by `restore_decision` (pure): nothing
was changed yet → nothing to do; the change was already verified → keep it; the
environment says `on_failure = "stop"` → leave the hosts; else the restore steps run, as
their own steps on the card, and the outcome says whether every host is verified back.
The runner never raises for an expected failure; `Outcome` is what the executor records.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass

from adapters.errors import RemoteError
from adapters.store.rows import Request
from adapters.winrm.hoststate import HostState
from bot.ports import Reporter
from bot.runs.farm import StepError
from bot.runs.record import RunRecord
from bot.runs.restore import RESTORE
from bot.runs.steps import STEPS, RunMemory, Step, StepContext, deadline_for
from commands.config import Environment
from commands.context import Services
from commands.hosts import read_hosts
from commands.plan import Plan, PlanStep
from commands.restore import host_words

log = logging.getLogger(__name__)


class RunTakenOver(Exception):
    """Another instance took this run over (its lease ran out): stop, change nothing."""


# Past a step's own (per-host) deadline, how long the runner waits before giving up on it:
# a host operation gives up on its own at its deadline (plus a quarter second).
_STEP_GRACE_S = 1.0


@dataclass(frozen=True)
class Outcome:
    """How a run ended: its state, the audit event, the note, what it left behind."""

    state: str  # succeeded | failed | cancelled
    event: str | None  # Failed | Cancelled (a success ends with the Deployed notify)
    note: str | None
    restore: str | None = None  # RESTORE_OUTCOMES; None for a success
    hosts: tuple[str, ...] = ()
    error_class: str | None = None  # an unexpected exception's class, for the audit
    correlation_id: str | None = None


def restore_decision(memory: RunMemory, plan: Plan) -> str | None:
    """What a run that did not succeed does about the hosts: a RESTORE_OUTCOMES value, or
    None when the restore steps must run."""
    if memory.verified:
        return "kept"
    if not memory.touched:
        return "unchanged"
    if plan.on_failure != "restore" or not plan.restore_steps:
        return "not-restored"
    return None


class Runner:
    """Runs one approved plan; `run()` returns the Outcome, `unexpected()` salvages one."""

    def __init__(
        self,
        services: Services,
        reporter: Reporter,
        request: Request,
        plan: Plan,
        env: Environment,
        run_id: str,
        record: RunRecord,
        conversation: str,
    ) -> None:
        self._services = services
        self._reporter = reporter
        self._request = request
        self.plan = plan
        self._env = env
        self.run_id = run_id
        self.record = record
        self._conversation = conversation
        self.memory = RunMemory()
        self._restored = False

    async def notify(self, text: str) -> None:
        """A message in the conversation: queued, never awaited, never failing the run."""
        if not self._conversation:
            return
        try:
            await self._reporter.post(self._conversation, text, None)
        except Exception:
            log.exception("could not queue a message")

    def _context(self, step: PlanStep) -> StepContext:
        request = self._request
        return StepContext(
            self._services,
            self.plan,
            self._env,
            self.run_id,
            request.id,
            request.requester_name,
            request.decided_by_name or "?",
            deadline_for(step.action, self._env, step.target),
            self.memory,
            self.notify,
        )

    async def run(self) -> Outcome:
        for index, step in enumerate(self.plan.steps):
            current = await self._services.store.get_run(self.run_id)
            if current is not None and current.state != "running":
                # Our lease ran out (this instance stalled or lost the database) and another
                # instance settled the run: touching a host now would race its report.
                raise RunTakenOver(f"{self.run_id} is {current.state} in the store")
            if current is not None and current.cancel_requested_by:
                note = f"Cancelled by {current.cancel_requested_by} before step '{step.title}'."
                return await self._end("cancelled", "Cancelled", note)
            if step.changes_hosts:
                self.memory.touched = True
            error = await self._step(index, step, STEPS, strict=True)
            if error is not None:
                # A step that acts on a cancel itself (the DR gates stop their suite) fails
                # because of it: the run was cancelled, not broken.
                current = await self._services.store.get_run(self.run_id)
                if current is not None and current.cancel_requested_by:
                    note = (
                        f"Cancelled by {current.cancel_requested_by} during step "
                        f"'{step.title}': {error}"
                    )
                    return await self._end("cancelled", "Cancelled", note)
                note = f"Failed at step {index + 1} '{step.title}': {error}"
                return await self._end("failed", "Failed", note)
        return Outcome("succeeded", None, None)

    async def unexpected(self, exc: BaseException) -> Outcome:
        """Something no step expected broke the run (a store, an audit write, a bug): it
        ends failed, restored like any failure, with the error class and a reference."""
        ref = secrets.token_hex(4)
        log.error("the run failed unexpectedly", exc_info=exc, extra={"ref": ref})
        note = (
            f"The run stopped on an internal error ({type(exc).__name__}, reference {ref}; "
            "details in the bot's application log)."
        )
        outcome = await self._end("failed", "Failed", note, salvage=True)
        return Outcome(
            outcome.state,
            outcome.event,
            outcome.note,
            outcome.restore,
            outcome.hosts,
            type(exc).__name__,
            ref,
        )

    async def settle_interrupted(self) -> Outcome:
        """The run's process died (this one settles it for the dead one): what a failure
        does about the hosts — `restore_decision`, then the restore steps if it says so —
        with `memory` as the dead process's records left it."""
        return await self._end("interrupted", "Interrupted", "", settling=True)

    async def _step(
        self, index: int, step: PlanStep, table: dict[str, Step], *, strict: bool
    ) -> str | None:
        """Run and record one step; the reason it failed in words, or None."""
        await self.record.step(index, "running", strict=strict)
        begun = time.monotonic()
        detail, error = await self._attempt(table[step.action], step)
        ms = int((time.monotonic() - begun) * 1000)
        if error is None:
            await self.record.step(index, "passed", duration_ms=ms, detail=detail, strict=strict)
            return None
        await self.record.step(index, "failed", duration_ms=ms, error=error, strict=strict)
        return error

    async def _attempt(self, run: Step, step: PlanStep) -> tuple[str, str | None]:
        ctx = self._context(step)
        try:
            async with asyncio.timeout(ctx.deadline_s + _STEP_GRACE_S):
                return await run(ctx, step.target), None
        except TimeoutError:
            return "", (
                f"did not finish within its deadline ({ctx.deadline_s:g} s); a host may still "
                "be working on it"
            )
        except (StepError, RemoteError) as exc:
            return "", str(exc)
        except Exception as exc:
            ref = secrets.token_hex(4)
            log.exception("step %s failed unexpectedly", step.key, extra={"ref": ref})
            return "", f"internal error ({type(exc).__name__}, reference {ref}; see logs/app)"

    async def _confirm_ours(self) -> None:
        """Raise RunTakenOver unless the store confirms (compare-and-set) that this process
        still owns the running run: checked at step boundaries only, a step that failed
        after another instance took the run over would otherwise restore the hosts that
        instance is restoring. On PostgreSQL an unreadable store counts as lost (another
        instance may hold the run); with SQLite only this process's death hands a run over."""
        store = self._services.store
        try:
            ours = await store.confirm_run_owner(self.run_id)
        except Exception as exc:
            if store.dialect != "postgresql":
                return
            raise RunTakenOver(f"{self.run_id}: its ownership could not be confirmed") from exc
        if not ours:
            raise RunTakenOver(f"{self.run_id} is no longer this process's to settle")

    async def _end(
        self,
        state: str,
        event: str,
        note: str,
        *,
        salvage: bool = False,
        settling: bool = False,
    ) -> Outcome:
        if not settling:
            # Settling a dead process's run (`settle_interrupted`) holds its lock instead.
            await self._confirm_ours()
        decided = restore_decision(self.memory, self.plan)
        if decided is None and not self._restored:
            self._restored = True
            decided = await self._restore()
        restore = decided or "restore-failed"
        hosts = await self._hosts_now(restore)
        if salvage and self.record.lost:
            note += f" Records not written: {', '.join(self.record.lost)}."
        return Outcome(state, event, note, restore, hosts)

    async def _restore(self) -> str:
        """Run every restore step (each on every host); restored only if all passed."""
        self.record.begin_restore()
        first = len(self.record.view.steps) - len(self.plan.restore_steps)
        failed = False
        for offset, step in enumerate(self.plan.restore_steps):
            try:
                error = await self._step(first + offset, step, RESTORE, strict=False)
            except Exception:  # a bug in a restore step: the next ones still try
                log.exception("restore step %s broke", step.key)
                error = "internal error"
            failed = failed or error is not None
        return "restore-failed" if failed else "restored"

    async def _hosts_now(self, restore: str) -> tuple[str, ...]:
        """Each host in words: its components now, and whether that is the pre-run state."""
        try:
            after: dict[str, HostState | None] = dict(self.memory.after)
            errors: dict[str, str | None] = {}
            missing = [h for h in self.plan.hosts if h not in after]
            if missing:
                for line in await read_hosts(self._services, self._env, missing):
                    after[line.host], errors[line.host] = line.state, line.error
            return tuple(
                host_words(
                    self._env,
                    self.plan,
                    host,
                    after.get(host),
                    self.memory.before.get(host),
                    changed=restore != "unchanged",
                    error=errors.get(host),
                    kept=restore == "kept",
                )
                for host in self.plan.hosts
            )
        except Exception:
            log.exception("could not read the hosts after the run")
            return ("the hosts could not be read after the run: check `status`",)
