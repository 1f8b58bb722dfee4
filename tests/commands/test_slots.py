"""commands.slots: the live slot, switch plans and read-back checks, from farms alone."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import pytest

from adapters.router.farm import Farm, FarmServer
from commands.config import Pair, load_config
from commands.slots import (
    PairView,
    Refusal,
    SwitchPlan,
    check_readback,
    error_rate,
    expect_after,
    plan_switch,
    view_pair,
)

ROOT = Path(__file__).resolve().parents[2]
PAIR = load_config(ROOT / "lab" / "demo-bot.toml").pairs["prod"]
PROD, STAGE = "prod-web01", "stage-web01"
# (enabled, runtime state) of each shape a server can be found in
SHAPES = {
    "online": (True, "Available"),
    "drain": (True, "Drain"),
    "offline": (False, "Unavailable"),
    "runtime-only": (True, "Unavailable"),  # out until the router restarts
    "disabled": (False, "Available"),  # off in configuration, runtime says Available
}


def server(address: str, shape: str, **counts: int) -> FarmServer:
    enabled, state = SHAPES[shape]
    return FarmServer(
        address,
        enabled,
        state,  # type: ignore[arg-type]
        counts.get("healthy", 1) == 1,
        counts.get("current", 0),
        counts.get("total", 0),
        counts.get("failed", 0),
    )


def farm(*servers: FarmServer) -> Farm:
    return Farm("arr-front01", "MCMS", servers)


def view(prod: str, stage: str) -> PairView:
    return view_pair("prod", PAIR, farm(server(PROD, prod), server(STAGE, stage)))


def steps(plan: SwitchPlan | Refusal) -> list[str]:
    assert isinstance(plan, SwitchPlan), plan
    return [f"{s.kind} {s.address}" for s in plan.steps]


def test_one_slot_online_and_the_other_offline_is_a_clean_pair() -> None:
    v = view("online", "offline")
    assert (v.live, v.standby, v.clean, v.problems) == ("InternalProd", "InternalStage", True, ())


@pytest.mark.parametrize(
    ("prod", "stage", "live", "says"),
    [
        ("online", "online", None, "both InternalProd and InternalStage are online"),
        ("offline", "offline", None, "no slot is online: the router answers users with 503"),
        ("drain", "online", "InternalStage", "prod-web01 is draining"),
        ("online", "runtime-only", "InternalProd", "stage-web01 is out of rotation at runtime"),
        ("disabled", "online", "InternalStage", ""),
    ],
    ids=["both-online", "none-online", "mid-switch-drain", "runtime-only-standby", "disabled"],
)
def test_the_live_slot_is_read_off_the_farm_and_oddities_are_named(
    prod: str, stage: str, live: str | None, says: str
) -> None:
    v = view(prod, stage)
    assert v.live == live
    if says:
        assert not v.clean and any(says in p for p in v.problems), v.problems
    else:
        assert v.clean, v.problems


def test_a_server_the_farm_lacks_makes_its_slot_missing() -> None:
    v = view_pair("prod", PAIR, farm(server(PROD, "online")))
    assert v.slot("InternalStage").mode == "missing"
    assert any("stage-web01 of InternalStage is not in farm MCMS" in p for p in v.problems)
    assert isinstance(plan_switch(v, "InternalStage"), Refusal)


def test_an_unhealthy_online_server_and_a_stranger_taking_traffic_are_named() -> None:
    v = view_pair(
        "prod",
        PAIR,
        farm(server(PROD, "online", healthy=0), server(STAGE, "offline"), server("x", "online")),
    )
    assert any("prod-web01 is online but ARR marks it unhealthy" in p for p in v.problems)
    assert any("server x of farm MCMS belongs to no slot and is online" in p for p in v.problems)
    refusal = plan_switch(v, "InternalStage")
    assert isinstance(refusal, Refusal) and "belong to no slot" in refusal.reason


def test_a_switch_brings_the_target_online_before_anything_leaves() -> None:
    plan = plan_switch(view("online", "offline"), "InternalStage")
    assert steps(plan) == [
        f"online {STAGE}",
        f"drain {PROD}",
        f"wait {PROD}",
        f"offline {PROD}",
    ]
    assert isinstance(plan, SwitchPlan)
    assert (plan.from_slot, plan.to_slot) == ("InternalProd", "InternalStage")
    assert plan.steps[0].label == "bring stage-web01 (InternalStage) online"


@pytest.mark.parametrize(
    ("prod", "stage", "to", "expected"),
    [
        ("drain", "online", "InternalStage", [f"wait {PROD}", f"offline {PROD}"]),
        (
            "drain",
            "online",
            "InternalProd",
            [f"online {PROD}", f"drain {STAGE}", f"wait {STAGE}", f"offline {STAGE}"],
        ),
        ("online", "online", "InternalStage", [f"drain {PROD}", f"wait {PROD}", f"offline {PROD}"]),
        ("offline", "offline", "InternalProd", [f"online {PROD}"]),
        ("online", "runtime-only", "InternalProd", [f"offline {STAGE}"]),
    ],
    ids=["finish-interrupted", "undo-interrupted", "from-both-online", "from-none", "make-durable"],
)
def test_a_half_done_switch_is_finished_or_undone_with_only_the_steps_left(
    prod: str, stage: str, to: str, expected: list[str]
) -> None:
    assert steps(plan_switch(view(prod, stage), to)) == expected


@pytest.mark.parametrize(
    ("to", "healthy", "says"),
    [
        ("InternalProd", 1, "already the live slot"),
        ("Lab", 1, "not a slot of pair prod"),
        ("InternalStage", 0, "marks stage-web01 of InternalStage unhealthy"),
    ],
)
def test_a_switch_is_refused_with_the_reason(to: str, healthy: int, says: str) -> None:
    v = view_pair(
        "prod", PAIR, farm(server(PROD, "online"), server(STAGE, "offline", healthy=healthy))
    )
    refusal = plan_switch(v, to)
    assert isinstance(refusal, Refusal) and says in refusal.reason


TWO_PER_SLOT = Pair.model_validate(
    {
        "slots": ["InternalProd", "InternalStage"],
        "router": {
            "host": PAIR.router.host.model_dump(),
            "farm": "MCMS",
            "public_url": "http://127.0.0.1:18080",
            "servers": {"InternalProd": ["p1", "p2"], "InternalStage": ["s1", "s2"]},
        },
    }
)


@pytest.mark.parametrize("to", ["InternalProd", "InternalStage"])
def test_every_plan_ends_clean_on_its_target_without_a_moment_of_no_traffic(to: str) -> None:
    """From every shape of a two-servers-per-slot farm: simulate the plan step by step."""
    tried = 0
    for shapes in itertools.product(SHAPES, repeat=4):
        start = farm(*(server(a, s) for a, s in zip(["p1", "p2", "s1", "s2"], shapes, strict=True)))
        plan = plan_switch(view_pair("prod", TWO_PER_SLOT, start), to)
        if isinstance(plan, Refusal):
            assert "already the live slot" in plan.reason
            continue
        tried += 1
        current, served = start, False
        for step in plan.steps:
            current = expect_after(current, step)
            now_served = any(s.mode == "online" for s in current.servers)
            assert now_served or not served, (shapes, step)  # once served, always served
            served = now_served
        end = view_pair("prod", TWO_PER_SLOT, current)
        assert (end.live, end.clean) == (to, True), (shapes, end.problems)
    assert tried > 600


def test_readback_matches_what_the_step_should_have_done() -> None:
    before = farm(server(PROD, "online", total=5), server(STAGE, "online"))
    plan = plan_switch(view_pair("prod", PAIR, before), "InternalStage")
    assert isinstance(plan, SwitchPlan)
    drain = plan.steps[0]
    expected = expect_after(before, drain)
    read_back = farm(server(PROD, "drain", total=9, current=2), server(STAGE, "online"))
    assert check_readback(expected, read_back) == ()


def test_readback_catches_a_farm_changed_behind_the_bots_back() -> None:
    expected = farm(server(PROD, "drain"), server(STAGE, "online"))
    changed = farm(server(PROD, "drain"), server(STAGE, "offline"), server("x", "online"))
    assert check_readback(expected, changed) == (
        "stage-web01 reads offline (disabled, Unavailable), expected online (enabled, Available)",
        "x appeared in farm MCMS (online (enabled, Available))",
    )
    gone = farm(server(PROD, "drain"))
    assert check_readback(expected, gone) == ("stage-web01 is no longer in farm MCMS",)


def test_error_rate_counts_between_two_reads_and_survives_a_router_restart() -> None:
    before = farm(server(PROD, "online", total=100, failed=1), server(STAGE, "offline"))
    after = farm(server(PROD, "online", total=300, failed=5), server(STAGE, "offline"))
    assert error_rate(before, after, [PROD]) == pytest.approx(4 / 200)
    assert error_rate(after, after, [PROD]) is None
    restarted = farm(replace(server(PROD, "online", total=10, failed=1)), server(STAGE, "offline"))
    assert error_rate(after, restarted, [PROD]) == pytest.approx(1 / 10)
    assert error_rate(before, after, ["nowhere"]) is None
