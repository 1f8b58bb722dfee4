"""A DR suite on the bot's own host: real child processes, and the whole tree killed.

The suite here is a small Python program that can write a report, sleep, print its
environment, and start a grandchild in a session of its own — as playwright starts
chromium — so the tests can read /proc afterwards and prove nothing was left running.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import pytest

from adapters.dr.local import LocalCommand, run_local
from adapters.dr.outcome import RunnerOutput
from tests.processes import alive

pytestmark = pytest.mark.slow

SUITE = r"""
import json, os, subprocess, sys, time
args = dict(a.split("=", 1) for a in sys.argv[1:])
if "grandchild" in args:
    # Detached like playwright's browser: its own session, so not in the suite's group.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                             start_new_session=True)
    open(args["grandchild"], "w").write(str(child.pid))
print("suite started", flush=True)
print(json.dumps({k: v for k, v in os.environ.items() if k.startswith(("MCMS", "DR_"))}),
      flush=True)
time.sleep(float(args.get("sleep", "0")))
if "report" in args:
    open(args["report"], "w").write(args.get("content", "{}"))
sys.exit(int(args.get("exit", "0")))
"""


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    path = tmp_path / "suite.py"
    path.write_text(SUITE, encoding="utf-8")
    return path


def command(
    suite: Path, *args: str, timeout_s: float = 20, env: dict[str, str] | None = None
) -> LocalCommand:
    return LocalCommand(
        argv=(sys.executable, str(suite), *args),
        cwd=suite.parent,
        env=env or {},
        timeout_s=timeout_s,
        report=suite.parent / "report.json",
    )


async def wait_for_file(path: Path, seconds: float = 10) -> str:
    deadline = time.monotonic() + seconds
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, f"{path} never appeared"
        await asyncio.sleep(0.02)
    return path.read_text()


async def test_a_suite_that_writes_its_report_returns_its_bytes_and_exit_code(
    suite: Path, tmp_path: Path
) -> None:
    report = str(tmp_path / "report.json")
    out = await run_local(
        command(suite, f"report={report}", "content=[1]", "exit=3"),
        tmp_path / "run" / "log.txt",
        asyncio.Event(),
    )
    assert (out.ended, out.exit_code, out.report, out.report_problem) == ("exited", 3, b"[1]", None)
    assert "suite started" in (tmp_path / "run" / "log.txt").read_text()


async def test_a_report_left_by_an_earlier_run_is_stale_not_evidence(
    suite: Path, tmp_path: Path
) -> None:
    (tmp_path / "report.json").write_text('[{"violations": []}]')
    out = await run_local(command(suite), tmp_path / "log.txt", asyncio.Event())
    assert out.report is None
    assert (
        out.report_problem is not None and "stale: this run did not write it" in out.report_problem
    )


async def test_no_report_says_where_it_was_looked_for(suite: Path, tmp_path: Path) -> None:
    out = await run_local(command(suite), tmp_path / "log.txt", asyncio.Event())
    assert out.report_problem == f"no report at {tmp_path / 'report.json'}"


async def test_a_timeout_kills_the_whole_tree_detached_browser_included(
    suite: Path, tmp_path: Path
) -> None:
    pidfile = tmp_path / "grandchild.pid"
    began = time.monotonic()
    out = await run_local(
        command(suite, "sleep=60", f"grandchild={pidfile}", timeout_s=1.5),
        tmp_path / "log.txt",
        asyncio.Event(),
    )
    assert out.ended == "timeout" and out.exit_code is None
    assert out.problem == "did not finish within 1.5 s; its process tree was killed"
    assert time.monotonic() - began < 10
    grandchild = int(pidfile.read_text())
    assert not alive(grandchild), "the detached grandchild survived the timeout"


async def test_cancel_kills_the_tree_at_once(suite: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    cancel = asyncio.Event()
    task = asyncio.create_task(
        run_local(command(suite, "sleep=60", f"grandchild={pidfile}"), tmp_path / "log.txt", cancel)
    )
    grandchild = int(await wait_for_file(pidfile))
    assert alive(grandchild)
    began = time.monotonic()
    cancel.set()
    out: RunnerOutput = await asyncio.wait_for(task, 10)
    assert out.ended == "cancelled" and out.problem == "cancelled; process tree killed"
    assert time.monotonic() - began < 5
    assert not alive(grandchild)


async def test_what_a_finished_suite_left_running_is_ended_too(suite: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    out = await run_local(
        command(suite, f"grandchild={pidfile}"), tmp_path / "log.txt", asyncio.Event()
    )
    assert (out.ended, out.exit_code) == ("exited", 0)
    assert not alive(int(pidfile.read_text()))


async def test_the_suite_gets_its_own_variables_and_none_of_the_bots_secrets(
    suite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCMS_BOT_APP_PASSWORD", "bot-secret")
    out = await run_local(
        command(suite, env={"DR_BASE_URL": "http://127.0.0.1:1/"}),
        tmp_path / "log.txt",
        asyncio.Event(),
    )
    assert out.exit_code == 0
    seen = json.loads((tmp_path / "log.txt").read_text().splitlines()[1])
    assert seen.pop("MCMS_DR_RUN")  # the marker that finds its processes
    assert seen == {"DR_BASE_URL": "http://127.0.0.1:1/"}
    assert "bot-secret" not in (tmp_path / "log.txt").read_text()
    assert os.environ["MCMS_BOT_APP_PASSWORD"] == "bot-secret"


@pytest.mark.parametrize(
    ("argv", "cwd", "why"),
    [
        (("no-such-program-mcms",), None, "command not found: no-such-program-mcms"),
        ((sys.executable,), "missing", "the working directory"),
    ],
    ids=["no-program", "no-directory"],
)
async def test_a_suite_that_cannot_start_says_why(
    tmp_path: Path, argv: tuple[str, ...], cwd: str | None, why: str
) -> None:
    where = tmp_path / cwd if cwd else tmp_path
    out = await run_local(
        LocalCommand(argv, where, {}, 5, tmp_path / "r.json"), tmp_path / "log.txt", asyncio.Event()
    )
    assert out.ended == "not-started"
    assert out.problem is not None and why in out.problem
