"""run_dr_tests: run these DR tests against this environment, into one run folder.

The one function the chat command (`check`) and, later, a plan's gates call:

    folder = open_run_folder(services, services.checks.dr_dir, env, tests, requested_by)
    results = await run_dr_tests(services, env, tests, folder, observer=..., cancel=...)
    passed = all(r.passed for r in results)   # a gate: not run (cancelled...) is not passed
 Tests run one
after another in matrix order, each under its runner's deadline; `cancel` stops the one
running (its process tree is killed) and the rest are not run. An observer hears each
start and each result as it lands (the card, the audit); the results come back typed.
Nothing here posts, audits or holds a lock: callers decide what a result means to them.

If DR-SMOKE finds that no check answers at all (the service is fully stopped), the suites
after it are not run: each would fail for the same reason, after minutes.
"""

from __future__ import annotations

import asyncio
import logging
import secrets as token
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Protocol

from adapters.dr.artifacts import RunFolder, new_run_id
from adapters.dr.local import LocalCommand, run_local
from adapters.dr.remote import RemoteCommand, run_remote
from adapters.smoke_log import render_log
from commands.config import DrRunner, Environment, secret
from commands.config.dr import expand
from commands.context import Services
from commands.dr.judge import DrResult, judge, judge_smoke
from commands.dr.matrix import SMOKE, DrTest
from commands.smoke import run_smoke

log = logging.getLogger(__name__)


class DrObserver(Protocol):
    """Hears a DR run as it goes; a slow observer slows the run, a failing one is logged."""

    async def started(self, test: DrTest) -> None: ...

    async def finished(self, result: DrResult) -> None: ...


def not_configured(environment: str, test: DrTest) -> str:
    return (
        f"not configured for {environment}: add [environments.{environment}.dr.{test.key}] "
        "to the bot's config"
    )


def open_run_folder(
    services: Services,
    dr_dir: Path,
    environment: str,
    tests: Sequence[DrTest],
    requested_by: dict[str, str | None],
) -> RunFolder:
    """A new run's folder under `dr_dir` (services.checks.dr_dir), its manifest written."""
    env = services.config.environments[environment]
    run_id, started_at = new_run_id(), services.now()
    return RunFolder.create(
        dr_dir,
        run_id,
        {
            "run_id": run_id,
            "environment": environment,
            "tests": [t.id for t in tests],
            "requested_by": requested_by,
            "started_at": started_at.isoformat(),
            # The run's day where the operators are: what retention keeps 14 days by.
            "day": started_at.astimezone(services.config.tz).date().isoformat(),
            "base_url": str(env.dr.base_url) if env.dr else None,
        },
    )


async def run_dr_tests(
    services: Services,
    environment: str,
    tests: Sequence[DrTest],
    folder: RunFolder,
    *,
    observer: DrObserver | None = None,
    cancel: asyncio.Event | None = None,
) -> list[DrResult]:
    """Run `tests` against `environment`; reports and logs go to `folder` (see module doc)."""
    env = services.config.environments[environment]
    cancel = cancel or asyncio.Event()
    results: list[DrResult] = []
    stop_why: str | None = None
    for test in tests:
        if cancel.is_set():
            result = DrResult(test, "not-run", why="cancelled before it started")
        elif stop_why is not None:
            result = DrResult(test, "not-run", why=stop_why)
        elif test is not SMOKE and (env.dr is None or env.dr.runner(test.key) is None):
            result = DrResult(test, "not-run", why=not_configured(environment, test))
        else:
            await _tell(observer, "started", test)
            result = await _guarded(services, environment, env, test, folder, cancel)
            if test is SMOKE and result.findings and _all_silent(result):
                stop_why = "not run: no smoke check answered (the service looks fully stopped)"
        results.append(result)
        folder.update_manifest(results=[result_record(r) for r in results])
        await _tell(observer, "finished", result)
    return results


def result_record(result: DrResult) -> dict[str, Any]:
    """A result as JSON (manifest, audit): names, not objects."""
    return {
        "test": result.test.id,
        "outcome": result.outcome,
        "counts": result.counts,
        "findings": [asdict(f) for f in result.findings[:20]],
        "why": result.why,
        "note": result.note,
        "duration_ms": int(result.duration_s * 1000),
        "exit_code": result.exit_code,
        "files": list(result.files),
    }


