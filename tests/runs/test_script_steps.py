"""The operators' own scripts as plan steps: bound from the run, shown, hashed, run, recorded.

The lab has the playbook's scripts installed (lab/scripts.py) and binds every call against
their param() blocks; each test reads what the host received from the lab's own record
(`Lab.script_runs`), and what a failing script leaves on the hosts from the lab's state.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from commands.plan import ScriptBindError, build_plan
from lab.core import Lab
from lab.scripts import SCRIPTS_DIR
from tests.conftest import ChatSetup, card_texts, lab_config
from tests.runs.failing import fails_leaving_lab_as_before
from tests.runs.test_rollback_flow import audit_events, request_rollback

if TYPE_CHECKING:
    from tests.conftest import Chat, ConfigEdit

pytestmark = pytest.mark.slow

NOTIFY = f"{SCRIPTS_DIR}\\notify-deploy.ps1"
CAM = f"{SCRIPTS_DIR}\\Deploy-CamService.ps1"
PACKAGE = f"{SCRIPTS_DIR}\\package-offline.ps1"
# Would end a quoted string and run a command if it were ever spliced into script text.
EVENTS = "Approved|RolledBack|Deployed"
HOSTILE = "it's done'; Remove-Item C:\\ -Recurse # $(calc) `whoami`"


def playbook_scripts(lab: Lab) -> ConfigEdit:
    """Lab's scripts as the playbook calls them; notify-deploy on an ops box ("ops01", played
    by the lab's InternalStage host), the others on every host of the plan."""

    def edit(raw: dict[str, Any]) -> None:
        raw["runner_hosts"] = [
            {
                "name": "ops01",
                "winrm_url": lab.winrm_url(lab.host_for("InternalStage")),
                "transport": "basic",
                "allow_insecure_transport": True,
                "username_env": "MCMS_LAB_WINRM_USER",
                "password_env": "MCMS_LAB_WINRM_PASSWORD",
            }
        ]
        raw["environments"]["Lab"]["scripts"] = [
            {
                "name": "notify-deploy",
                "path": NOTIFY,
                "at": "notify",
                "runs_on": "ops01",
                "timeout_s": 20,
                "parameters": [
                    {"name": "EventType", "value": "{event}", "pattern": EVENTS},
                    {"name": "Environment", "value": "{environment}"},
                    {"name": "Version", "value": "{target_version}"},
                    {"name": "Message", "value": HOSTILE},
                ],
            },
            {
                "name": "package-offline",
                "path": PACKAGE,
                "at": "before_stop",
                "parameters": [
                    {"name": "SkipBuild", "type": "switch", "value": "true"},
                    {"name": "Version", "value": "{target_version}", "pattern": r"[0-9.]+"},
                ],
            },
            {
                "name": "cam-service",
                "path": CAM,
                "at": "after_switch",
                "timeout_s": 20,
                "parameters": [
                    {"name": "Environment", "value": "{environment}"},
                    {"name": "Version", "value": "{target_version}"},
                ],
            },
        ]  # fmt: skip

    return edit


@pytest.fixture
def config_edit(lab: Lab) -> ConfigEdit:
    return playbook_scripts(lab)


def ops_host(chat: Chat) -> str:
    return chat.lab.host_for("InternalStage")


# --- the plan ------------------------------------------------------------------------------


def test_bound_parameters_are_part_of_the_plan_and_its_hash(lab: Lab, tmp_path: Path) -> None:
    def plan_for(edit: ConfigEdit, kind: Any = "rollback") -> Any:
        env = lab_config(lab, tmp_path, edit).environments["Lab"]
        return build_plan(
            kind, "Lab", env, current_version="1.4.2", target_version="1.4.1",
            sha256="ab" * 32, package="MCMS_Setup_1.4.1.zip", source="requested",
        )  # fmt: skip

    plan = plan_for(playbook_scripts(lab))
    keys = [s.key for s in plan.steps]
    assert keys.index("script:package-offline") == keys.index("notify_start") + 1
    assert keys.index("script:cam-service") == keys.index("switch") + 1
    titles = {s.key: s.title for s in plan.steps}
    assert titles["script:package-offline"] == (
        "Run package-offline.ps1 -SkipBuild -Version 1.4.1 (on every host)"
    )
    assert (
        "notify-deploy.ps1 -EventType RolledBack -Environment Lab -Version 1.4.1"
        in (titles["notify_start"])
    )
    assert "(on ops01)" in titles["notify_start"]
    assert "-EventType Deployed" in titles["notify_end"]
    deploy = plan_for(playbook_scripts(lab), "deploy")
    assert "-EventType Approved" in {s.key: s.title for s in deploy.steps}["notify_start"]

    def other_version_param(raw: dict[str, Any]) -> None:
        playbook_scripts(lab)(raw)
        raw["environments"]["Lab"]["scripts"][2]["parameters"][1]["value"] = "{current_version}"

    assert plan_for(other_version_param).hash != plan.hash
    assert plan_for(lambda raw: None).hash != plan.hash


