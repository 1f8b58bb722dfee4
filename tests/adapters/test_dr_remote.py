"""A DR suite on a Windows runner host: run-dr-test.ps1 over real WinRM against the lab.

The lab plays the suite (lab.runner.DrSuite); what it proves is the bot's side: every
value travels as a parameter, the report comes back only when this run wrote it, the
host's own failures become a failed test with why, and cancel or the deadline closes the
WinRM command and its shell.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from adapters.dr.remote import RemoteCommand, run_remote
from lab.core import Lab
from lab.runner import DrSuite
from tests.lab_fixtures import ShellFactory

pytest_plugins = ["tests.lab_fixtures"]
pytestmark = pytest.mark.slow

HOSTILE = "'; Remove-Item C:\\ -Recurse #\" $(calc) `whoami` ‘x’ 🙂"
REPORT = b'[{"url": "https://mcms-stage/login", "violations": []}]'


def axe_command(timeout_s: float = 60, **env: str) -> RemoteCommand:
    return RemoteCommand(
        program="npm.cmd",
        arguments=("run", "test:axe"),
        working_dir="D:\\src\\MCMS",
        env={"BASE_URL": "https://mcms-stage.corp.example/", **env},
        timeout_s=timeout_s,
        report="D:\\src\\MCMS\\reports\\axe-results.json",
    )


async def test_the_report_and_output_come_back_and_every_value_was_a_parameter(
    lab: Lab, lab_host: str, lab_shell: ShellFactory, tmp_path: Path
) -> None:
    lab.set_dr_suite(lab_host, DrSuite(exit_code=1, stdout=b"2 violations\n", report=REPORT))
    log = tmp_path / "DR-AXE.log"
    command = axe_command(QUOTED=HOSTILE)
    out = await run_remote(lab_shell(lab_host), command, log, asyncio.Event())
    assert (out.ended, out.exit_code, out.report, out.report_problem) == ("exited", 1, REPORT, None)
    assert "2 violations" in log.read_text()
    call = lab.calls(lab_host)[-1]
    assert call.op == "run-dr-test"
    assert call.params == {
        "Program": "npm.cmd",
        "Arguments": ["run", "test:axe"],
        "WorkingDir": "D:\\src\\MCMS",
        "Variables": {"BASE_URL": "https://mcms-stage.corp.example/", "QUOTED": HOSTILE},
        "ReportPath": "D:\\src\\MCMS\\reports\\axe-results.json",
        "TimeoutSec": 60,
        "MaxReportBytes": 50 * 1024 * 1024,
        "MaxLogBytes": 256 * 1024,
    }
    assert json.loads(call.raw_json)["Variables"]["QUOTED"] == HOSTILE
    assert lab.shells_open(lab_host) == 0


@pytest.mark.parametrize(
    ("suite", "ended", "why"),
    [
        (DrSuite(report=REPORT, stale=True), "exited", "stale: this run did not write it"),
        (DrSuite(report=None), "exited", "no report at D:\\src\\MCMS\\reports\\axe-results.json"),
        (DrSuite(working_dir="E:\\other"), "not-started", "the working directory D:\\src\\MCMS"),
        (DrSuite(program="yarn.cmd"), "not-started", "command not found on lab-web01: npm.cmd"),
        (DrSuite(report=REPORT, duration_s=5), "timeout", "did not finish within 2 s"),
    ],
    ids=["stale", "no-report", "no-directory", "no-program", "host-timeout"],
)
async def test_what_the_runner_host_reports_becomes_a_reason(
    lab: Lab,
    lab_host: str,
    lab_shell: ShellFactory,
    tmp_path: Path,
    suite: DrSuite,
    ended: str,
    why: str,
) -> None:
    lab.set_dr_suite(lab_host, suite)
    out = await run_remote(
        lab_shell(lab_host), axe_command(timeout_s=2), tmp_path / "log", asyncio.Event()
    )
    assert out.ended == ended
    assert why in f"{out.problem} {out.report_problem}"
    assert out.report is None


async def test_an_unreachable_runner_host_fails_with_the_winrm_reason(
    lab: Lab, lab_host: str, lab_shell: ShellFactory, tmp_path: Path
) -> None:
    lab.set_fault(lab_host, "winrm", "down")
    out = await run_remote(lab_shell(lab_host), axe_command(), tmp_path / "log", asyncio.Event())
    assert out.ended == "not-started"
    assert out.problem is not None and f"cannot connect to WinRM on {lab_host}" in out.problem
    assert "cannot connect to WinRM" in (tmp_path / "log").read_text()


async def test_cancel_terminates_the_command_and_deletes_the_shell(
    lab: Lab, lab_host: str, lab_shell: ShellFactory, tmp_path: Path
) -> None:
    lab.set_dr_suite(lab_host, DrSuite(report=REPORT, duration_s=60))
    cancel = asyncio.Event()
    # The worker thread notices the cancel after its current Receive (one operation timeout).
    shell = lab_shell(lab_host, operation_timeout_s=1)
    task = asyncio.create_task(run_remote(shell, axe_command(), tmp_path / "log", cancel))
    deadline = time.monotonic() + 10
    while "Receive" not in lab.winrm_actions(lab_host):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    began = time.monotonic()
    cancel.set()
    out = await asyncio.wait_for(task, 10)
    assert out.ended == "cancelled" and out.report is None
    assert time.monotonic() - began < 5
    deadline = time.monotonic() + 10
    while lab.shells_open(lab_host):
        assert time.monotonic() < deadline, "the shell was never deleted"
        await asyncio.sleep(0.05)
    actions = lab.winrm_actions(lab_host)
    assert actions.index("Signal") < actions.index("Delete")


async def test_a_host_that_never_answers_ends_at_the_bots_deadline(
    lab: Lab, lab_host: str, lab_shell: ShellFactory, tmp_path: Path
) -> None:
    lab.set_fault(lab_host, "winrm", "hang")
    began = time.monotonic()
    out = await run_remote(
        lab_shell(lab_host, operation_timeout_s=1),
        axe_command(timeout_s=1),
        tmp_path / "log",
        asyncio.Event(),
        readback_s=1,
    )
    assert out.ended == "timeout"
    assert out.problem is not None and "did not finish within 2 s" in out.problem
    assert time.monotonic() - began < 6
