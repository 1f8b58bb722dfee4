"""Run a DR suite on a Windows runner host over WinRM: the constant run-dr-test.ps1.

The MCMS repository and node usually live on a Windows build/runner host, not on the bot's
host. The command line, working directory, environment and report path travel as the
script's parameters (base64 JSON, never spliced into its text); the script starts the
program directly, waits up to TimeoutSec, kills its tree with `taskkill /T` past that, and
returns the exit code, the tail of both output streams and the report's bytes — only when
this run wrote it.

The WinRM call's own deadline is the suite's timeout plus `READBACK_S`, for killing the tree
and sending the report back. Cancel abandons the call: the transport signals the command
and deletes the shell, and WinRM ends the processes of a deleted shell with it (they live
in the shell's job object). That last part is Windows' behaviour, documented, not something
the lab can show: the lab shows the bot sending Signal and Delete.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from adapters.dr.outcome import RunnerOutput
from adapters.dr.reports import MAX_REPORT_BYTES
from adapters.errors import DeadlineExceeded, RemoteError
from adapters.winrm.hostops import RemoteShell
from adapters.winrm.scripts import OP_DR_TEST, JsonValue

READBACK_S: Final = 60.0
MAX_LOG_BYTES: Final = 256 * 1024
_ENDED: Final = ("exited", "timeout", "not-started")


@dataclass(frozen=True)
class RemoteCommand:
    """A suite to run on a runner host; paths are absolute Windows paths."""

    program: str
    arguments: tuple[str, ...]
    working_dir: str
    env: Mapping[str, str]
    timeout_s: float
    report: str


def parameters(command: RemoteCommand) -> dict[str, JsonValue]:
    return {
        "Program": command.program,
        "Arguments": list(command.arguments),
        "WorkingDir": command.working_dir,
        "Variables": dict(command.env),
        "ReportPath": command.report,
        "TimeoutSec": max(1, math.ceil(command.timeout_s)),
        "MaxReportBytes": MAX_REPORT_BYTES,
        "MaxLogBytes": MAX_LOG_BYTES,
    }


def _decode(reply: dict[str, Any], key: str) -> bytes | None:
    value = reply.get(key)
    if value is None or value == "":
        return None if value is None else b""
    if not isinstance(value, str):
        raise ValueError(f"{key} is not text")
    return base64.b64decode(value, validate=True)


def _write_log(log_path: Path, parts: list[tuple[str, bytes]]) -> None:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        for title, data in parts:
            log.write(f"--- {title} ---\n".encode())
            log.write(data if data.endswith(b"\n") or not data else data + b"\n")


def _from_reply(host: str, reply: dict[str, Any], log_path: Path) -> RunnerOutput:
    """The script's JSON → RunnerOutput; a reply we cannot read is a failure with why."""
    try:
        ended = reply.get("ended")
        if ended not in _ENDED:
            raise ValueError(f"ended = {ended!r}")
        exit_code = reply.get("exit_code")
        if ended == "exited" and (isinstance(exit_code, bool) or not isinstance(exit_code, int)):
            raise ValueError(f"exit_code = {exit_code!r}")
        duration_ms = reply.get("duration_ms", 0)
        if isinstance(duration_ms, bool) or not isinstance(duration_ms, int | float):
            raise ValueError(f"duration_ms = {duration_ms!r}")
        report = _decode(reply, "report_b64")
        stdout = _decode(reply, "stdout_b64") or b""
        stderr = _decode(reply, "stderr_b64") or b""
    except (ValueError, binascii.Error) as exc:
        why = f"run-dr-test on {host} answered something unreadable ({exc}); see the bot's log"
        _write_log(log_path, [("bot", why.encode())])
        return RunnerOutput("not-started", None, 0.0, None, None, why)
    _write_log(log_path, [(f"stdout on {host}", stdout), (f"stderr on {host}", stderr)])
    problem = reply.get("problem")
    report_problem = reply.get("report_problem")
    return RunnerOutput(
        ended,
        exit_code if ended == "exited" else None,
        float(duration_ms) / 1000,
        report,
        str(report_problem) if report is None and report_problem else None,
        str(problem) if problem else None,
    )


async def run_remote(
    shell: RemoteShell,
    command: RemoteCommand,
    log_path: Path,
    cancel: asyncio.Event,
    *,
    readback_s: float = READBACK_S,
) -> RunnerOutput:
    """Run the suite on the shell's host; never raises for the suite's or the host's faults."""
    started = time.monotonic()
    call = asyncio.create_task(
        shell.run(OP_DR_TEST, parameters(command), timeout_s=command.timeout_s + readback_s)
    )
    stopper = asyncio.create_task(cancel.wait())
    try:
        await asyncio.wait({call, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if not call.done():
            call.cancel()  # the transport signals the command and deletes the shell
            with contextlib.suppress(asyncio.CancelledError, RemoteError):
                await call
    duration = time.monotonic() - started
    if call.cancelled():
        why = (
            f"cancelled; the WinRM command on {shell.host} was terminated and its shell "
            "deleted, which ends the suite's processes there"
        )
        _write_log(log_path, [("bot", why.encode())])
        return RunnerOutput("cancelled", None, duration, None, None, why)
    try:
        reply = call.result()
    except DeadlineExceeded as exc:
        _write_log(log_path, [("bot", str(exc).encode())])
        return RunnerOutput("timeout", None, duration, None, None, str(exc))
    except RemoteError as exc:
        _write_log(log_path, [("bot", str(exc).encode())])
        return RunnerOutput("not-started", None, duration, None, None, str(exc))
    return _from_reply(shell.host, reply, log_path)
