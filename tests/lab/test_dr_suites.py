"""The lab's DR suites for real: axe-core in Debian's chromium, node's test runner, the portal.

`npm run test:axe` and `npm run test:regression` in lab/dr-suites run against the lab's
portal exactly as `check` runs them; the reports are read with the bot's own parsers and
judged with its criteria. Then `check Lab` runs them through the endpoint, the fake
connector and the lab. Without node, chromium or the npm packages the module is skipped
with one reason; under CI=true it fails instead, since `.ci/run` installs them.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from adapters.dr.outcome import RunnerOutput
from adapters.dr.reports import parse_axe, parse_junit
from commands.dr.judge import judge
from commands.dr.matrix import AXE, E2E
from lab.core import Lab
from lab.demo import demo_hosts
from tests.browser_stack import CHROMIUM, missing_prerequisites
from tests.conftest import card_texts, shown, table_rows

if TYPE_CHECKING:
    from tests.conftest import Chat

ROOT = Path(__file__).resolve().parents[2]
SUITES = ROOT / "lab" / "dr-suites"
INSTALL_HINT = (
    "`bash .ci/run` installs them; by hand: apt-get install -y chromium && "
    "npm ci --prefix lab/dr-suites"
)
MISSING = missing_prerequisites(SUITES)
REASON = f"DR suites need {'; '.join(MISSING)} — {INSTALL_HINT}"
if MISSING and os.environ.get("CI") != "true":
    pytest.skip(REASON, allow_module_level=True)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if MISSING:
        pytest.fail(f"{REASON} (CI=true: these tests must run here, not skip)")
    with Lab(demo_hosts(fixed_ports=False), tmp_path_factory.mktemp("dr-lab")) as lab:
        yield lab


def npm(lab: Lab, script: str, report: Path) -> subprocess.CompletedProcess[str]:
    host = lab.host_for("Lab")
    env = {
        **os.environ,
        "BASE_URL": lab.http_base(host),
        "AXE_REPORT": str(report),
        "JUNIT_REPORT": str(report),
        "CHROMIUM": str(CHROMIUM),
    }
    return subprocess.run(
        ["npm", "run", "--silent", script],
        cwd=SUITES,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def output(done: subprocess.CompletedProcess[str], report: Path) -> RunnerOutput:
    data = report.read_bytes() if report.exists() else None
    return RunnerOutput("exited", done.returncode, 1.0, data, None if data else "no report")


def test_axe_suite_passes_on_the_clean_portal(portal: Lab, tmp_path: Path) -> None:
    report = tmp_path / "axe.json"
    done = npm(portal, "test:axe", report)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = parse_axe(report.read_bytes())
    assert [p.rsplit("/", 1)[-1] for p in summary.pages] == ["login", "releases"]
    assert sum(summary.by_impact.values()) == 0
    assert judge(AXE, output(done, report)).passed


def test_axe_suite_finds_the_violations_the_fault_api_injects(portal: Lab, tmp_path: Path) -> None:
    host = portal.host_for("Lab")
    portal.set_fault(host, "login", "a11y")
    try:
        report = tmp_path / "axe.json"
        done = npm(portal, "test:axe", report)
    finally:
        portal.clear_faults()
    assert done.returncode == 1, done.stdout + done.stderr
    summary = parse_axe(report.read_bytes())
    assert {(f.name, f.severity) for f in summary.findings} == {
        ("image-alt", "critical"),
        ("label", "critical"),
        ("color-contrast", "serious"),
    }
    assert all(f.detail.endswith("/login") for f in summary.findings)
    result = judge(AXE, output(done, report))
    assert (result.outcome, result.counts) == ("failed", "3 serious/critical · 2 pages")


def test_regression_suite_passes_and_a_failing_one_is_reported_by_test_name(
    portal: Lab, tmp_path: Path
) -> None:
    report = tmp_path / "junit.xml"
    done = npm(portal, "test:regression", report)
    assert done.returncode == 0, done.stdout + done.stderr
    assert judge(E2E, output(done, report)).counts == "5 tests · 0 failed"

    portal.set_fault(portal.host_for("Lab"), "releases", "error")
    try:
        done = npm(portal, "test:regression", report)
    finally:
        portal.clear_faults()
    assert done.returncode == 1
    failed = [f.name for f in parse_junit(report.read_bytes()).failed]
    assert failed == [
        "signing in with the operator account opens the releases list",
        "the releases list needs a session",
        "the releases list marks the version health reports as current",
    ]
    result = judge(E2E, output(done, report))
    assert (result.outcome, result.counts) == ("failed", "5 tests · 3 failed")


async def test_check_lab_runs_the_real_suites_and_names_what_axe_found(chat: Chat) -> None:
    """The demo config's runners (npm in lab/dr-suites on the bot's host), through chat."""
    if MISSING:
        pytest.fail(f"{REASON} (CI=true: these tests must run here, not skip)")
    chat.lab.set_fault(chat.lab.host_for("Lab"), "releases", "a11y")
    reply = await chat.say("check Lab axe e2e")
    run_id = reply.text.split("(", 1)[1].split(")", 1)[0]
    await chat.eventually(
        lambda: (
            chat.runtime.services.checks.find(run_id) is None
            and any("Reports and logs" in c.text for c in chat.replies)
        ),
        timeout=90,
    )
    final: dict[str, Any] = chat.puts(reply.assigned_id or "")[-1].body["attachments"][0]["content"]
    assert card_texts(final)[0] == "DR check Lab: FAILED — DR-AXE failed"
    table = {row[0]: [shown(c) for c in row[1:]] for row in table_rows(final)[1:]}
    assert table["DR-AXE"][:2] == ["❌ failed", "2 serious/critical · 2 pages"]
    assert table["DR-AXE"][3].startswith("color-contrast (serious), link-name (serious)")
    assert table["DR-E2E"][:2] == ["✅ passed", "5 tests · 0 failed"]
    folder = Path(chat.config.paths.smoke_logs_dir) / "dr" / run_id
    report = json.loads((folder / "DR-AXE.report.json").read_text())
    assert [page["url"].rsplit("/", 1)[-1] for page in report] == ["login", "releases"]
    assert "<testsuites>" in (folder / "DR-E2E.report.xml").read_text()
