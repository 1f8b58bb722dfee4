"""Run a switch plan on a traffic router, verifying the farm read back after every step.

The plan comes from commands.slots.plan_switch; this module only drives it: each step is
one router call with its own deadline, and the farm it reads back must be exactly the farm
expected after that step (commands.slots.check_readback) — a server that moved behind the
bot's back, or a change the router did not make, stops the switch right there. A drain wait
that reaches its deadline with requests still in flight is not a failure: the server then
goes offline gracefully (the router lets those requests finish), as the playbook accepts.

Outcomes are values: the caller (the blue/green run, the bench) reads which step stopped
and the farm as last read, and decides what to tell and whether to switch back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from adapters.errors import RemoteError
from adapters.router.farm import DrainResult, Farm, TrafficRouter
from commands.slots import SwitchPlan, SwitchStep, check_readback, expect_after


@dataclass(frozen=True)
class StepOutcome:
    """One step done (ok) or the reason the switch stopped at it."""

    step: SwitchStep
    ok: bool
    farm: Farm | None  # as read back; None when the router could not be read
    problems: tuple[str, ...] = ()  # read-back mismatches, or the router's error
    drain: DrainResult | None = None


@dataclass(frozen=True)
class SwitchOutcome:
    plan: SwitchPlan
    steps: tuple[StepOutcome, ...]

    @property
    def ok(self) -> bool:
        return len(self.steps) == len(self.plan.steps) and all(s.ok for s in self.steps)

    @property
    def farm(self) -> Farm | None:
        """The farm as last read back (None if the router never answered)."""
        return next((s.farm for s in reversed(self.steps) if s.farm is not None), None)

    @property
    def stopped_at(self) -> StepOutcome | None:
        return next((s for s in self.steps if not s.ok), None)


OnStep = Callable[[StepOutcome], Awaitable[None]]


async def run_switch(
    router: TrafficRouter,
    plan: SwitchPlan,
    farm: Farm,
    *,
    drain_deadline_s: float,
    step_timeout_s: float,
    on_step: OnStep | None = None,
) -> SwitchOutcome:
    """Apply `plan` to the farm last read as `farm`; stop at the first step that fails."""
    done: list[StepOutcome] = []
    current = farm
    for step in plan.steps:
        outcome = await _step(router, step, current, drain_deadline_s, step_timeout_s)
        done.append(outcome)
        if on_step is not None:
            await on_step(outcome)
        if not outcome.ok or outcome.farm is None:
            break
        current = outcome.farm
    return SwitchOutcome(plan, tuple(done))


async def _step(
    router: TrafficRouter,
    step: SwitchStep,
    current: Farm,
    drain_deadline_s: float,
    step_timeout_s: float,
) -> StepOutcome:
    expected = expect_after(current, step)
    drain: DrainResult | None = None
    try:
        if step.kind == "wait":
            drain = await router.wait_drained(step.address, deadline_s=drain_deadline_s)
            read_back = drain.farm
        else:
            read_back = await router.set_server(step.address, step.kind, timeout_s=step_timeout_s)
    except RemoteError as exc:
        return StepOutcome(step, False, None, (str(exc),))
    problems = check_readback(expected, read_back)
    return StepOutcome(step, not problems, read_back, problems, drain)
