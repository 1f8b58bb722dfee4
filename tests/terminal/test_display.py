"""The terminal shows the chat's cards in the same words: live (rich) on a terminal, a line
per step state in a pipe, JSON lines for machines. Pure: cards in, text out."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from rich.console import Console

from bot.terminal.card_text import card_blocks, plain_lines, step_rows, unmark
from bot.terminal.display import JsonDisplay, LiveDisplay, PlainDisplay, progress_of
from commands.cards.run import RunView, render_run_card
from commands.config import load_config
from commands.plan import build_plan
from tests.conftest import DEMO_CONFIG

TZ = ZoneInfo("Asia/Seoul")
AT = datetime(2026, 12, 2, 3, 10, tzinfo=UTC)


def run_card(passed: int, *, state: str = "running") -> dict[str, object]:
    env = load_config(DEMO_CONFIG).environments["Lab"]
    plan = build_plan(
        "rollback", "Lab", env, current_version="1.4.2", target_version="1.4.1",
        sha256="ab" * 32, package="MCMS_Setup_1.4.1.zip", source="newest kept",
        hosts=("lab-web01",),
    )  # fmt: skip
    view = RunView.start("run-0000abcd", "R-0000abcd", plan, "Alex Wilber", "BREAK GLASS", AT)
    for i in range(passed):
        view = view.with_step(i, state="passed", duration_ms=120)
    if passed < len(view.steps):
        view = view.with_step(passed, state="running")
    if state != "running":
        view = view.finish(state, AT, "Smoke failed", (), "restored")
    return render_run_card(view, TZ)


def test_unmark_takes_off_teams_markdown_and_escapes() -> None:
    assert unmark(r"**Restored**: D:\MCMS\releases\1.4.1 \*not\* bold") == (
        r"Restored: D:\MCMS\releases\1.4.1 *not* bold"
    )


def test_the_progress_card_reads_as_its_steps() -> None:
    card = run_card(3)
    rows = step_rows(card)
    assert len(rows) == 18 and progress_of(card) == (3, 18)
    assert rows[0][1].startswith("Preflight") and rows[0][2] == "✅ passed"
    assert rows[3][2] == "▶️ running" and rows[4][2] == "⏳ pending"
    lines = plain_lines(card_blocks(card))
    assert lines[0] == "Rollback Lab 1.4.2 → 1.4.1: running"
    assert any("Run" in ln and "run-0000abcd" in ln for ln in lines)


def test_the_live_display_draws_the_card_a_progress_bar_and_the_step_table() -> None:
    out = io.StringIO()
    display = LiveDisplay(Console(file=out, force_terminal=True, width=160, color_system=None))
    display.card(run_card(3), "run-0000abcd: running", final=False)
    display.card(run_card(7), "run-0000abcd: running", final=False)
    display.card(run_card(18, state="succeeded"), "done", final=True)
    text = out.getvalue()
    assert "Rollback Lab 1.4.2 → 1.4.1: running" in text
    assert "3/18 steps" in text and "7/18 steps" in text
    assert "Stop IIS site MCMS.Portal" in text and "✅ passed" in text
    assert "━" in text  # the bar itself


def test_a_pipe_gets_one_line_per_step_state_and_the_outcome() -> None:
    out = io.StringIO()
    display = PlainDisplay(out)
    display.card(run_card(0), "started", final=False)
    display.card(run_card(1), "", final=False)
    display.card(run_card(1), "", final=False)  # an edit that changed nothing: no line
    display.card(run_card(2, state="failed"), "", final=True)
    lines = out.getvalue().splitlines()
    assert lines[0] == "Rollback Lab 1.4.2 → 1.4.1: running"
    preflight = [ln for ln in lines if ln.startswith("1. Preflight")]
    assert [ln.split(" — ")[1] for ln in preflight] == ["▶️ running", "✅ passed (120 ms)"]
    assert lines.count("2. Pre-check smoke (informational; all refused = service stopped) — "
                       "✅ passed (120 ms)") == 1  # fmt: skip
    assert "Smoke failed" in lines and any(ln.startswith("Restored:") for ln in lines)


def test_json_lines_for_machines() -> None:
    out = io.StringIO()
    display = JsonDisplay(out)
    display.card(run_card(1), "", final=False)
    display.result({"state": "succeeded", "exit": 0})
    events = [json.loads(ln) for ln in out.getvalue().splitlines()]
    first = events[0]
    assert first == {"event": "step", "n": 1, "step": first["step"], "state": "passed",
                     "took": "120 ms"}  # fmt: skip
    assert events[-1] == {"event": "result", "state": "succeeded", "exit": 0}
