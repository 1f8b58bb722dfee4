"""Farms: hosts that cannot be reached are excluded in the open, and every step acts on all
hosts at once, each with its own deadline.

Today one unreachable host made a whole environment impossible to plan; and a run's per-host
steps went one host after another, so one slow host starved the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from commands.config import load_config
from commands.plan import Exclusion, build_plan
from lab.core import Lab
from lab.demo import API, WORKER
from tests.conftest import DEMO_CONFIG, card_texts, open_chat
from tests.farm import components, farm_config, farm_hosts
from tests.runs.test_rollback_bad_paths import MUTATING_OPS
from tests.runs.test_rollback_flow import audit_events, request_rollback

if TYPE_CHECKING:
    from tests.conftest import Chat
    from tests.fake_connector import FakeConnector

FARM = {"Farm": ["farm-web01", "farm-web02", "farm-web03"]}


def mutations(lab: Lab, host: str) -> list[str]:
    return [c.op for c in lab.calls(host) if c.op in MUTATING_OPS]


@pytest.fixture
async def farm(tmp_path: Path, fake_connector: FakeConnector, lab_credentials: None) -> Any:
    with Lab(farm_hosts(FARM), tmp_path / "lab") as lab:
        config = farm_config(lab, tmp_path, FARM)
        async with open_chat(lab, fake_connector, config) as chat:
            yield chat


def test_an_exclusion_is_part_of_what_the_approval_binds_to() -> None:
    env = load_config(DEMO_CONFIG).environments["Lab"]
    args: dict[str, Any] = {
        "current_version": "1.4.2", "target_version": "1.4.1", "sha256": "a" * 64,
        "package": "MCMS_Setup_1.4.1.zip", "source": "requested",
    }  # fmt: skip
    everyone = build_plan("rollback", "Lab", env, **args)
    without = build_plan(
        "rollback", "Lab", env, **args, hosts=(), excluded=(Exclusion("lab-web01", "down"),)
    )
    reworded = build_plan(
        "rollback", "Lab", env, **args, hosts=(), excluded=(Exclusion("lab-web01", "gone"),)
    )
    assert everyone.hash != without.hash
    assert without.hash == reworded.hash, "the reason explains; the host binds"


async def test_an_unreachable_host_is_shown_excluded_and_the_run_leaves_it_alone(
    farm: Chat,
) -> None:
    chat, lab = farm, farm.lab
    lab.set_fault("farm-web02", "winrm", "down")
    card, request_id = await request_rollback(chat, "rollback Farm")
    hosts = next(t for t in card_texts(card) if t.startswith("Hosts: "))
    assert "farm-web01 ✅ reachable" in hosts and "farm-web03 ✅ reachable" in hosts
    assert "farm-web02 ❌ EXCLUDED — unreachable: cannot connect to WinRM on farm-web02" in hosts
    assert any(t.startswith("**Approving runs it without farm-web02**") for t in card_texts(card))
    requested = next(e for e in audit_events(chat) if e["event"] == "Requested")
    assert [e["host"] for e in requested["detail"]["excluded"]] == ["farm-web02"]

    lab.clear_faults()  # it comes back before the approval: the approval still excludes it
    before = components(lab.state("farm-web02"))
    await chat.click("approve", card)
    assert (await chat.wait_request(request_id, "succeeded", "failed", "void")).state == "succeeded"
    assert mutations(lab, "farm-web02") == []
    assert components(lab.state("farm-web02")) == before
    for host in ("farm-web01", "farm-web03"):
        assert {s["release"] for s in lab.state(host)["sites"].values()} == {"1.4.1"}
    # The history per host says which hosts were switched.
    switched = {s.host for s in await chat.store.host_switches("Farm")}
    assert switched == {"farm-web01", "farm-web03"}


async def test_a_host_that_stops_answering_after_the_approval_voids_it(farm: Chat) -> None:
    chat, lab = farm, farm.lab
    card, request_id = await request_rollback(chat, "rollback Farm")
    lab.set_fault("farm-web03", "winrm", "down")
    await chat.click("approve", card)
    request = await chat.wait_request(request_id, "void", "succeeded", "failed")
    assert request.state == "void" and "excluded: [] → ['farm-web03']" in (request.reason or "")
    assert all(mutations(lab, h) == [] for h in FARM["Farm"])


async def test_exclude_names_a_host_the_run_must_not_touch(farm: Chat) -> None:
    chat, lab = farm, farm.lab
    card, request_id = await request_rollback(chat, "rollback Farm --exclude farm-web01")
    hosts = next(t for t in card_texts(card) if t.startswith("Hosts: "))
    assert "farm-web01 ❌ EXCLUDED — excluded by request (--exclude)" in hosts
    await chat.click("approve", card)
    assert (await chat.wait_request(request_id, "succeeded", "failed")).state == "succeeded"
    assert mutations(lab, "farm-web01") == []

    reply = await chat.say("rollback Farm --exclude farm-web09")
    assert "There is no host `farm-web09` in this environment" in reply.text
    assert "Nothing was requested" in reply.text
    reply = await chat.say("rollback Farm --exclude")
    assert "`--exclude` needs a host name" in reply.text
    reply = await chat.say(
        "rollback Farm --exclude farm-web01 --exclude farm-web02 --exclude farm-web03"
    )
    assert "No host of Farm can take part" in reply.text


async def test_every_host_runs_a_step_at_once_and_one_stuck_host_fails_only_itself(
    tmp_path: Path, fake_connector: FakeConnector, lab_credentials: None
) -> None:
    """Each script takes 0.4 s on each host: a step on 3 hosts takes about that once, not
    three times. One host's stuck site fails the step naming it alone; the others finish."""
    latency = 0.4
    with Lab(farm_hosts(FARM, script_latency_s=latency), tmp_path / "lab") as lab:
        config = farm_config(lab, tmp_path, FARM, timeouts={"stop_s": 2})
        lab.set_fault("farm-web02", "site", "stuck", name=API, action="Stop")
        async with open_chat(lab, fake_connector, config) as chat:
            card, request_id = await request_rollback(chat, "rollback Farm")
            await chat.click("approve", card)
            await chat.wait_request(request_id, "failed", "succeeded", timeout=60)
            steps = {
                e["step"]: e
                for e in audit_events(chat)
                if e["event"] in ("StepSucceeded", "StepFailed")
            }
    # Three hosts at once: well under two scripts' time, where one after another takes three.
    stop_portal = steps["stop_site:MCMS.Portal"]
    assert stop_portal["duration_ms"] < 2 * latency * 1000, stop_portal
    failed = steps[f"stop_site:{API}"]
    assert failed["event"] == "StepFailed"
    assert failed["detail"].startswith(f"farm-web02: IIS site '{API}' on farm-web02 is 'Stopping'")
    assert failed["detail"].endswith("(done on farm-web01, farm-web03)")
    assert f"stop_service:{WORKER}" not in steps


async def test_status_of_a_farm_reads_every_host_at_once(farm: Chat) -> None:
    chat, lab = farm, farm.lab
    await chat.say("status Farm")
    rows = [r for r in card_texts(chat.cards[-1]) if r.startswith("Drift: ")]
    assert rows == ["Drift: none: every component on every host runs the same release"]
    assert all(lab.winrm_requests(h) > 0 for h in FARM["Farm"])
