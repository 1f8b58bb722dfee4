"""The lab's ARR router: a real reverse proxy whose farm state decides who gets each request."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lab.core import Lab
from lab.demo import demo_hosts, demo_routers

pytest_plugins = ["tests.lab_fixtures"]

PROD, STAGE = "prod-web01", "stage-web01"


async def get(url: str) -> tuple[int | str, str | None, str]:
    """Status (or "refused"), the server that answered behind the router, and the body."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(url) as response,
        ):
            return response.status, response.headers.get("X-Served-By"), await response.text()
    except aiohttp.ClientConnectorError:
        return "refused", None, ""


def servers(lab: Lab, router: str) -> dict[str, dict[str, Any]]:
    return {s["address"]: s for s in lab.farm(router)["servers"]}


def set_server(lab: Lab, router: str, address: str, action: str) -> dict[str, Any]:
    params = {"FarmName": "MCMS", "ServerAddress": address, "Action": action, "TimeoutSec": 5}
    result = lab.apply(router, "arr-set-server", params)
    assert result["ok"], result
    return result


async def wait_in_flight(lab: Lab, router: str, address: str, count: int) -> None:
    deadline = time.monotonic() + 5
    while servers(lab, router)[address]["current_requests"] != count:
        assert time.monotonic() < deadline, servers(lab, router)
        await asyncio.sleep(0.01)


async def test_public_url_answers_the_three_checks_from_the_live_slot(
    lab: Lab, lab_router: str
) -> None:
    base = lab.public_url(lab_router)
    status, served_by, body = await get(base + "/health")
    assert (status, served_by) == (200, PROD)
    assert '"version": "1.4.0"' in body
    assert (await get(base + "/swagger/index.html"))[:2] == (200, PROD)
    async with aiohttp.ClientSession() as session, session.get(base + "/api/auth/kerberos") as r:
        assert (r.status, r.headers["WWW-Authenticate"]) == (401, "Negotiate")
    counts = servers(lab, lab_router)
    assert counts[PROD]["total_requests"] == 3 and counts[STAGE]["total_requests"] == 0
    assert lab.state(PROD)["http_requests"] == 3


async def test_a_draining_server_finishes_its_requests_while_new_ones_go_to_the_online_one(
    lab: Lab, lab_router: str
) -> None:
    base = lab.public_url(lab_router)
    lab.set_fault(PROD, "health", "slow", delay_s=1)
    in_flight = asyncio.create_task(get(base + "/health"))
    await wait_in_flight(lab, lab_router, PROD, 1)

    set_server(lab, lab_router, STAGE, "Online")
    set_server(lab, lab_router, PROD, "Drain")
    assert servers(lab, lab_router)[PROD]["current_requests"] == 1
    new = await get(base + "/swagger/index.html")

    assert new[:2] == (200, STAGE)
    status, served_by, body = await in_flight
    assert (status, served_by) == (200, PROD) and '"version": "1.4.0"' in body
    counts = servers(lab, lab_router)
    assert counts[PROD]["current_requests"] == 0 and counts[PROD]["failed_requests"] == 0
    assert (counts[PROD]["total_requests"], counts[STAGE]["total_requests"]) == (1, 1)


async def test_5xx_answers_and_connection_failures_are_counted_apart_per_server(
    lab: Lab, lab_router: str
) -> None:
    base = lab.public_url(lab_router)
    lab.set_fault(PROD, "health", "error")
    assert (await get(base + "/health"))[:2] == (500, PROD)
    lab.set_fault(PROD, "http", "down")  # the live slot's portal refuses connections
    status, served_by, body = await get(base + "/swagger/index.html")
    assert (status, served_by) == (502, PROD) and "502.3" in body

    prod = servers(lab, lab_router)[PROD]
    assert (prod["total_requests"], prod["failed_requests"]) == (2, 2)
    assert (prod["errors_5xx"], prod["connection_failures"]) == (1, 1)
    assert prod["current_requests"] == 0


async def test_no_server_available_answers_503_and_counts_the_request_as_unrouted(
    lab: Lab, lab_router: str
) -> None:
    set_server(lab, lab_router, PROD, "Offline")
    status, served_by, body = await get(lab.public_url(lab_router) + "/health")
    assert (status, served_by) == (503, None) and "no server of farm MCMS" in body
    assert lab.farm(lab_router)["unrouted"] == 1