def _all_silent(result: DrResult) -> bool:
    """Every smoke check got no HTTP answer at all (refused, dropped, timed out)."""
    return all(f.severity.startswith("no answer") for f in result.findings)


async def _tell(observer: DrObserver | None, what: str, arg: Any) -> None:
    if observer is None:
        return
    try:
        await getattr(observer, what)(arg)
    except Exception:
        log.exception("DR observer failed on %s", what)


async def _guarded(
    services: Services,
    environment: str,
    env: Environment,
    test: DrTest,
    folder: RunFolder,
    cancel: asyncio.Event,
) -> DrResult:
    began = time.monotonic()
    try:
        if test is SMOKE:
            return await _smoke(services, environment, folder)
        assert env.dr is not None
        runner = env.dr.runner(test.key)
        assert runner is not None
        return await _suite(
            services, environment, str(env.dr.base_url), runner, test, folder, cancel
        )
    except Exception:
        ref = token.token_hex(4)
        log.exception("DR test %s of %s failed unexpectedly [ref %s]", test.id, folder.run_id, ref)
        return DrResult(
            test,
            "failed",
            why=f"internal error (reference {ref}, details in logs/app)",
            duration_s=time.monotonic() - began,
        )


async def _smoke(services: Services, environment: str, folder: RunFolder) -> DrResult:
    began = time.monotonic()
    results, at = await run_smoke(services, environment)
    name = f"{SMOKE.id}.log"
    folder.write(name, render_log(environment, results, at, services.config.tz).encode("utf-8"))
    return replace(judge_smoke(results, time.monotonic() - began), files=(name,))


async def _suite(
    services: Services,
    environment: str,
    base_url: str,
    runner: DrRunner,
    test: DrTest,
    folder: RunFolder,
    cancel: asyncio.Event,
) -> DrResult:
    log_name, report_name = f"{test.id}.log", f"{test.id}{test.report_suffix}"
    log_path = folder.file(log_name)
    hidden: dict[str, str] = {}
    for variable, source in runner.secret_env.items():
        value = secret(source)
        if value is None:
            return DrResult(
                test,
                "failed",
                why=(
                    f"the bot's environment has no {source} (secret_env.{variable} of the "
                    f"{test.key} runner): set it and restart the bot. Nothing was run."
                ),
            )
        hidden[variable] = value
    if runner.remote:
        values = runner.placeholder_values(base_url, environment, folder.run_id, runner.working_dir)
        host = services.config.runner_host(runner.runs_on)
        assert host is not None  # the config refuses an unknown runs_on
        remote = RemoteCommand(
            program=expand(runner.command[0], values),
            arguments=tuple(expand(w, values) for w in runner.command[1:]),
            working_dir=runner.working_dir,
            env={k: expand(v, values) for k, v in runner.env.items()} | hidden,
            timeout_s=runner.timeout_s,
            report=values["report"],
        )
        output = await run_remote(services.hosts(host).shell, remote, log_path, cancel)
    else:
        local = _local_command(runner, base_url, environment, folder.run_id, hidden)
        output = await run_local(local, log_path, cancel)
    _redact(log_path, hidden.values())
    files = [log_name] if log_path.exists() else []
    if output.report is not None:
        folder.write(report_name, output.report)
        files.append(report_name)
    return replace(judge(test, output), files=tuple(files))


def _local_command(
    runner: DrRunner, base_url: str, environment: str, run_id: str, hidden: dict[str, str]
) -> LocalCommand:
    # A relative working_dir is relative to the bot's working directory (where it started).
    cwd = Path(runner.working_dir).absolute()
    values = runner.placeholder_values(base_url, environment, run_id, str(cwd))
    return LocalCommand(
        argv=tuple(expand(w, values) for w in runner.command),
        cwd=cwd,
        env={k: expand(v, values) for k, v in runner.env.items()} | hidden,
        timeout_s=runner.timeout_s,
        report=Path(values["report"]),
    )


def _redact(path: Path, values: Any) -> None:
    """The suite's output is kept, its secrets are not (a suite may print its environment)."""
    words = sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)
    if not words or not path.exists():
        return
    data = path.read_bytes()
    for word in words:
        data = data.replace(word.encode("utf-8"), b"***")
    path.write_bytes(data)
