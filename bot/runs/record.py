"""The records of one run's steps: the store, the audit and the progress card move together.

Each step change is written to the store (so a restart knows the last completed step),
then to the audit, then shown on the card — in that order, so what the operator sees is
never ahead of what the records hold.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from commands.cards.run import RunView
from commands.context import Services


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
    ) -> None:
        """Record step `index` as running, passed or failed, and show it."""
        services, key = self._services, self.view.steps[index].key
        now = services.now()
        running = state == "running"
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
        self.view = self.view.with_step(index, state=state, duration_ms=duration_ms, error=error)
        await self._show(self.view, False)

    def close(self, state: str, note: str | None, hosts_after: tuple[str, ...]) -> RunView:
        """The final view (pending steps skipped/cancelled); shown by `show_final`, once the
        run's end is recorded."""
        self.view = self.view.finish(state, self._services.now(), note, hosts_after)
        return self.view

    async def show_final(self) -> None:
        await self._show(self.view, True)
