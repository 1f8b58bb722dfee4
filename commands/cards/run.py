"""The progress card of a run, re-rendered from state at every change (pure).

One card per run, edited in place: each step pending / running / passed / failed with its
duration; on failure or cancel, which step and why, the restore as its own steps, and in
words what state each host is in now and whether that was verified.
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
# A run that did not succeed: what it left behind (adapters/store/schema.py RESTORE_OUTCOMES).
RESTORE_WORDS = {
    "unchanged": ("Nothing was changed on any host.", "Good"),
    "restored": ("Restored: every host is back as it was before the run (verified).", "Good"),
    "restore-failed": (
        "RESTORE FAILED: not every host is back as it was; see below what is left where. "
        "An alert was raised.",
        "Attention",
    ),
    "not-restored": (
        'Not restored (on_failure = "stop"): the hosts are left as the run stopped.',
        "Warning",
    ),
    "kept": (
        "The change is done and verified (smoke passed); only a record after it failed, so "
        "it was not undone.",
        "Warning",
    ),
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
    restore_at: int | None = None  # index of the first restore step, once the restore began
    restore: str | None = None  # RESTORE_WORDS key, once the run ended without success
    watch_paused: bool = False  # the environment is watched: its alerts wait for this run

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

    def with_restore(self) -> RunView:
        """The restore steps appended (pending); forward steps not reached are skipped."""
        if self.restore_at is not None:
            return self
        skipped = self._unreached("cancelled" if self.state == "cancelled" else "skipped")
        restore = tuple(StepView(s.key, s.title) for s in self.plan.restore_steps)
        return replace(self, steps=skipped + restore, restore_at=len(skipped))

    def _unreached(self, word: str) -> tuple[StepView, ...]:
        return tuple(replace(s, state=word) if s.state == "pending" else s for s in self.steps)

    def finish(
        self,
        state: str,
        at: datetime,
        note: str | None = None,
        hosts_after: tuple[str, ...] = (),
        restore: str | None = None,
    ) -> RunView:
        steps = tuple(
            replace(s, state="interrupted")
            if s.state == "running" and state == "interrupted"
            else s
            for s in self._unreached("cancelled" if state == "cancelled" else "skipped")
        )
        return replace(
            self,
            state=state,
            finished_at=at,
            note=note,
            steps=steps,
            hosts_after=hosts_after,
            restore=restore,
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
                *(
                    [("Excluded", "; ".join(f"{e.host} ({e.reason})" for e in plan.excluded))]
                    if plan.excluded
                    else []
                ),
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
    if view.restore in RESTORE_WORDS:
        words, restore_color = RESTORE_WORDS[view.restore]
        body.append(cards.text(f"**{words}**", color=restore_color))
    forward = view.steps if view.restore_at is None else view.steps[: view.restore_at]
    body.append(_steps_table(forward, 1))
    if view.restore_at is not None:
        body.append(cards.text("**Restore** (the run changed something before it stopped)"))
        body.append(_steps_table(view.steps[view.restore_at :], view.restore_at + 1))
    for step in view.steps:
        if step.error:
            error = cards.plain(step.error)  # what a host or the network said
            body.append(cards.text(f"{cards.plain(step.title)}: {error}", color="Attention"))
    if view.hosts_after:
        body.append(cards.text("**Hosts now**"))
        # The hosts' own words (states, paths, errors): escaped, so nothing becomes a link.
        body.extend(cards.text(cards.plain(line), subtle=True) for line in view.hosts_after)
    if view.state == "running":
        if view.watch_paused:
            body.append(
                cards.text(
                    f"Alerts for {plan.environment}: watch paused: run {view.run_id} in "
                    "progress (the streak starts again when it ends).",
                    subtle=True,
                )
            )
        after = " and put back what it changed" if plan.restore_steps else ""
        body.append(
            cards.text(
                f"To stop at the next step boundary{after}: `cancel {view.run_id}`", subtle=True
            )
        )
    return cards.card(body)


def _steps_table(steps: tuple[StepView, ...], first: int) -> cards.Element:
    rows = [
        # Titles hold configured paths and script parameters: shown as typed (a UNC path's
        # leading \\ would otherwise render as one backslash).
        [str(i), cards.plain(s.title), ICONS.get(s.state, s.state), _duration(s.duration_ms)]
        for i, s in enumerate(steps, start=first)
    ]
    row_colors = [COLORS.get(s.state) for s in steps]
    return cards.table(["#", "Step", "State", "Time"], rows, row_colors, widths=[3, 16, 6, 5])


def summary_text(view: RunView) -> str:
    plan = view.plan
    kind = "Rollback" if plan.kind == "rollback" else "Deploy"
    took = f" in {view.duration_s:.0f} s" if view.duration_s is not None else ""
    if view.state == "succeeded":
        return (
            f"✅ {kind} of {plan.environment} to {plan.target_version} succeeded{took} "
            f"({view.run_id}). Smoke passes; {plan.target_version} is now current."
        )
    left = RESTORE_WORDS[view.restore][0] if view.restore in RESTORE_WORDS else ""
    hosts = f" Hosts now: {' | '.join(view.hosts_after)}" if view.hosts_after else ""
    return (
        f"❌ {kind} of {plan.environment} to {plan.target_version} {view.state}{took} "
        f"({view.run_id}): {view.note or 'see the progress card'} {left}{hosts}"
    ).rstrip()
