"""adapters.router.arr over real WinRM against the lab's router host, and its reply parsing
against an in-memory twin shell (reply shapes PowerShell 5.1 produces, garbage)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from adapters.errors import BadReply, InvalidName, RemoteScriptFailed
from adapters.router.arr import ArrRouter
from adapters.router.farm import Farm, FarmServer
from adapters.winrm.transport import WinRMShell
from lab.core import Lab
from tests.adapters.test_hostops import ScriptedShell
from tests.lab_pairs import request_in_flight

pytest_plugins = ["tests.lab_fixtures"]
ShellFactory = Callable[..., WinRMShell]  # the lab_shell fixture

PROD, STAGE = "prod-web01", "stage-web01"


@pytest.fixture
def router(lab_shell: ShellFactory, lab_router: str) -> ArrRouter:
    return ArrRouter(lab_shell(lab_router), "MCMS")


def modes(farm: Farm) -> dict[str, str]:
    return {s.address: s.mode for s in farm.servers}


async def test_read_farm_reports_configured_and_runtime_state_per_server(
    router: ArrRouter, lab_router: str
) -> None:
    farm = await router.read_farm(timeout_s=10)
    assert farm == Farm(
        router=lab_router,
        name="MCMS",
        servers=(
            FarmServer(PROD, True, "Available", True, 0, 0, 0),
            FarmServer(STAGE, False, "Unavailable", True, 0, 0, 0),
        ),
    )
    assert modes(farm) == {PROD: "online", STAGE: "offline"}
    assert router.name == f"{lab_router} (farm MCMS)"


async def test_each_change_is_made_on_the_router_and_read_back(
    router: ArrRouter, lab: Lab, lab_router: str
) -> None:
    after_online = await router.set_server(STAGE, "online", timeout_s=10)
    assert modes(after_online) == {PROD: "online", STAGE: "online"}
    after_drain = await router.set_server(PROD, "drain", timeout_s=10)
    assert modes(after_drain) == {PROD: "drain", STAGE: "online"}
    after_offline = await router.set_server(PROD, "offline", timeout_s=10)
    assert modes(after_offline) == {PROD: "offline", STAGE: "online"}

    lab_farm = {s["address"]: (s["enabled"], s["state"]) for s in lab.farm(lab_router)["servers"]}
    assert lab_farm == {PROD: (False, "Unavailable"), STAGE: (True, "Available")}
    assert [c.params["Action"] for c in lab.calls(lab_router)] == ["Online", "Drain", "Offline"]


async def test_wait_drained_returns_when_the_last_request_in_flight_finishes(
    router: ArrRouter, lab: Lab, lab_router: str
) -> None:
    lab.set_fault(PROD, "health", "slow", delay_s=3)
    async with request_in_flight(lab, lab_router, PROD) as request:
        await router.set_server(STAGE, "online", timeout_s=10)
        await router.set_server(PROD, "drain", timeout_s=10)
        assert not request.done()

        result = await router.wait_drained(PROD, deadline_s=20)

        # It waited for that request, and no longer than it took.
        assert result.drained and result.current_requests == 0
        assert request.done() and (await request) == 200
        assert result.waited_s < 10
        assert result.farm.server(PROD) is not None
        assert result.farm.server(PROD).total_requests == 1  # type: ignore[union-attr]


async def test_wait_drained_gives_up_at_the_deadline_with_requests_still_in_flight(
    router: ArrRouter, lab: Lab, lab_router: str
) -> None:
    lab.set_fault(PROD, "health", "slow", delay_s=4)
    async with request_in_flight(lab, lab_router, PROD):
        await router.set_server(PROD, "drain", timeout_s=10)

        result = await router.wait_drained(PROD, deadline_s=1)

        assert (result.drained, result.current_requests) == (False, 1)
        assert 1 <= result.waited_s < 3


async def test_an_unknown_server_or_farm_fails_naming_it_and_changes_nothing(
    router: ArrRouter, lab: Lab, lab_router: str, lab_shell: ShellFactory
) -> None:
    before = lab.farm(lab_router)
    with pytest.raises(RemoteScriptFailed, match="'prod-web02' is not in web farm 'MCMS'"):
        await router.set_server("prod-web02", "online", timeout_s=10)
    other = ArrRouter(lab_shell(lab_router), "Other")
    with pytest.raises(RemoteScriptFailed, match="web farm 'Other' does not exist"):
        await other.read_farm(timeout_s=10)
    assert lab.farm(lab_router) == before


async def test_a_hostile_server_address_is_refused_before_anything_is_sent(
    router: ArrRouter, lab: Lab, lab_router: str
) -> None:
    with pytest.raises(InvalidName, match="ServerAddress"):
        await router.set_server("web01'; iisreset #", "offline", timeout_s=10)
    assert lab.winrm_requests(lab_router) == 0


# --- reply parsing, against a twin of the shell -------------------------------------------


def server(**changes: Any) -> dict[str, Any]:
    base = {
        "address": PROD,
        "enabled": True,
        "state": "Available",
        "state_code": "0",
        "healthy": True,
        "current_requests": 0,
        "total_requests": 7,
        "failed_requests": 1,
    }
    return {**base, **changes}


async def test_one_server_unwrapped_by_powershell_is_still_a_farm_of_one() -> None:
    twin = ArrRouter(ScriptedShell({"ok": True, "farm": "MCMS", "servers": server()}), "MCMS")
    farm = await twin.read_farm(timeout_s=1)
    assert [s.address for s in farm.servers] == [PROD]
    assert farm.servers[0].failed_requests == 1


@pytest.mark.parametrize(
    ("reply", "says"),
    [
        ({"farm": "Other", "servers": [server()]}, "'farm'"),
        ({"farm": "MCMS", "servers": "prod-web01"}, "'servers'"),
        ({"farm": "MCMS", "servers": [server(state="Sleeping", state_code="7")]}, "'Sleeping'"),
        ({"farm": "MCMS", "servers": [server(current_requests=-1)]}, "current_requests"),
        ({"farm": "MCMS", "servers": [server(total_requests="7")]}, "total_requests"),
        ({"farm": "MCMS", "servers": [server(enabled="True")]}, "enabled"),
        ({"farm": "MCMS", "servers": [server(address="")]}, "address"),
        ({"farm": "MCMS", "servers": [server(), server(address="PROD-web01")]}, "'servers'"),
    ],
    ids=[
        "other-farm",
        "servers-not-a-list",
        "unknown-state",
        "negative-count",
        "count-as-text",
        "flag-as-text",
        "no-address",
        "duplicate-address",
    ],
)
async def test_a_garbled_farm_is_refused_not_guessed(reply: dict[str, Any], says: str) -> None:
    twin = ArrRouter(ScriptedShell({"ok": True, **reply}), "MCMS")
    with pytest.raises(BadReply, match=says):
        await twin.read_farm(timeout_s=1)


async def test_a_drain_result_that_contradicts_itself_is_refused() -> None:
    reply = {
        "ok": True,
        "farm": "MCMS",
        "drained": True,
        "current_requests": 3,
        "waited_ms": 10,
        "servers": [server(state="Drain")],
    }
    with pytest.raises(BadReply, match="current_requests"):
        await ArrRouter(ScriptedShell(reply), "MCMS").wait_drained(PROD, deadline_s=1)


async def test_a_change_reported_for_another_server_is_refused() -> None:
    reply = {"ok": True, "farm": "MCMS", "server": STAGE, "servers": [server()]}
    with pytest.raises(BadReply, match="'server'"):
        await ArrRouter(ScriptedShell(reply), "MCMS").set_server(PROD, "drain", timeout_s=1)
