"""What one run of a DR suite left, whichever runner ran it (local or over WinRM)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Ended = Literal["exited", "timeout", "cancelled", "not-started"]


@dataclass(frozen=True)
class RunnerOutput:
    """How the suite ended, and its report's bytes — or why there are none.

    `exit_code` is None unless the process exited on its own (`ended == "exited"`).
    `report_problem` says why `report` is None: missing, stale (a file this run did not
    write), too large, unreadable. `problem` says why the suite did not start or finish.
    """

    ended: Ended
    exit_code: int | None
    duration_s: float
    report: bytes | None
    report_problem: str | None = None
    problem: str | None = None
