"""The DR check card (`check ENVIRONMENT`), re-rendered from state at every change (pure).

One card per check, edited in place: a row per test — result, counts, duration, the worst
findings by name (or why it failed without any) — and, while it runs, which test is running
for how long and how to cancel it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from commands.cards import elements as cards
from commands.dr.matrix import DrTest
from commands.timefmt import show

ICONS = {
    "waiting": "⏳ waiting",
    "running": "▶️ running",
    "passed": "✅ passed",
    "failed": "❌ failed",
    "cancelled": "⛔ cancelled",
    "not-run": "⏭️ not run",
}
ROW_COLORS = {"passed": "Good", "failed": "Attention", "running": "Accent", "cancelled": "Warning"}
TITLES = {
    "running": ("running", "Accent"),
    "passed": ("PASSED", "Good"),
    "failed": ("FAILED", "Attention"),
    "cancelled": ("cancelled", "Warning"),
    "interrupted": ("interrupted", "Warning"),
}


def duration(seconds: float) -> str:
    whole = int(seconds)
    if whole < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{whole} s"
    return f"{whole // 60} min {whole % 60} s"


@dataclass(frozen=True)
class CheckRow:
    test: DrTest
    state: str  # waiting | running | passed | failed | cancelled | not-run
    counts: str = ""
    duration_s: float | None = None
    findings: str = ""  # the worst findings by name, then why / the exit-code note


@dataclass(frozen=True)
class CheckView:
    run_id: str
    environment: str
    base_url: str | None
    requested_by: str
    started_at: datetime
    state: str  # running | passed | failed | cancelled | interrupted
    rows: tuple[CheckRow, ...]
    elapsed_s: float
    folder: str
    note: str | None = None

    @property
    def running_row(self) -> CheckRow | None:
        return next((r for r in self.rows if r.state == "running"), None)

    def headline(self) -> str:
        if self.state == "running":
            row = self.running_row
            doing = f"{row.test.id} for {duration(row.duration_s or 0)}" if row else "starting"
            return f"running — {doing}"
        ran = [r for r in self.rows if r.state in ("passed", "failed")]
        failed = [r.test.id for r in self.rows if r.state == "failed"]
        word = TITLES.get(self.state, (self.state, ""))[0]
        if failed:
            return f"{word} — {', '.join(failed)} failed"
        return f"{word} — {sum(r.state == 'passed' for r in ran)}/{len(ran)} passed"


def render_check_card(view: CheckView, tz: ZoneInfo) -> cards.Card:
    title_color = TITLES.get(view.state, (view.state, "Default"))[1]
    body = [
        cards.title(f"DR check {view.environment}: {view.headline()}", title_color),
        cards.facts(
            [
                ("Run", view.run_id),
                ("Target", view.base_url or "(no dr.base_url: smoke checks only)"),
                (
                    "Requested",
                    f"{cards.plain(view.requested_by, 100)}, {show(view.started_at, tz)}",
                ),
                ("Elapsed", duration(view.elapsed_s)),
                ("Reports", view.folder),
            ]
        ),
        cards.table(
            ["Test", "Result", "Counts", "Time", "Worst findings"],
            [
                [
                    row.test.id,
                    ICONS.get(row.state, row.state),
                    row.counts,
                    duration(row.duration_s) if row.duration_s is not None else "",
                    # What a scanner reported (axe, JUnit, ZAP): never markdown in our card.
                    cards.plain(row.findings, 500),
                ]
                for row in view.rows
            ],
            [ROW_COLORS.get(row.state) for row in view.rows],
            widths=[3, 3, 4, 2, 6],
        ),
    ]
    if view.state == "running":
        body.append(
            cards.text(
                f"Type `cancel {view.run_id}` to stop it: the running suite's process tree "
                "is killed and the tests after it are not run.",
                subtle=True,
            )
        )
    if view.note:
        body.append(cards.text(view.note, color=title_color))
    return cards.card(body)


def summary_text(view: CheckView) -> str:
    """The message posted when a check ends (the card edit itself notifies nobody)."""
    lines = [f"DR check {view.environment} ({view.run_id}): {view.headline()}"]
    for row in view.rows:
        if row.state in ("failed", "cancelled"):
            lines.append(f"- {row.test.id}: {row.counts or row.state} — {row.findings}")
    lines.append(f"Reports and logs: {view.folder}")
    return "\n".join(lines)