def test_a_value_outside_its_pattern_refuses_the_plan(lab: Lab, tmp_path: Path) -> None:
    def strict(raw: dict[str, Any]) -> None:
        playbook_scripts(lab)(raw)
        env = raw["environments"]["Lab"]["scripts"][2]["parameters"][0]
        env["pattern"] = "InternalStage|InternalProd"

    env = lab_config(lab, tmp_path, strict).environments["Lab"]
    with pytest.raises(ScriptBindError, match=r"-Environment 'Lab' does not match its pattern"):
        build_plan(
            "rollback", "Lab", env, current_version="1.4.2", target_version="1.4.1",
            sha256="ab" * 32, package="MCMS_Setup_1.4.1.zip", source="requested",
        )  # fmt: skip


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"parameters": [{"name": "X", "value": "{password}"}]}, "unknown placeholder {password}"),
        ({"at": "after_start", "parameters": [{"name": "E", "value": "{event}"}]}, "{event}"),
        ({"parameters": [{"name": "S", "type": "switch", "value": "yes"}]}, "a switch takes"),
        ({"parameters": [{"name": "N", "type": "int", "value": "ten"}]}, "not a whole number"),
        ({"path": "D:\\MCMS\\..\\Windows\\x.ps1"}, "must be the absolute path of a .ps1"),
        ({"path": "\\\\share\\x.ps1"}, "must be the absolute path of a .ps1"),
        ({"runs_on": "nowhere"}, "runs_on: unknown runner host"),
        ({"parameters": [{"name": "Bad Name", "value": "x"}]}, "not a PowerShell parameter"),
    ],
    ids=lambda v: str(v)[:24],
)
def test_a_bad_script_step_is_refused_when_the_config_loads(
    lab: Lab, tmp_path: Path, change: dict[str, Any], says: str
) -> None:
    def edit(raw: dict[str, Any]) -> None:
        raw["environments"]["Lab"]["scripts"] = [
            {"name": "s", "path": CAM, "at": "after_start", **change}
        ]

    with pytest.raises(ValueError) as raised:
        lab_config(lab, tmp_path, edit)
    assert says in str(raised.value)


# --- the run -------------------------------------------------------------------------------


