"""The failure sweep: for each step of the plan, a lab fault that makes exactly that step fail.

Every run ends `failed`; the restore succeeds (or nothing was changed yet); each host's
components — every site's state and physicalPath, every pool's state, the Worker's state
and ImagePath — read from the lab equal what they were before the run; and the audit chain
verifies. One bot runs one environment per step (each its own lab host, conversation and
fault), all at once: the sweep costs about one run, not fifteen.

The steps no lab fault can fail — notify (the audit, a queued message) and the timeline (a
file) — fail only when the bot's own records fail: tests/runs/test_boundaries.py injects
those. A failure after the smoke verified the change (notify_end, timeline) keeps the
change instead of undoing it; that is proved there too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapters.audit import verify
from lab.core import Lab
from lab.demo import API, PORTAL, WORKER
from tests.conftest import AUDIT_KEY_BYTES, Chat, open_chat
from tests.farm import components, farm_config, farm_hosts
from tests.runs.test_rollback_flow import LAB_STEPS, audit_events

pytestmark = pytest.mark.slow

TARGET = "1.3.9"  # not kept on the hosts: the deploy step really expands the package
Fault = Callable[[Lab, str], None]


@dataclass(frozen=True)
class Case:
    step: str
    fault: Fault
    restore: str = "restored"


def fault(target: str, mode: str, **filters: object) -> Fault:
    return lambda lab, host: lab.set_fault(host, target, mode, **filters)  # type: ignore[arg-type]


CASES = [
    Case("preflight", fault("disk", "full"), "unchanged"),
    Case("precheck", fault("health", "slow", delay_s=4.0), "unchanged"),
    *(
        Case(f"stop_site:{site}", fault("site", "stuck", name=site, action="Stop", times=1))
        for site in (PORTAL, API)
    ),
    *(
        Case(f"recycle_pool:{pool}", fault("pool", "stuck", name=pool, action="Recycle", times=1))
        for pool in (PORTAL, API)
    ),
    Case(f"stop_service:{WORKER}", fault("service", "stuck", action="Stop", times=1)),
    Case("deploy_package", fault("package", "expand_fail")),
    # The Portal is switched first; the Api's write fails: a half switch to put back.
    Case("switch", fault("site", "config_locked", name=API, times=1)),
    *(
        case
        for name in (PORTAL, API)
        for case in (
            # Recycled, the pool already runs: its start is a no-op the lab's "stuck" cannot
            # catch, so the start itself is made to fail.
            Case(
                f"start_pool:{name}",
                fault(
                    "op",
                    "fail",
                    name="pool-control",
                    action="Start",
                    match={"AppPool": name},
                    times=1,
                ),
            ),
            Case(f"start_site:{name}", fault("site", "stuck", name=name, action="Start", times=1)),
        )
    ),
    Case(f"start_service:{WORKER}", fault("service", "stuck", action="Start", times=1)),
    # A broken build: Health answers 500 while the Portal serves the target.
    Case("smoke", fault("health", "error", version=TARGET)),
]
NOT_BY_A_LAB_FAULT = {"notify_start", "notify_end", "timeline"}


def test_the_sweep_covers_every_step_a_lab_fault_can_fail() -> None:
    assert [c.step for c in CASES] == [s for s in LAB_STEPS if s not in NOT_BY_A_LAB_FAULT]


# 15 concurrent runs and then every card they posted checked against the schema: on a shared
# 2-core machine the schema check at teardown alone passed the default 120 s once.
@pytest.mark.timeout(600)
async def test_each_step_failing_ends_failed_restored_as_before_and_audited(
    tmp_path: Path, fake_connector: object, lab_credentials: None
) -> None:
    layout = {f"Sweep{i:02d}": [f"sweep{i:02d}-web"] for i in range(1, len(CASES) + 1)}
    timeouts = {"stop_s": 1.5, "start_s": 1.5, "precheck_s": 1.5, "smoke_s": 2, "restore_s": 8}
    with Lab(farm_hosts(layout), tmp_path / "lab", package_versions=[TARGET]) as lab:
        config = farm_config(lab, tmp_path, layout, timeouts=timeouts)
        async with open_chat(lab, fake_connector, config) as chat:  # type: ignore[arg-type]
            await sweep(chat, lab, layout)


async def sweep(chat: Chat, lab: Lab, layout: dict[str, list[str]]) -> None:
    asked = []
    for (env, [host]), case in zip(layout.items(), CASES, strict=True):
        reply = await chat.say(f"rollback {env} {TARGET}", conversation_id=f"conv-{env}")
        assert reply.body.get("attachments"), reply.text
        asked.append((env, host, case, chat.cards[-1], components(lab.state(host))))
    for _, host, case, _, _ in asked:
        case.fault(lab, host)
    await asyncio.gather(*(chat.click("approve", card) for *_, card, _ in asked))

    problems: list[str] = []
    for env, host, case, card, before in asked:
        request_id = card["actions"][0]["data"]["request_id"]
        # wait_request also waits for the whole executor to be idle: all 15 runs, concurrent
        # on a shared 2-core machine, so the bound is generous (it is a hang guard, not a
        # speed check).
        request = await chat.wait_request(request_id, "failed", "succeeded", timeout=240)
        run = await chat.store.run_for_request(request_id)
        assert run is not None
        failed = [
            e["step"]
            for e in audit_events(chat)
            if e.get("run_id") == run.id and e["event"] == "StepFailed"
        ]
        restored = [
            e["step"]
            for e in audit_events(chat)
            if e.get("run_id") == run.id
            and e["event"] == "StepSucceeded"
            and e["step"].startswith("restore")
        ]
        lab.clear_faults(host)
        after = components(lab.state(host))
        seen = (request.state, run.restore, failed)
        wanted = ("failed", case.restore, [case.step])
        if seen != wanted:
            problems.append(f"{case.step}: {seen} != {wanted}: {run.error}")
        if case.restore == "restored" and len(restored) != 4:
            problems.append(f"{case.step}: restore steps passed: {restored}")
        if after != before:
            diff = {k: (before.get(k), v) for k, v in after.items() if before.get(k) != v}
            problems.append(f"{case.step}: {host} differs from before the run: {diff}")
        if await chat.store.lock_holder(env) is not None:
            problems.append(f"{case.step}: {env} is still locked")
    assert problems == [], "\n".join(problems)
    report = verify(Path(chat.config.paths.audit_dir), [AUDIT_KEY_BYTES])
    assert report.ok, report.problems
