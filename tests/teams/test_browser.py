"""Browser end-to-end: the bot in Microsoft 365 Agents Playground, in headless chromium.

The lab, the bot (`python -m bot.cli run`) and the Playground (npm, pinned in
tests/browser/package.json) start on ephemeral loopback ports; playwright-core drives
Debian's chromium through one conversation: `/help`, `/smoke Lab`, `/rollback Lab`, a double
click on Approve, and the progress card until it reports success. Screenshots of every
stage go to test-artifacts/browser/. Without chromium, node or the npm packages the module
is skipped with one reason; under CI=true it fails instead, since CI installs them.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from bot.teams.png import read_png
from commands.registry import default_registry
from lab.demo import demo_lab
from tests.browser_stack import (
    APPROVAL_TITLE,
    ARTIFACTS,
    BG_LIVE_TITLE,
    BG_SWITCH_TITLE,
    INSTALL_HINT,
    PROGRESS_TITLE,
    SCENARIO,
    Stack,
    drive,
    missing_prerequisites,
    start_stack,
)
from tests.runs.test_rollback_flow import LAB_STEPS

MISSING = missing_prerequisites()
REASON = f"browser e2e needs {'; '.join(MISSING)} — {INSTALL_HINT}"
if MISSING and os.environ.get("CI") != "true":
    pytest.skip(REASON, allow_module_level=True)

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class BrowserRun:
    stack: Stack
    steps: dict[str, dict[str, Any]]
    invokes: list[dict[str, Any]]  # every card action the page sent, with its answer
    seconds: float

    def text(self, step: str) -> str:
        result = self.steps.get(step)
        assert result is not None, f"the browser never reached {step}"
        assert result["ok"], f"{step}: {result['error']} (see {ARTIFACTS}/{step}-FAILED.png)"
        text: str = result["text"]
        return text

    def lines(self, step: str) -> list[str]:
        """The card's visible text, one line per text block or table cell."""
        return [line.strip() for line in self.text(step).splitlines() if line.strip()]

    def request_id(self) -> str:
        found = re.search(r"R-[0-9a-f]{8}", self.text("03-approval-card"))
        assert found, "the approval card shows no request id"
        return found.group(0)

    def events(self, request_id: str) -> list[str]:
        return [e["event"] for e in self.stack.audit() if e.get("request_id") == request_id]


@pytest.fixture(scope="module")
def browser_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserRun]:
    if MISSING:
        pytest.fail(f"{REASON} (CI=true: these tests must run here, not skip)")
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    root = tmp_path_factory.mktemp("browser")
    started = time.monotonic()
    with demo_lab(root / "lab") as lab:  # with 1.4.3 in the store, for the blue/green release
        stack = start_stack(lab, root)
        try:
            report = drive(stack, SCENARIO, ARTIFACTS)
            steps = {s["id"]: s for s in report["steps"]}
            yield BrowserRun(stack, steps, report["invokes"], time.monotonic() - started)
        finally:
            stack.stop()


def test_help_answers_with_the_command_card(browser_run: BrowserRun) -> None:
    text = browser_run.text("01-help")
    for command in default_registry().commands():
        assert command.name in text
        assert command.summary in text
    assert "Environments: Lab, InternalStage, InternalProd" in text


def test_smoke_lab_answers_with_the_check_table(browser_run: BrowserRun) -> None:
    lines = browser_run.lines("02-smoke-lab")
    assert lines[0] == "Smoke Lab: PASS — 3/3 checks passed"
    assert lines[1:6] == ["Check", "Status", "Expected", "Latency ms", "Result"]
    for check, status in [("Health", "200"), ("Swagger", "200"), ("Kerberos", "401")]:
        row = lines.index(check)
        assert lines[row + 1 : row + 2] == [status] and lines[row + 4] == "pass"


def test_rollback_approved_in_the_browser_runs_to_success(browser_run: BrowserRun) -> None:
    approval = browser_run.lines("03-approval-card")
    assert approval[0] == APPROVAL_TITLE and "1.4.2 → 1.4.1" in approval
    assert approval[-3:] == ["Approve", "Reject", "Break glass"]
    decided = browser_run.lines("04-approved")
    assert decided[1].startswith("Approved by Alex Wilber") and "Approve" not in decided

    final = browser_run.lines("05-finished-run")
    assert final[0] == f"{PROGRESS_TITLE} succeeded"
    assert final.count("✅ passed") == len(LAB_STEPS)
    assert not any("failed" in line for line in final)
    events = browser_run.events(browser_run.request_id())
    assert events.index("RolledBack") < events.index("Deployed")
    lab = browser_run.stack.lab
    state = lab.state(lab.host_for("Lab"))
    assert {(s["release"], s["state"]) for s in state["sites"].values()} == {("1.4.1", "Started")}
    assert state["services"]["MCMS.Worker"]["release"] == "1.4.1"


def test_second_approve_click_changes_nothing(browser_run: BrowserRun) -> None:
    # Both clicks reached the bot, and both were answered with the one decided card (the
    # two after them are the blue/green release's two approvals).
    assert [(i["verb"], i["status"]) for i in browser_run.invokes] == [("approve", 200)] * 4
    for invoke in browser_run.invokes[:2]:
        assert "Approved by Alex Wilber" in invoke["body"], invoke["body"][:300]
    events = browser_run.events(browser_run.request_id())
    assert events.count("Approved") == 1
    # A click after the decision is audited as ignored; one racing the first loses the
    # atomic UPDATE silently. Either way: one approval, one run.
    assert events.count("DecisionIgnored") <= 1
    assert events.count("Started") == 1
    assert events.count("StepStarted") == len(LAB_STEPS)
    lab = browser_run.stack.lab
    pools = lab.state(lab.host_for("Lab"))["app_pools"]
    assert {p["recycles"] for p in pools.values()} == {1}
    assert browser_run.steps["05-finished-run"]["counted"] == 1, "one progress card, one run"


def test_bluegreen_in_the_browser_goes_live_after_two_approvals(browser_run: BrowserRun) -> None:
    deploy = browser_run.lines("06-bluegreen-deploy-card")
    assert any("approval 1 of 2" in line for line in deploy)
    switch = browser_run.lines("07-bluegreen-switch-card")
    assert switch[0] == BG_SWITCH_TITLE
    assert any("DR-SMOKE passed" in line for line in switch)
    assert switch[-2:] == ["Approve switch", "Reject"]
    live = browser_run.lines("08-bluegreen-live")
    assert live[0] == BG_LIVE_TITLE
    assert "Switch back to InternalProd" in live
    # The lab says so too: the router sends users to InternalStage, which runs 1.4.3.
    lab = browser_run.stack.lab
    servers = lab.farm(lab.router_for("prod"))["servers"]
    assert {s["address"]: (s["enabled"], s["state"]) for s in servers} == {
        "prod-web01": (False, "Unavailable"),
        "stage-web01": (True, "Available"),
    }
    stage = lab.state(lab.host_for("InternalStage"))
    assert {s["release"] for s in stage["sites"].values()} == {"1.4.3"}


def test_every_stage_is_screenshotted(browser_run: BrowserRun) -> None:
    for step in SCENARIO:
        browser_run.text(step["id"])
        page = read_png((ARTIFACTS / f"{step['id']}.png").read_bytes())
        card = read_png((ARTIFACTS / f"{step['id']}-card.png").read_bytes())
        assert (page.width, page.height) == (1280, 1800)
        assert card.width > 300 and card.height > 100
    # The rollback, then a blue/green release with its deploy, gates, switch and watch.
    assert browser_run.seconds < 180, f"the browser suite took {browser_run.seconds:.0f} s"