async def test_each_script_runs_at_its_place_with_its_parameters_as_the_host_records(
    chat: Chat,
) -> None:
    host = chat.lab.host_for("Lab")
    card, request_id = await request_rollback(chat)
    texts = " ".join(card_texts(card))
    assert "Run package-offline.ps1 -SkipBuild -Version 1.4.1 (on every host)" in texts
    assert "Run Deploy-CamService.ps1 -Environment Lab -Version 1.4.1 (on every host)" in texts
    assert "notify-deploy.ps1 -EventType RolledBack -Environment Lab" in texts

    await chat.click("approve", card)
    request = await chat.wait_request(request_id, "succeeded", "failed", timeout=60)

    assert request.state == "succeeded", request.reason
    # What the hosts themselves recorded, as bound by their param() blocks.
    assert chat.lab.script_runs(host) == [
        {"script": PACKAGE, "parameters": {"SkipBuild": True, "Version": "1.4.1"},
         "ended": "exited", "exit_code": 0},
        {"script": CAM, "parameters": {"Environment": "Lab", "Version": "1.4.1"},
         "ended": "exited", "exit_code": 0},
    ]  # fmt: skip
    notified = chat.lab.script_runs(ops_host(chat))
    assert [(r["script"], r["parameters"]["EventType"]) for r in notified] == [
        (NOTIFY, "RolledBack"),
        (NOTIFY, "Deployed"),
    ]
    # A value that would break out of a quoted string arrives as data, byte for byte.
    assert notified[0]["parameters"] == {
        "EventType": "RolledBack", "Environment": "Lab", "Version": "1.4.1", "Message": HOSTILE,
    }  # fmt: skip
    # Where they ran: package-offline before anything stopped, the CAM service after the
    # switch and before anything started again.
    ops = [(c.op, c.params.get("Action")) for c in chat.lab.calls(host)]
    runs = [i for i, (op, _) in enumerate(ops) if op == "run-script"]
    stops = [
        i for i, (op, action) in enumerate(ops) if op.endswith("-control") and action != "Start"
    ]
    starts = [
        i for i, (op, action) in enumerate(ops) if op.endswith("-control") and action == "Start"
    ]
    switch = next(i for i, (op, _) in enumerate(ops) if op == "switch-release")
    assert runs[0] < min(stops) and switch < runs[1] < min(starts)
    steps = {e["step"]: e["detail"] for e in audit_events(chat) if e["event"] == "StepSucceeded"}
    assert "cam-service exit 0" in steps["script:cam-service"]
    assert "Deploy-CamService.ps1: CAM service deployed" in steps["script:cam-service"]
    assert "notify-deploy exit 0" in steps["notify_start"]


async def test_a_failing_script_fails_the_run_and_the_restore_puts_the_hosts_back(
    chat: Chat,
) -> None:
    host = chat.lab.host_for("Lab")
    chat.lab.set_fault(host, "script", "fail", name="Deploy-CamService.ps1")

    await fails_leaving_lab_as_before(chat, "restored")

    assert chat.lab.script_runs(host)[-1]["exit_code"] == 1
    failed = [e for e in audit_events(chat) if e["event"] == "StepFailed"]
    assert [e["step"] for e in failed] == ["script:cam-service"]
    assert (
        "Deploy-CamService.ps1 -Environment Lab -Version 1.4.1 (on every host) exited 1"
        in (failed[0]["detail"])
    )
    assert "lab-injected failure" in failed[0]["detail"]
    # The run failed before its end: the team's script heard RolledBack, never Deployed.
    events = [r["parameters"]["EventType"] for r in chat.lab.script_runs(ops_host(chat))]
    assert events == ["RolledBack"]


async def test_a_failing_notify_script_stops_the_run_before_anything_is_stopped(
    chat: Chat,
) -> None:
    host = chat.lab.host_for("Lab")
    chat.lab.set_fault(ops_host(chat), "script", "fail", name="notify-deploy.ps1")

    await fails_leaving_lab_as_before(chat, "unchanged")

    assert not any(c.op.endswith("-control") for c in chat.lab.calls(host))
    assert chat.lab.script_runs(host) == []


def slow_cam(raw: dict[str, Any]) -> None:
    raw["environments"]["Lab"]["scripts"][2]["timeout_s"] = 2


@pytest.mark.parametrize("chat", [ChatSetup(tweak=slow_cam)], indirect=True, ids=["2s"])
async def test_a_script_past_its_deadline_fails_the_step_and_restores(chat: Chat) -> None:
    host = chat.lab.host_for("Lab")
    chat.lab.set_fault(host, "script", "slow", name="Deploy-CamService.ps1", delay_s=30)

    await fails_leaving_lab_as_before(chat, "restored")

    failed = next(e for e in audit_events(chat) if e["event"] == "StepFailed")
    assert failed["step"] == "script:cam-service"
    assert "did not finish within 2 s and was stopped" in failed["detail"]


def strict_environment(raw: dict[str, Any]) -> None:
    raw["environments"]["Lab"]["scripts"][2]["parameters"][0]["pattern"] = "Internal.*"


@pytest.mark.parametrize("chat", [ChatSetup(tweak=strict_environment)], indirect=True, ids=[""])
async def test_a_request_whose_script_value_breaks_its_pattern_is_refused(chat: Chat) -> None:
    reply = await chat.say("rollback Lab")
    assert "script cam-service: -Environment 'Lab' does not match its pattern" in reply.text
    assert "Nothing was requested." in reply.text
    assert chat.lab.script_runs(chat.lab.host_for("Lab")) == []
