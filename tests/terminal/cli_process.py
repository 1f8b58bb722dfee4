"""The break-glass CLI as the operator runs it: `python -m bot.cli COMMAND ...`, a real
process beside (or without) a bot process, on the lab over loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import AUDIT_KEY
from tests.lab_fixtures import LAB_CREDENTIALS

ROOT = Path(__file__).resolve().parents[2]
REASON = "Teams down during the P1, drill"


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCMS_")}
    env.update(LAB_CREDENTIALS)
    # The key the bot processes of the tests write with (tests/runs/test_restart.py).
    env["MCMS_AUDIT_KEY"] = AUDIT_KEY
    env.update(extra)
    return env


def cli_argv(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "bot.cli", *args, "--config", str(config)]


@dataclass
class Done:
    code: int
    out: str
    err: str

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines() if line.startswith("{")]

    def result(self) -> dict[str, Any]:
        found = [e for e in self.events() if e.get("event") == "result"]
        assert found, self.out + self.err
        return found[-1]


def cli(
    config: Path,
    *args: str,
    timeout: float = 90,
    stdin: str = "",
    env: dict[str, str] | None = None,
) -> Done:
    done = subprocess.run(
        cli_argv(config, *args),
        cwd=ROOT,
        env=cli_env(**(env or {})),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Done(done.returncode, done.stdout, done.stderr)


async def acli(
    config: Path, *args: str, timeout: float = 90, env: dict[str, str] | None = None
) -> Done:
    """`cli` without blocking the test's event loop (a fake connector may run on it)."""
    import asyncio

    return await asyncio.to_thread(cli, config, *args, timeout=timeout, env=env)


def start_cli(config: Path, *args: str, log: Path) -> subprocess.Popen[str]:
    """A CLI process left running (its stdin a pipe, to answer the Ctrl-C question)."""
    with log.open("w") as out:
        return subprocess.Popen(
            cli_argv(config, *args),
            cwd=ROOT,
            env=cli_env(),
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
