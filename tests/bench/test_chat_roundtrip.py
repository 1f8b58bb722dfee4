"""bench/chat_roundtrip.py keeps working (both bots answer every message through the fake
connector) and reads its figures right; the figures themselves are the bench's to print."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chat_roundtrip import Figures, Round, figures, measure, report
from lab.core import Lab

pytest_plugins = ["tests.lab_fixtures"]


@pytest.mark.slow
async def test_both_bots_answer_every_message_of_a_short_run(lab: Lab, tmp_path: Path) -> None:
    echo, bot = await measure(lab, tmp_path, messages=24, rounds=1, conversations=4)

    assert echo.messages == bot.messages == 24
    assert 0 < echo.p50_ms <= echo.p99_ms and 0 < bot.p50_ms <= bot.p99_ms
    assert echo.per_s > 0 and bot.per_s > 0


def test_figures_pool_the_rounds() -> None:
    rounds = [Round([0.01 * n for n in range(1, 51)], 2.0), Round([0.5] * 50, 3.0)]

    pooled = figures(rounds)

    assert pooled.messages == 100
    assert pooled.per_s == pytest.approx(20.0)
    assert pooled.p50_ms == pytest.approx(500.0)
    assert pooled.p99_ms == pytest.approx(500.0)


def test_the_report_holds_the_ratios_against_the_goals() -> None:
    echo = Figures(p50_ms=100.0, p99_ms=200.0, per_s=40.0, messages=900)
    close = Figures(p50_ms=120.0, p99_ms=260.0, per_s=30.0, messages=900)

    lines = report(echo, close).splitlines()

    assert lines[-3] == "p50 1.20x echo (goal <= 1.25x): meets the goal"
    assert lines[-2] == "p99 1.30x echo (goal <= 1.25x): MISSES the goal"
    assert lines[-1] == "throughput 0.75x echo (goal >= 0.8x): MISSES the goal"
