"""DR gates in a rollback's plan, and a DR check and a run never on one environment at once.

The gates are real child processes (tests/fixtures/dr/fake_suite.py writing real JUnit
reports) run by the bot's local runner, as `check` runs them; what a failing gate leaves
on the hosts is read from the lab after the restore, not from the bot's words.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from commands.config import Config
from commands.plan import build_plan
from lab.core import Lab
from tests.conftest import ChatSetup, card_texts, lab_config, table_rows
from tests.farm import components
from tests.runs.failing import fails_leaving_lab_as_before
from tests.runs.test_rollback_flow import audit_events, request_rollback

if TYPE_CHECKING:
    from tests.conftest import Chat, ConfigEdit

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dr"
FAKE_SUITE = str(FIXTURES / "fake_suite.py")


def e2e_runner(tmp_path: Path, *args: str) -> dict[str, Any]:
    return {
        "command": [sys.executable, FAKE_SUITE, "report={report}", *args],
        "working_dir": str(tmp_path),
        "report": "reports/{environment}/junit.xml",
        "env": {"BASE_URL": "{base_url}"},
        "timeout_s": 30,
    }


@pytest.fixture
def suite_args(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """The e2e gate's fake suite arguments: `@pytest.mark.parametrize("suite_args", [...],
    indirect=True)`; a passing JUnit report by default."""
    return tuple(getattr(request, "param", ("copy=junit-node-passing.xml",)))


@pytest.fixture
def config_edit(tmp_path: Path, suite_args: tuple[str, ...]) -> ConfigEdit:
    def edit(raw: dict[str, Any]) -> None:
        lab = raw["environments"]["Lab"]
        lab["dr"]["e2e"] = e2e_runner(tmp_path, *suite_args)
        lab["dr"].pop("axe", None)
        lab["gates"] = ["smoke", "e2e"]

    return edit


def failing(*extra: str) -> pytest.MarkDecorator:
    args = ("copy=junit-node-failing.xml", "exit=1", *extra)
    return pytest.mark.parametrize("suite_args", [args], indirect=True, ids=["failing"])


def dr_folders(chat: Chat) -> list[Path]:
    return sorted((Path(chat.config.paths.smoke_logs_dir) / "dr").glob("dr-*"))


# --- the plan ------------------------------------------------------------------------------


def test_gates_are_part_of_the_plan_and_its_hash(lab: Lab, tmp_path: Path) -> None:
    def with_gates(gates: list[str]) -> ConfigEdit:
        def edit(raw: dict[str, Any]) -> None:
            raw["environments"]["Lab"]["dr"]["e2e"] = e2e_runner(tmp_path)
            raw["environments"]["Lab"]["gates"] = gates

        return edit

    def plan_for(config: Config) -> Any:
        env = config.environments["Lab"]
        return build_plan(
            "rollback", "Lab", env, current_version="1.4.2", target_version="1.4.1",
            sha256="ab" * 32, package="MCMS_Setup_1.4.1.zip", source="requested",
        )  # fmt: skip

    none = plan_for(lab_config(lab, tmp_path, with_gates([])))
    gated = plan_for(lab_config(lab, tmp_path, with_gates(["e2e", "smoke"])))
    assert gated.gates == ("smoke", "e2e")  # matrix order, whatever the config's
    assert none.hash != gated.hash
    keys = [s.key for s in gated.steps]
    assert keys[keys.index("smoke") + 1] == "gates"
    assert "DR-SMOKE, DR-E2E" in gated.steps[keys.index("gates")].title
    assert "gates" not in [s.key for s in none.steps]


def test_a_gate_without_its_runner_is_refused_at_load(lab: Lab, tmp_path: Path) -> None:
    def edit(raw: dict[str, Any]) -> None:
        raw["environments"]["Lab"]["dr"].pop("e2e", None)
        raw["environments"]["Lab"]["gates"] = ["e2e"]

    with pytest.raises(ValueError, match=r'gates names "e2e" but no runner is configured'):
        lab_config(lab, tmp_path, edit)


# --- the run -------------------------------------------------------------------------------


async def test_the_approval_card_lists_the_gates_and_passing_gates_verify_the_run(
    chat: Chat,
) -> None:
    card, request_id = await request_rollback(chat)
    texts = " ".join(card_texts(card))
    assert "DR-SMOKE, DR-E2E after smoke: each must pass, or the run fails" in texts
    assert "DR gates DR-SMOKE, DR-E2E: each must pass" in texts

    await chat.click("approve", card)
    request = await chat.wait_request(request_id, "succeeded", "failed", timeout=60)

    assert request.state == "succeeded"
    run = await chat.store.run_for_request(request_id)
    assert run is not None
    gates = [e for e in audit_events(chat) if e["event"] == "DrTest"]
    assert [(e["step"], e["status"], e["run_id"]) for e in gates] == [
        ("DR-SMOKE", "passed", run.id),
        ("DR-E2E", "passed", run.id),
    ]
    passed = [e for e in audit_events(chat) if e["event"] == "StepSucceeded"]
    assert "DR-E2E passed (5 tests · 0 failed)" in next(
        e["detail"] for e in passed if e["step"] == "gates"
    )
    (folder,) = dr_folders(chat)
    assert (folder / "DR-E2E.report.xml").is_file()
    assert f'"gate_of": "{run.id}"' in (folder / "check.json").read_text()
    stable = await chat.store.current_deployment("Lab")
    assert stable is not None and stable.version == "1.4.1"


@failing()
async def test_a_failing_gate_fails_the_run_and_the_restore_puts_the_hosts_back(
    chat: Chat,
) -> None:
    host = chat.lab.host_for("Lab")
    run = await fails_leaving_lab_as_before(chat, "restored")

    # The lab's own state: every component back where it was, the old release serving.
    assert {s["release"] for s in chat.lab.state(host)["sites"].values()} == {"1.4.2"}
    failed = [e for e in audit_events(chat) if e["event"] == "StepFailed"]
    assert [e["step"] for e in failed] == ["gates"]
    why = failed[0]["detail"]
    assert "a DR gate did not pass" in why and "DR-E2E failed (5 tests · 3 failed" in why
    assert "signing in with the operator account opens the releases list" in why
    ended = [e for e in audit_events(chat) if e["event"] == "Failed"][-1]
    assert ended["detail"]["restore"] == "restored"
    # Not marked stable: the next rollback's "previous stable" is not the failed target.
    current = await chat.store.current_deployment("Lab")
    assert current is None or current.version != "1.4.1"
    progress = chat.puts(run.progress_activity_id or "")[-1].body["attachments"][0]["content"]
    rows = {r[1]: r[2] for r in table_rows(progress)}
    assert rows["DR gates DR-SMOKE, DR-E2E: each must pass"] == "❌ failed"


def on_failure_stop(raw: dict[str, Any]) -> None:
    raw["environments"]["Lab"]["on_failure"] = "stop"


@failing()
@pytest.mark.parametrize("chat", [ChatSetup(tweak=on_failure_stop)], indirect=True, ids=["stop"])
async def test_a_failing_gate_with_on_failure_stop_leaves_the_new_version_running(
    chat: Chat,
) -> None:
    host = chat.lab.host_for("Lab")
    card, request_id = await request_rollback(chat)
    assert 'on_failure = "stop"' in " ".join(card_texts(card))
    await chat.click("approve", card)

    request = await chat.wait_request(request_id, "failed", "succeeded", timeout=60)

    assert request.state == "failed"
    run = await chat.store.run_for_request(request_id)
    assert run is not None and run.restore == "not-restored"
    assert {s["release"] for s in chat.lab.state(host)["sites"].values()} == {"1.4.1"}


@pytest.mark.parametrize("suite_args", [("sleep=60",)], indirect=True, ids=["slow"])
async def test_cancel_during_a_gate_kills_the_suite_and_restores(chat: Chat) -> None:
    host = chat.lab.host_for("Lab")
    before = components(chat.lab.state(host))
    card, request_id = await request_rollback(chat)
    await chat.click("approve", card)
    await chat.eventually(
        lambda: any(e.get("step") == "DR-SMOKE" for e in audit_events(chat)), timeout=30
    )
    run = await chat.store.run_for_request(request_id)
    assert run is not None

    answer = await chat.say(f"cancel {run.id}")
    assert "Cancel requested" in answer.text
    request = await chat.wait_request(request_id, "cancelled", "failed", "succeeded", timeout=30)

    assert request.state == "cancelled"
    done = await chat.store.get_run(run.id)
    assert done is not None and done.restore == "restored"
    assert components(chat.lab.state(host)) == before
    e2e = [e for e in audit_events(chat) if e["event"] == "DrTest" and e["step"] == "DR-E2E"]
    assert e2e[0]["status"] == "cancelled"
    assert e2e[0]["duration_ms"] < 30_000  # killed, not waited out


# --- a check and a run exclude each other --------------------------------------------------


@pytest.mark.parametrize("suite_args", [("sleep=60",)], indirect=True, ids=["slow"])
async def test_no_rollback_is_requested_while_a_check_runs(chat: Chat) -> None:
    check = await chat.say("check Lab e2e")
    check_id = check.text.split("(")[1].split(")")[0]
    await chat.eventually(lambda: chat.runtime.services.checks.active("Lab") is not None)

    reply = await chat.say("rollback Lab")

    assert f"Lab is busy: DR check `{check_id}` started by Alex Wilber is testing it" in reply.text
    assert f"`cancel {check_id}`. Nothing was requested." in reply.text
    assert chat.lab.calls(chat.lab.host_for("Lab")) == []
    await chat.say(f"cancel {check_id}")
    await chat.eventually(lambda: chat.runtime.services.checks.active("Lab") is None, timeout=15)


@pytest.mark.parametrize("suite_args", [("sleep=60",)], indirect=True, ids=["slow"])
async def test_a_check_that_starts_while_an_approved_run_replans_stops_the_run(
    chat: Chat,
) -> None:
    """The run re-reads the hosts after the approval; a check started meanwhile wins: the
    run ends failed (busy) before it stops anything, and says why."""
    host = chat.lab.host_for("Lab")
    card, request_id = await request_rollback(chat)
    chat.lab.hold(host, "read-state")
    await chat.click("approve", card)
    await chat.eventually(lambda: bool(chat.lab.held(host)), timeout=10)
    check = await chat.say("check Lab e2e")
    check_id = check.text.split("(")[1].split(")")[0]
    chat.lab.release(host)

    request = await chat.wait_request(request_id, "failed", "succeeded", timeout=30)

    assert request.state == "failed"
    assert "DR check" in (request.reason or "") and check_id in (request.reason or "")
    ops = [c.op for c in chat.lab.calls(host)]
    assert "preflight" not in ops and not any(op.endswith("-control") for op in ops)
    told = [c.text for c in chat.replies if f"{request_id} did not start" in c.text]
    assert told and f"DR check `{check_id}`" in told[0]
    await chat.say(f"cancel {check_id}")
    await chat.eventually(lambda: chat.runtime.services.checks.active("Lab") is None, timeout=15)


async def test_no_check_starts_while_a_run_has_reserved_the_environment(chat: Chat) -> None:
    checks = chat.runtime.services.checks
    assert checks.reserve_for_run("Lab", "run-0000cafe") is None
    reply = await chat.say("check Lab smoke")
    assert "Lab is being changed by run-0000cafe" in reply.text and "Nothing was run" in reply.text
    checks.release_run("Lab", "run-0000cafe")
    assert checks.changing("Lab") is None


def test_the_gates_deadline_leaves_every_suite_its_own_timeout_first(
    lab: Lab, tmp_path: Path
) -> None:
    from bot.runs.steps import deadline_for

    def edit(raw: dict[str, Any]) -> None:
        raw["environments"]["Lab"]["dr"]["e2e"] = {**e2e_runner(tmp_path), "timeout_s": 400}
        raw["environments"]["Lab"]["gates"] = ["smoke", "e2e"]

    env = lab_config(lab, tmp_path, edit).environments["Lab"]
    smoke = sum(c.timeout_s for c in env.smoke)
    assert deadline_for("gates", env) > 400 + smoke


@pytest.mark.parametrize("suite_args", [("sleep=60",)], indirect=True, ids=["slow"])
async def test_an_approval_while_a_check_runs_is_refused_and_the_request_stays_pending(
    chat: Chat,
) -> None:
    card, request_id = await request_rollback(chat)
    check = await chat.say("check Lab e2e")
    check_id = check.text.split("(")[1].split(")")[0]

    answer = await chat.click("approve", card)

    assert f"DR check `{check_id}`" in json.dumps(answer)
    assert "The request stays pending." in json.dumps(answer)
    request = await chat.store.get_request(request_id)
    assert request is not None and request.state == "pending"
    assert await chat.store.run_for_request(request_id) is None
    await chat.say(f"cancel {check_id}")
    await chat.eventually(lambda: chat.runtime.services.checks.active("Lab") is None, timeout=15)
