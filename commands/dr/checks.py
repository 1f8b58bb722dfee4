"""The DR checks running in this process: one per environment, each with its card and audit.

`check ENVIRONMENT` starts one here and returns at once with its card; the check runs in
the background (commands/dr/engine.py) and edits that card through the outbound queue —
at each start and result, and every `progress_every_s` in between (the queue coalesces
edits, so a slow chat gets the newest card, never a backlog). Every finished test is one
`DrTest` audit line as it lands; the end is a `DrCheck` line, a timeline line, the card's
final edit and a summary message. `cancel RUN-ID` sets the check's cancel event: the
running suite's process tree is killed and the tests after it are not run.

At shutdown (`close`) running checks are cancelled the same way and end `interrupted`. A
check lives in memory only: if the process dies, its card stays "running", but its audit
lines and its run folder (artifacts/offline/logs/dr/<run-id>/) hold what had finished.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from adapters.dr.artifacts import RunFolder
from commands.cards.dr import CheckRow, CheckView, render_check_card, summary_text
from commands.context import Reporter, Services, actor_fields
from commands.dr.engine import open_run_folder, result_record, run_dr_tests
from commands.dr.judge import DrResult, worst
from commands.dr.matrix import DrTest
from commands.types import Actor

log = logging.getLogger(__name__)

DEFAULT_PROGRESS_S = 5.0


@dataclass
class ActiveCheck:
    """One check while it runs (and its final state once it ended)."""

    run_id: str
    environment: str
    tests: tuple[DrTest, ...]
    actor: Actor
    conversation_id: str
    started_at: datetime
    began: float  # monotonic
    folder: RunFolder
    base_url: str | None
    tz: ZoneInfo
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled_by: str | None = None
    card_id: str | None = None
    running: DrTest | None = None
    running_since: float = 0.0
    results: list[DrResult] = field(default_factory=list)
    state: str = "running"
    note: str | None = None
    ended: float | None = None
    task: asyncio.Task[None] | None = None

    def view(self, now: float) -> CheckView:
        done = {r.test.key: r for r in self.results}
        rows = []
        for test in self.tests:
            result = done.get(test.key)
            if result is not None:
                rows.append(_row(result))
            elif self.running is test and self.state == "running":
                rows.append(CheckRow(test, "running", duration_s=now - self.running_since))
            else:
                rows.append(CheckRow(test, "waiting" if self.state == "running" else "not-run"))
        return CheckView(
            run_id=self.run_id,
            environment=self.environment,
            base_url=self.base_url,
            requested_by=self.actor.name,
            started_at=self.started_at,
            state=self.state,
            rows=tuple(rows),
            elapsed_s=(self.ended or now) - self.began,
            folder=str(self.folder.path),
            note=self.note,
        )


def _row(result: DrResult) -> CheckRow:
    parts = [worst(result.findings)] if result.findings else []
    parts += [p for p in (result.why, result.note) if p]
    took = None if result.outcome == "not-run" else result.duration_s
    return CheckRow(result.test, result.outcome, result.counts, took, " — ".join(parts))


class DrChecks:
    """The board of running checks; `check` and `cancel` read it through Services."""

    def __init__(self, dr_dir: Path, *, progress_every_s: float = DEFAULT_PROGRESS_S) -> None:
        self.dr_dir = dr_dir
        self.progress_every_s = progress_every_s
        self._reporter: Reporter | None = None
        self._active: dict[str, ActiveCheck] = {}
        self._changing: dict[str, str] = {}  # environment → the run about to change it
        self._accepting = True

    def connect(self, reporter: Reporter) -> None:
        """Give the board its way to chat (the outbound queue exists after the app)."""
        self._reporter = reporter

    def active(self, environment: str) -> ActiveCheck | None:
        return self._active.get(environment)

    def reserve_for_run(self, environment: str, run_id: str) -> ActiveCheck | None:
        """A run is about to change `environment`: the check running there (the run must not
        start), or None, and then no check starts there until `release_run`. Synchronous, like
        `start`: a check and a run of one environment can never both begin."""
        check = self._active.get(environment)
        if check is None:
            self._changing[environment] = run_id
        return check

    def release_run(self, environment: str, run_id: str) -> None:
        if self._changing.get(environment) == run_id:
            del self._changing[environment]

    def changing(self, environment: str) -> str | None:
        """The run reserving `environment` (between its start and its end), if any."""
        return self._changing.get(environment)

    def find(self, run_id: str) -> ActiveCheck | None:
        return next((c for c in self._active.values() if c.run_id == run_id), None)

    @property
    def accepting(self) -> bool:
        return self._accepting

    def start(
        self,
        services: Services,
        environment: str,
        tests: Sequence[DrTest],
        actor: Actor,
        conversation_id: str,
    ) -> ActiveCheck:
        """Claim the environment and start the check in the background; returns at once.

        The caller checked `active(environment)` in the same step (no await in between), so
        a second check of one environment can never start.
        """
        if environment in self._active:
            raise RuntimeError(f"a DR check of {environment} is already running")
        env = services.config.environments[environment]
        requested_by = actor_fields(actor.name, actor.aad_object_id)
        folder = open_run_folder(services, self.dr_dir, environment, tests, requested_by)
        run_id, started_at = folder.run_id, datetime.fromisoformat(folder.manifest["started_at"])
        check = ActiveCheck(
            run_id=run_id,
            environment=environment,
            tests=tuple(tests),
            actor=actor,
            conversation_id=conversation_id,
            started_at=started_at,
            began=time.monotonic(),
            folder=folder,
            base_url=str(env.dr.base_url) if env.dr else None,
            tz=services.config.tz,
        )
        self._active[environment] = check
        check.task = asyncio.create_task(self._job(services, check), name=f"check:{run_id}")
        return check

    def cancel(self, run_id: str, by: str) -> ActiveCheck | None:
        """Ask a running check to stop now; None when no such check is running."""
        check = self.find(run_id)
        if check is None or check.cancel.is_set():
            return None
        check.cancelled_by = by
        check.cancel.set()
        return check

    async def attach_card(self, check: ActiveCheck, activity_id: str) -> None:
        """The check's card was posted with this id: edit it from now on."""
        check.card_id = activity_id
        await self.show(check, final=check.state != "running")

    async def close(self, timeout_s: float) -> None:
        """Shutdown: start no check, cancel the running ones, wait for them to end."""
        self._accepting = False
        checks = list(self._active.values())
        for check in checks:
            if not check.cancel.is_set():
                check.cancelled_by = "the bot shutting down"
                check.cancel.set()
        tasks = [c.task for c in checks if c.task is not None]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    # --- the job -------------------------------------------------------------------------

    async def _job(self, services: Services, check: ActiveCheck) -> None:
        ticker = asyncio.create_task(self._tick(check))
        try:
            results = await run_dr_tests(
                services,
                check.environment,
                check.tests,
                check.folder,
                observer=_Observer(self, services, check),
                cancel=check.cancel,
            )
            self._settle(check, results)
        except Exception:
            log.exception("DR check %s failed", check.run_id)
            check.state = "failed"
            check.note = "The check stopped on an internal error; details in logs/app."
        finally:
            ticker.cancel()
            check.ended = time.monotonic()
            check.running = None
            self._active.pop(check.environment, None)
        await self._record_end(services, check)
        await self.show(check, final=True)
        if self._reporter is not None and check.conversation_id:
            view = check.view(time.monotonic())
            try:
                await self._reporter.post(check.conversation_id, summary_text(view), None)
            except Exception:
                log.exception("DR check %s: summary post failed", check.run_id)

    def _settle(self, check: ActiveCheck, results: list[DrResult]) -> None:
        if check.cancel.is_set():
            shutting_down = check.cancelled_by == "the bot shutting down"
            check.state = "interrupted" if shutting_down else "cancelled"
            stopped = next((r.test.id for r in results if r.outcome == "cancelled"), None)
            where = f" during {stopped}" if stopped else ""
            check.note = (
                f"Stopped{where} by {check.cancelled_by}: the running suite's process tree was "
                "killed; the tests after it were not run."
            )
        elif any(r.outcome == "failed" for r in results):
            check.state = "failed"
        else:
            check.state = "passed"

    async def _tick(self, check: ActiveCheck) -> None:
        while True:
            await asyncio.sleep(self.progress_every_s)
            await self.show(check, final=False)

    async def show(self, check: ActiveCheck, *, final: bool) -> None:
        """Edit the check's card to its current state (coalesced unless final)."""
        if self._reporter is None or check.card_id is None or not check.conversation_id:
            return
        view = check.view(time.monotonic())
        try:
            await self._reporter.update(
                check.conversation_id,
                check.card_id,
                f"DR check {check.environment}: {view.headline()}",
                render_check_card(view, check.tz),
                final=final,
            )
        except Exception:
            # Chat is not the record (the audit and the run folder are): a check never
            # stops because its card could not be edited.
            log.exception("DR check %s: card edit failed", check.run_id)

    async def _record_end(self, services: Services, check: ActiveCheck) -> None:
        view = check.view(time.monotonic())
        check.folder.update_manifest(state=check.state, note=check.note)
        await services.audit.append(
            "DrCheck",
            environment=check.environment,
            run_id=check.run_id,
            actor=actor_fields(check.actor.name, check.actor.aad_object_id),
            status=check.state,
            duration_ms=int(view.elapsed_s * 1000),
            detail={
                "tests": [t.id for t in check.tests],
                "results": {r.test.id: r.outcome for r in check.results},
                "note": check.note or "",
                "folder": str(check.folder.path),
            },
        )
        keys = ",".join(t.key for t in check.tests)
        await services.timeline.append(
            f"check {check.environment} {keys} by {check.actor.name}: {view.headline()} "
            f"({check.run_id})"
        )


class _Observer:
    """Keeps the card current and writes each test's audit line as soon as it ends."""

    def __init__(self, board: DrChecks, services: Services, check: ActiveCheck) -> None:
        self._board, self._services, self._check = board, services, check

    async def started(self, test: DrTest) -> None:
        self._check.running, self._check.running_since = test, time.monotonic()
        await self._board.show(self._check, final=False)

    async def finished(self, result: DrResult) -> None:
        check = self._check
        check.results.append(result)
        if check.running is result.test:
            check.running = None
        await self._services.audit.append(
            "DrTest",
            environment=check.environment,
            run_id=check.run_id,
            actor=actor_fields(check.actor.name, check.actor.aad_object_id),
            step=result.test.id,
            status=result.outcome,
            duration_ms=int(result.duration_s * 1000),
            detail=result_record(result),
        )
        await self._board.show(check, final=False)
