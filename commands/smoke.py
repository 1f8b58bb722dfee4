"""`smoke ENVIRONMENT` — the playbook's run-smoke.ps1: every check at once, a table back.

A refused connection or a timeout reports -1; all checks at -1 means the service is fully
stopped (playbook §4). Every run writes artifacts/offline/logs/smoke_*.log and an audit line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime

from adapters.smoke import NO_ANSWER, CheckResult, SmokeTarget
from commands.cards import elements as cards
from commands.config import Environment
from commands.context import Services
from commands.registry import Command, CommandCall
from commands.timefmt import show
from commands.types import Reply


def targets(env: Environment) -> list[SmokeTarget]:
    return [SmokeTarget(c.name, str(c.url), tuple(c.expect), c.timeout_s) for c in env.smoke]


def verdict(results: Sequence[CheckResult]) -> str:
    passed = sum(r.passed for r in results)
    if passed == len(results):
        return f"PASS — {passed}/{len(results)} checks passed"
    if all(r.status == NO_ANSWER for r in results):
        return (
            f"FAIL — no check answered ({len(results)} refused or timed out): "
            "the service looks fully stopped"
        )
    return f"FAIL — {passed}/{len(results)} checks passed"


def render_smoke(
    environment: str, results: Sequence[CheckResult], at: datetime, services: Services
) -> Reply:
    ok = all(r.passed for r in results)
    rows, colors = [], []
    for r in results:
        error = cards.plain(r.error or "no answer", 200)
        status = str(r.status) if r.status != NO_ANSWER else f"-1 ({error})"
        expect = "/".join(str(s) for s in r.expect)
        rows.append([r.name, status, expect, str(r.latency_ms), "pass" if r.passed else "FAIL"])
        colors.append("Good" if r.passed else "Attention")
    summary = verdict(results)
    when = show(at, services.config.tz)
    body = [
        cards.title(f"Smoke {environment}: {summary}", "Good" if ok else "Attention"),
        cards.table(["Check", "Status", "Expected", "Latency ms", "Result"], rows, colors),
        cards.text(f"Ran {when}", subtle=True),
    ]
    checks = [
        {"name": r.name, "status": r.status, "passed": r.passed, "latency_ms": r.latency_ms}
        for r in results
    ]
    return Reply(
        f"Smoke {environment}: {summary}",
        card=cards.card(body),
        extra={"passed": ok, "checks": checks},
    )


async def run_smoke(services: Services, environment: str) -> tuple[list[CheckResult], datetime]:
    """Probe, then record the outcome (store, smoke log) — shared with the watcher later."""
    env = services.config.environments[environment]
    at = services.now()
    results = await services.probe(targets(env))
    passed = all(r.passed for r in results)
    await services.store.record_smoke(environment, passed, [asdict(r) for r in results], at)
    services.write_smoke_log(environment, results, at)
    return results, at


async def run(call: CommandCall) -> Reply:
    services = call.services
    results, at = await run_smoke(services, call.env())
    reply = render_smoke(call.env(), results, at, services)
    inv = call.invocation
    await services.audit.append(
        "Smoke",
        environment=call.env(),
        actor={"name": inv.actor.name, "aad_object_id": inv.actor.aad_object_id},
        status="passed" if all(r.passed for r in results) else "failed",
        detail={
            "checks": [
                {"name": r.name, "status": r.status, "latency_ms": r.latency_ms} for r in results
            ],
            "correlation_id": inv.correlation_id,
        },
    )
    return reply


COMMAND = Command(
    name="smoke",
    usage="ENVIRONMENT",
    summary="Run the environment's smoke checks now (Health, Swagger, Kerberos...).",
    role="operator",
    env_arg="required",
    max_extra_args=0,
    run=run,
)
