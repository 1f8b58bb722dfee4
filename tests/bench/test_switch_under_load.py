"""bench/switch_under_load.py's promise, kept short enough for every run: a blue/green switch
and back under steady load fails no request. The load generator is shown to see failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.load import run_load
from bench.switch_under_load import bench_config, switch_and_back
from bot.services import open_runtime
from lab.core import Lab
from lab.demo import DEMO_PASSWORD, DEMO_USERNAME
from tests.conftest import AUDIT_KEY

pytest_plugins = ["tests.lab_fixtures"]

PROD, STAGE = "prod-web01", "stage-web01"


async def test_a_switch_and_back_under_steady_load_fails_no_request(
    lab: Lab, lab_router: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCMS_LAB_WINRM_USER", DEMO_USERNAME)
    monkeypatch.setenv("MCMS_LAB_WINRM_PASSWORD", DEMO_PASSWORD)
    monkeypatch.setenv("MCMS_AUDIT_KEY", AUDIT_KEY)
    runtime = await open_runtime(bench_config(lab, tmp_path))
    try:
        result = await run_load(
            lab.public_url(lab_router) + "/health",
            rate=50,
            count=400,
            started=lambda: switch_and_back(runtime.services, "prod"),
        )
    finally:
        await runtime.close()

    assert (result.sent, result.ok, result.failed) == (400, 400, 0), result
    # The switch really happened under this load: both slots answered part of it, and the
    # change was over before the load ended.
    assert result.served_by[PROD] > 0 and result.served_by[STAGE] > 0, result.served_by
    assert result.change_s is not None and result.change_within_load
    servers = {s["address"]: (s["enabled"], s["state"]) for s in lab.farm(lab_router)["servers"]}
    assert servers == {PROD: (True, "Available"), STAGE: (False, "Unavailable")}
    assert all(s["failed_requests"] == 0 for s in lab.farm(lab_router)["servers"])


async def test_the_load_counts_failures_as_users_would_see_them(lab: Lab, lab_router: str) -> None:
    lab.set_fault(PROD, "http", "down")  # the live slot's site is down behind the router
    bad_gateway = await run_load(lab.public_url(lab_router) + "/health", rate=200, count=20)
    assert (bad_gateway.errors_5xx, bad_gateway.ok, bad_gateway.failed) == (20, 0, 20)
    assert bad_gateway.longest_gap_s == pytest.approx(bad_gateway.duration_s)

    refused = await run_load(lab.http_base(PROD) + "/health", rate=200, count=10)
    assert (refused.refused, refused.failed) == (10, 10)


@pytest.mark.parametrize("url", ["http://10.0.0.5/health", "http://example.com/health"])
async def test_the_load_is_never_sent_off_this_machine(url: str) -> None:
    with pytest.raises(ValueError, match="only sent to loopback"):
        await run_load(url, count=1)
