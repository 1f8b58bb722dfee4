"""The progress card of a run, re-rendered from state at every change (pure).

One card per run, edited in place: each step pending / running / passed / failed with its
duration; on failure, which step, why, and the state the hosts were left in.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from zoneinfo import ZoneInfo

from commands.cards import elements as cards
from commands.plan import Plan
from commands.timefmt import show

ICONS = {
    "pending": "⏳ pending",
    "running": "▶️ running",
    "passed": "✅ passed",
    "failed": "❌ failed",
    "skipped": "⏭️ skipped",
    "cancelled": "⛔ cancelled",
    "interrupted": "⚠️ interrupted",
}
COLORS = {
    "passed": "Good",
    "failed": "Attention",
    "running": "Accent",
    "interrupted": "Warning",
    "cancelled": "Warning",
}
TITLES = {
    "running": ("running", "Accent"),
    "succeeded": ("succeeded", "Good"),
    "failed": ("FAILED", "Attention"),
    "cancelled": ("cancelled", "Warning"),
    "interrupted": ("interrupted", "Warning"),
    "void": ("void — not run", "Attention"),
}


@dataclass(frozen=True)
class StepView:
    key: str
    title: str
    state: str = "pending"
    duration_ms: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class RunView:
    run_id: str
    request_id: str
    plan: Plan
    requested_by: str
    approved_by: str
    started_at: datetime
    state: str = "running"
    steps: tuple[StepView, ...] = ()
    finished_at: datetime | None = None
    note: str | None = None  # why it failed / was cancelled / was interrupted, in words
    hosts_after: tuple[str, ...] = field(default=())

    @staticmethod
    def start(
        run_id: str,
        request_id: str,
        plan: Plan,
        requested_by: str,
        approved_by: str,
        started_at: datetime,
    ) -> RunView:
        steps = tuple(StepView(s.key, s.title) for s in plan.steps)
        return RunView(run_id, request_id, plan, requested_by, approved_by, started_at, steps=steps)

    def with_step(self, index: int, **changes: object) -> RunView:
        steps = list(self.steps)
        steps[index] = replace(steps[index], **changes)  # type: ignore[arg-type]
        return replace(self, steps=tuple(steps))

    def finish(
        self, state: str, at: datetime, note: str | None = None, hosts_after: tuple[str, ...] = ()
    ) -> RunView:
        steps = tuple(
            replace(s, state=("cancelled" if state == "cancelled" else "skipped"))
            if s.state == "pending"
            else replace(s, state="interrupted")
            if s.state == "running" and state == "interrupted"
            else s
            for s in self.steps
        )
        return replace(
            self, state=state, finished_at=at, note=note, steps=steps, hosts_after=hosts_after
        )

    @property
    def duration_s(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


def _duration(ms: int | None) -> str:
    if ms is None:
        return ""
    return f"{ms / 1000:.1f} s" if ms >= 1000 else f"{ms} ms"


def render_run_card(view: RunView, tz: ZoneInfo) -> cards.Card:
    plan = view.plan
    label, color = TITLES.get(view.state, (view.state, "Default"))
    kind = "Rollback" if plan.kind == "rollback" else "Deploy"
    body: list[cards.Element] = [
        cards.title(
            f"{kind} {plan.environment} {plan.current_version or '?'} → "
            f"{plan.target_version}: {label}",
            color,
        ),
        cards.facts(
            [
                ("Run", view.run_id),
                (
                    "Request",
                    f"{view.request_id} by {view.requested_by}, approved by {view.approved_by}",
                ),
                ("Hosts", ", ".join(plan.hosts)),
                ("Started", show(view.started_at, tz)),
                *(
                    [("Finished", f"{show(view.finished_at, tz)} ({view.duration_s:.0f} s)")]
                    if view.finished_at and view.duration_s is not None
                    else []
                ),
            ]
        ),
    ]
    if view.note:
        body.append(cards.text(f"**{view.note}**", color=color))
    rows = [
        [str(i), s.title, ICONS.get(s.state, s.state), _duration(s.duration_ms)]
        for i, s in enumerate(view.steps, start=1)
    ]
    row_colors = [COLORS.get(s.state) for s in view.steps]
    body.append(cards.table(["#", "Step", "State", "Time"], rows, row_colors, widths=[1, 8, 3, 2]))
    for step in view.steps:
        if step.error:
            error = cards.plain(step.error)  # what a host or the network said
            body.append(cards.text(f"{step.title}: {error}", color="Attention"))
    if view.hosts_after:
        body.append(
            cards.text(
                "Hosts left in this state: " + "; ".join(cards.plain(h) for h in view.hosts_after),
                subtle=True,
            )
        )
    if view.state == "running":
        body.append(
            cards.text(f"To stop at the next step boundary: `cancel {view.run_id}`", subtle=True)
        )
    return cards.card(body)


def summary_text(view: RunView) -> str:
    plan = view.plan
    kind = "Rollback" if plan.kind == "rollback" else "Deploy"
    took = f" in {view.duration_s:.0f} s" if view.duration_s is not None else ""
    if view.state == "succeeded":
        return (
            f"✅ {kind} of {plan.environment} to {plan.target_version} succeeded{took} "
            f"({view.run_id}). Smoke passes; {plan.target_version} is now current."
        )
    return (
        f"❌ {kind} of {plan.environment} to {plan.target_version} {view.state}{took} "
        f"({view.run_id}): {view.note or 'see the progress card'}"
    )