async def test_a_farm_changed_behind_the_bots_back_routes_to_both_slots(
    lab: Lab, lab_router: str
) -> None:
    status, state = await control(lab, "PUT", f"/farm/{lab_router}/{STAGE}", {"enabled": True})
    assert status == 200 and state["farm"]["servers"][1]["enabled"] is True
    await control(lab, "PUT", f"/farm/{lab_router}/{STAGE}", {"state": "Available"})

    answered = {(await get(lab.public_url(lab_router) + "/health"))[1] for _ in range(4)}
    assert answered == {PROD, STAGE}


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        (f"/farm/arr-front01/{STAGE}", {"state": "Sleeping"}, 400, "state must be one of"),
        (f"/farm/arr-front01/{STAGE}", {"enabled": "yes"}, 400, "true or false"),
        (f"/farm/arr-front01/{STAGE}", {"weight": 100}, 400, "the body must be"),
        ("/farm/arr-front01/no-such-server", {"enabled": True}, 404, "has no server"),
        (f"/farm/{PROD}/{STAGE}", {"enabled": True}, 404, "no router"),
        ("/farm/no-such-host/x", {"enabled": True}, 404, "no lab host"),
    ],
    ids=["bad-state", "bad-enabled", "unknown-key", "unknown-server", "not-a-router", "no-host"],
)
async def test_the_farm_control_api_refuses_bad_changes(
    lab: Lab, path: str, body: dict[str, Any], status: int, says: str
) -> None:
    before = lab.farm("arr-front01")
    got, answer = await control(lab, "PUT", path, body)
    assert (got, says in answer["error"]) == (status, True), answer
    assert lab.farm("arr-front01") == before


async def test_state_of_the_router_host_shows_its_farm_and_public_url(
    lab: Lab, lab_router: str
) -> None:
    status, state = await control(lab, "GET", f"/state/{lab_router}")
    assert status == 200
    assert state["public_url"] == lab.public_url(lab_router) and state["pair"] == "prod"
    assert [(s["address"], s["enabled"], s["state"]) for s in state["farm"]["servers"]] == [
        (PROD, True, "Available"),
        (STAGE, False, "Unavailable"),
    ]


async def test_the_public_url_closes_with_the_routers_site_or_an_http_down_fault(
    lab: Lab, lab_router: str
) -> None:
    base = lab.public_url(lab_router)
    lab.set_fault(lab_router, "http", "down")
    assert (await get(base + "/health"))[0] == "refused"
    lab.clear_faults(lab_router)
    assert (await get(base + "/health"))[0] == 200
    stopped = lab.apply(lab_router, "site-control", {"Site": "Default Web Site", "Action": "Stop"})
    assert stopped["state"] == "Stopped"
    assert (await get(base + "/health"))[0] == "refused"


def test_a_host_without_arr_fails_the_farm_scripts_like_iis_would(lab: Lab) -> None:
    result = lab.apply(PROD, "arr-read-farm", {"FarmName": "MCMS"})
    assert result["ok"] is False and "webFarms" in result["error"]


def test_a_locked_configuration_fails_online_and_leaves_the_server_out(
    lab: Lab, lab_router: str
) -> None:
    lab.set_fault(lab_router, "farm", "config_locked")
    params = {"FarmName": "MCMS", "ServerAddress": STAGE, "Action": "Online", "TimeoutSec": 5}
    result = lab.apply(lab_router, "arr-set-server", params)
    assert result["ok"] is False and "Cannot write configuration file" in result["error"]
    stage = servers(lab, lab_router)[STAGE]
    assert (stage["enabled"], stage["state"]) == (False, "Unavailable")


def test_a_locked_configuration_leaves_an_offline_server_out_at_runtime_only(
    lab: Lab, lab_router: str
) -> None:
    """The script stops the server at runtime, then fails to write enabled=false: a router
    restart would bring it back. The farm must say so, not pretend it is offline."""
    lab.set_fault(lab_router, "farm", "config_locked")
    params = {"FarmName": "MCMS", "ServerAddress": PROD, "Action": "Offline", "TimeoutSec": 5}
    assert lab.apply(lab_router, "arr-set-server", params)["ok"] is False
    prod = servers(lab, lab_router)[PROD]
    assert (prod["enabled"], prod["state"]) == (True, "Unavailable")


def test_router_specs_must_name_lab_hosts(tmp_path: Path) -> None:
    bad = replace(demo_routers(fixed_ports=False)[0], servers=(PROD, "prod-web02"))
    with pytest.raises(ValueError, match="prod-web02"):
        Lab(demo_hosts(fixed_ports=False), tmp_path, routers=[bad])


async def test_portal_latency_keeps_requests_in_flight(tmp_path: Path) -> None:
    slow = [replace(spec, portal_latency_s=0.2) for spec in demo_hosts(fixed_ports=False)]
    with Lab(slow, tmp_path) as lab:
        started = time.monotonic()
        assert (await get(lab.http_base(PROD) + "/health"))[0] == 200
        assert time.monotonic() - started >= 0.2


async def control(lab: Lab, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, lab.control_url + path, json=body) as response,
    ):
        return response.status, await response.json()
