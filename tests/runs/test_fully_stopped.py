"""Playbook §4: a fully stopped service is redeployed, not refused.

The scene is set through the lab's control API (`POST /apply/{host}`, as an operator trying
it by hand would): both sites, both app pools and the Worker stopped; smoke answers -1
everywhere. `rollback Lab` then succeeds: stopping what is stopped and recycling a stopped
pool are successes ("was already stopped"), and everything ends started on the target.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from adapters.audit import verify
from lab.demo import API, PORTAL, WORKER
from tests.conftest import AUDIT_KEY_BYTES, table_rows
from tests.runs.test_rollback_flow import LAB_STEPS, audit_events, request_rollback

if TYPE_CHECKING:
    from tests.conftest import Chat


async def apply(chat: Chat, host: str, op: str, params: dict[str, Any]) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{chat.lab.control_url}/apply/{host}", json={"op": op, "params": params}
        ) as response,
    ):
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return body


async def test_a_fully_stopped_service_is_rolled_back_and_started_on_the_target(
    chat: Chat,
) -> None:
    host = chat.lab.host_for("Lab")
    for op, key, name in (
        ("site-control", "Site", PORTAL),
        ("site-control", "Site", API),
        ("pool-control", "AppPool", PORTAL),
        ("pool-control", "AppPool", API),
        ("service-control", "Service", WORKER),
    ):
        assert (await apply(chat, host, op, {key: name, "Action": "Stop"}))["state"] == "Stopped"
    await chat.say("smoke Lab")
    assert all(r[1].startswith("-1") for r in table_rows(chat.cards[-1])[1:])

    card, request_id = await request_rollback(chat)
    await chat.click("approve", card)
    request = await chat.wait_request(request_id, "succeeded", "failed")

    assert request.state == "succeeded", request
    state = chat.lab.state(host)
    assert {(n, s["state"], s["release"]) for n, s in state["sites"].items()} == {
        (PORTAL, "Started", "1.4.1"),
        (API, "Started", "1.4.1"),
    }
    assert {n: p["state"] for n, p in state["app_pools"].items()} == {
        PORTAL: "Started",
        API: "Started",
    }
    assert (state["services"][WORKER]["state"], state["services"][WORKER]["release"]) == (
        "Running",
        "1.4.1",
    )
    done = {e["step"]: e["detail"] for e in audit_events(chat) if e["event"] == "StepSucceeded"}
    assert list(done) == LAB_STEPS
    assert done["precheck"] == "no check answered: the service is fully stopped (informational)"
    for step in (f"stop_site:{PORTAL}", f"recycle_pool:{API}", f"stop_service:{WORKER}"):
        assert "Stopped (was already stopped)" in done[step], step
    assert done[f"start_pool:{PORTAL}"].endswith("Stopped → Started")
    assert verify(Path(chat.config.paths.audit_dir), [AUDIT_KEY_BYTES]).ok
