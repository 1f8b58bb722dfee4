"""commands.switch: a switch plan run on the lab's ARR router over WinRM, read back each step."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from adapters.router.arr import ArrRouter
from adapters.winrm.transport import WinRMShell
from commands.config import load_config
from commands.slots import SwitchPlan, plan_switch, view_pair
from commands.switch import StepOutcome, SwitchOutcome, run_switch
from lab.core import Lab
from tests.lab_pairs import request_in_flight

pytest_plugins = ["tests.lab_fixtures"]
ShellFactory = Callable[..., WinRMShell]

ROOT = Path(__file__).resolve().parents[2]
PAIR = load_config(ROOT / "lab" / "demo-bot.toml").pairs["prod"]
PROD, STAGE = "prod-web01", "stage-web01"


@pytest.fixture
def router(lab_shell: ShellFactory, lab_router: str) -> ArrRouter:
    return ArrRouter(lab_shell(lab_router), "MCMS")


async def switch_to(
    router: ArrRouter,
    slot: str,
    *,
    drain_deadline_s: float = 5,
    on_step: Callable[[StepOutcome], object] | None = None,
) -> SwitchOutcome:
    farm = await router.read_farm(timeout_s=10)
    plan = plan_switch(view_pair("prod", PAIR, farm), slot)
    assert isinstance(plan, SwitchPlan), plan

    async def report(outcome: StepOutcome) -> None:
        if on_step is not None:
            on_step(outcome)

    return await run_switch(
        router, plan, farm, drain_deadline_s=drain_deadline_s, step_timeout_s=10, on_step=report
    )


def lab_modes(lab: Lab, router: str) -> dict[str, tuple[bool, str]]:
    return {s["address"]: (s["enabled"], s["state"]) for s in lab.farm(router)["servers"]}


async def health(lab: Lab, router: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(lab.public_url(router) + "/health") as response,
    ):
        return response.status, (await response.json())["version"]


async def test_a_switch_and_a_switch_back_move_production_traffic(
    router: ArrRouter, lab: Lab, lab_router: str
) -> None:
    assert await health(lab, lab_router) == (200, "1.4.0")

    there = await switch_to(router, "InternalStage")

    assert there.ok and there.stopped_at is None
    assert [s.step.kind for s in there.steps] == ["online", "drain", "wait", "offline"]
    assert lab_modes(lab, lab_router) == {PROD: (False, "Unavailable"), STAGE: (True, "Available")}
    assert await health(lab, lab_router) == (200, "1.4.1")
    assert there.farm is not None
    assert view_pair("prod", PAIR, there.farm).live == "InternalStage"

    back = await switch_to(router, "InternalProd")

    assert back.ok
    assert lab_modes(lab, lab_router) == {PROD: (True, "Available"), STAGE: (False, "Unavailable")}
    assert await health(lab, lab_router) == (200, "1.4.0")


async def test_a_farm_changed_behind_the_bots_back_stops_the_switch_at_the_next_step(
    router: ArrRouter, lab: Lab, lab_router: str
) -> None:
    def meddle(outcome: StepOutcome) -> None:
        if outcome.step.kind == "online":  # someone takes the new slot out in IIS Manager
            lab.set_farm_server(lab_router, STAGE, enabled=False, state="Unavailable")

    outcome = await switch_to(router, "InternalStage", on_step=meddle)

    assert not outcome.ok
    stopped = outcome.stopped_at
    assert stopped is not None and stopped.step.kind == "drain"
    assert stopped.problems == (
        "stage-web01 reads offline (disabled, Unavailable), expected online (enabled, Available)",
    )
    # Stopped before the wait and the offline step: the old slot was only drained.
    assert [s.step.kind for s in outcome.steps] == ["online", "drain"]
    assert lab_modes(lab, lab_router)[PROD] == (True, "Drain")


async def test_a_router_failure_stops_the_switch_and_leaves_the_farm_as_the_router_has_it(
    router: ArrRouter, lab: Lab, lab_router: str
) -> None:
    def lock_config(outcome: StepOutcome) -> None:
        if outcome.step.kind == "wait":
            lab.set_fault(lab_router, "farm", "config_locked")

    outcome = await switch_to(router, "InternalStage", on_step=lock_config)

    stopped = outcome.stopped_at
    assert stopped is not None and stopped.step.kind == "offline" and stopped.farm is None
    assert "Cannot write configuration file" in stopped.problems[0]
    assert outcome.farm is not None  # the farm as read back after the wait
    farm = await router.read_farm(timeout_s=10)
    view = view_pair("prod", PAIR, farm)
    # Users already reach the new slot; the old one is out only until the router restarts.
    assert view.live == "InternalStage"
    assert any("out of rotation at runtime only" in p for p in view.problems)


async def test_a_drain_past_its_deadline_goes_offline_and_the_request_in_flight_still_ends(
    router: ArrRouter, lab: Lab, lab_router: str
) -> None:
    lab.set_fault(PROD, "health", "slow", delay_s=4)
    async with request_in_flight(lab, lab_router, PROD) as in_flight:
        outcome = await switch_to(router, "InternalStage", drain_deadline_s=1)

        assert outcome.ok
        wait = next(s for s in outcome.steps if s.step.kind == "wait")
        assert wait.drain is not None and not wait.drain.drained
        assert wait.drain.current_requests == 1
        assert await in_flight == 200
    assert lab.farm(lab_router)["servers"][0]["failed_requests"] == 0
