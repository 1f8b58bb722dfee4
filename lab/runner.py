"""A lab host as a DR runner host: `run-dr-test` (adapters/winrm/ps) against a scripted suite.

The lab runs no program. A test installs what the suite "does" on a host with
`Lab.set_dr_suite(...)` — its program and working directory, exit code, output, report and
how long it takes — and the simulation answers like the real script: not started (unknown
working directory or program), timed out past TimeoutSec (its tree killed), or exited, with
the report only when this run wrote it. The call itself (every parameter) is recorded like
any script's (`Lab.calls`).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from lab.model import SimHost


@dataclass(frozen=True)
class DrSuite:
    """What the simulated suite does when run-dr-test starts `program` in `working_dir`."""

    program: str = "npm.cmd"
    working_dir: str = "D:\\src\\MCMS"
    exit_code: int = 0
    stdout: bytes = b""
    stderr: bytes = b""
    report: bytes | None = None  # what it writes at the report path; None: nothing
    stale: bool = False  # a report from an earlier run sits there and is not rewritten
    duration_s: float = 0.0


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def run_dr_test(host: SimHost, p: dict[str, Any]) -> tuple[dict[str, Any], float]:
    suite = host.dr_suite
    result: dict[str, Any] = {
        "ok": True,
        "op": "run-dr-test",
        "ended": "exited",
        "exit_code": None,
        "duration_ms": 0,
        "problem": None,
        "report_b64": None,
        "report_problem": None,
        "stdout_b64": "",
        "stderr_b64": "",
    }
    working_dir, program = str(p["WorkingDir"]), str(p["Program"])
    if suite is None or working_dir.rstrip("\\").casefold() != suite.working_dir.casefold():
        result["ended"] = "not-started"
        result["problem"] = f"the working directory {working_dir} does not exist on {host.name}"
        return result, 0.0
    if program.casefold() != suite.program.casefold():
        result["ended"] = "not-started"
        result["problem"] = (
            f"command not found on {host.name}: {program} (is it installed and on PATH?)"
        )
        return result, 0.0
    timeout = float(p["TimeoutSec"])
    took = min(suite.duration_s, timeout)
    result["duration_ms"] = int(took * 1000)
    result["stdout_b64"], result["stderr_b64"] = _b64(suite.stdout), _b64(suite.stderr)
    report_path = str(p["ReportPath"])
    if suite.duration_s > timeout:
        result["ended"] = "timeout"
        result["problem"] = (
            f"did not finish within {int(timeout)} s; its process tree was killed (taskkill /T)"
        )
    else:
        result["exit_code"] = suite.exit_code
    if suite.stale:
        result["report_problem"] = (
            f"the report at {report_path} is stale: this run did not write it"
        )
    elif suite.report is None or result["ended"] == "timeout":
        result["report_problem"] = f"no report at {report_path} on {host.name}"
    elif len(suite.report) > int(p.get("MaxReportBytes", 52428800)):
        result["report_problem"] = f"the report at {report_path} is over the limit"
    else:
        result["report_b64"] = _b64(suite.report)
    return result, took
