"""The records of one run's steps: the store, the audit and the progress card move together.

Each step change is written to the store (so a restart knows the last completed step),
then to the audit, then shown on the card — in that order, so what the operator sees is
never ahead of what the records hold. A forward step whose records cannot be written stops
the run (`step` raises): changing hosts without a record is not allowed. A restore step's
records are best effort (`step(..., strict=False)`): putting the hosts back matters more
than writing that down, and what failed is logged and said on the card. The card itself
is only queued (bot/ports.py Reporter): chat trouble never stops a run.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from commands.cards.run import RunView
from commands.context import Services

log = logging.getLogger(__name__)


class RunRecord:
    def __init__(
        self,
        services: Services,
        view: RunView,
        request_id: str,
        show: Callable[[RunView, bool], Awaitable[None]],
    ) -> None:
        self._services = services
        self.view = view
        self._request_id = request_id
        self._show = show
        self.lost: list[str] = []  # records that could not be written (best effort)

    @property
    def run_id(self) -> str:
        return self.view.run_id

    async def step(
        self,
        index: int,
        state: str,
        *,
        duration_ms: int | None = None,
        detail: str | None = None,
        error: str | None = None,
        strict: bool = True,
    ) -> None:
        """Record step `index` as running, passed or failed, and show it."""
        services, key = self._services, self.view.steps[index].key
        now = services.now()
        running = state == "running"
        self.view = self.view.with_step(index, state=state, duration_ms=duration_ms, error=error)
        try:
            await services.store.record_step(
                self.run_id, index, key, state,
                started_at=now if running else None,
                finished_at=None if running else now,
                duration_ms=duration_ms, error=error,
            )  # fmt: skip
            event = {"running": "StepStarted", "passed": "StepSucceeded"}.get(state, "StepFailed")
            await services.audit.append(
                event, environment=self.view.plan.environment, request_id=self._request_id,
                run_id=self.run_id, step=key, status=None if running else state,
                duration_ms=duration_ms, detail=error if error else detail,
            )  # fmt: skip
        except Exception as exc:
            if strict:
                raise
            log.exception("could not record step %s (the restore goes on)", key)
            self.lost.append(f"{key} {state} ({type(exc).__name__})")
        await self.show(final=False)

    async def show(self, *, final: bool) -> None:
        """Queue the card as it is now; a failure to queue is logged, never raised."""
        try:
            await self._show(self.view, final)
        except Exception:
            log.exception("could not queue the progress card")

    def begin_restore(self) -> None:
        self.view = self.view.with_restore()

    def close(
        self,
        state: str,
        note: str | None,
        hosts_after: tuple[str, ...],
        restore: str | None = None,
    ) -> RunView:
        """The final view (pending steps skipped/cancelled); shown by `show(final=True)`
        once the run's end is recorded."""
        self.view = self.view.finish(state, self._services.now(), note, hosts_after, restore)
        return self.view
