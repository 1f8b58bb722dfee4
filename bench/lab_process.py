"""A lab in its own process, for benchmarks: the hosts' CPU is not the bot's.

In tests the lab shares the bot's process (and its GIL); a real host has its own CPU. Here
the lab runs in a spawned child and hands back what a bot config needs: each host's WinRM
URL and where each of its smoke checks answers.
"""

from __future__ import annotations

import multiprocessing
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from lab.model import PORTAL_CHECKS, LabHostSpec


@dataclass(frozen=True)
class RemoteLab:
    """What farm_config asks of a Lab, answered from the child's addresses."""

    urls: dict[str, str]
    checks: dict[str, dict[str, str]]
    packages_dir: Path

    def winrm_url(self, host: str) -> str:
        return self.urls[host]

    def check_base(self, host: str, check: str) -> str:
        return self.checks[host][check.lower()]


def _serve(specs: Sequence[LabHostSpec], root: str, conn: Connection) -> None:
    from lab.core import Lab

    with Lab(specs, Path(root)) as lab:
        conn.send(
            {
                "urls": {h: lab.winrm_url(h) for h in lab.hosts},
                "checks": {h: {c: lab.check_base(h, c) for c in PORTAL_CHECKS} for h in lab.hosts},
                "packages": str(lab.packages_dir),
            }
        )
        conn.recv()  # until the parent is done


@contextmanager
def lab_process(specs: Sequence[LabHostSpec]) -> Iterator[RemoteLab]:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    with tempfile.TemporaryDirectory() as root:
        process = context.Process(target=_serve, args=(list(specs), root, child), daemon=True)
        process.start()
        try:
            info: dict[str, Any] = parent.recv()
            yield RemoteLab(info["urls"], info["checks"], Path(info["packages"]))
        finally:
            parent.send("stop")
            process.join(10)
            if process.is_alive():
                process.terminate()
