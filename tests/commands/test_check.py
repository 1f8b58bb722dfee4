"""`check ENVIRONMENT [smoke|axe|e2e|zap|all]` through the endpoint, the fake connector and the lab.

The suites here are tests/fixtures/dr/fake_suite.py — real child processes that write real
report fixtures — so these tests need neither node nor chromium; tests/lab/test_dr_suites.py
runs the real lab suites in chromium.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from commands.dr.checks import DrChecks
from commands.dr.engine import open_run_folder, run_dr_tests
from commands.dr.judge import DrResult
from commands.dr.matrix import AXE, E2E, SMOKE, DrTest
from commands.types import Actor
from lab.core import Lab
from lab.runner import DrSuite
from tests.conftest import ADELE, MEGAN, card_texts, shown, table_rows
from tests.processes import alive

if TYPE_CHECKING:
    from tests.conftest import Chat, ConfigEdit
    from tests.fake_connector import ConnectorCall

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dr"
FAKE_SUITE = str(FIXTURES / "fake_suite.py")


def runner(*args: str, timeout_s: float = 30, **extra: Any) -> dict[str, Any]:
    return {
        "command": [sys.executable, FAKE_SUITE, "report={report}", *args],
        "working_dir": "",  # set by the fixture: the test's own directory
        "report": "reports/{environment}/report.out",
        "env": {"BASE_URL": "{base_url}"},
        "timeout_s": timeout_s,
        **extra,
    }


@pytest.fixture
def runners(request: pytest.FixtureRequest) -> dict[str, dict[str, Any]]:
    """The Lab's DR runners for a test: `@pytest.mark.parametrize("runners", [...],
    indirect=True)`; none by default (DR-SMOKE only)."""
    return dict(getattr(request, "param", {}))


@pytest.fixture
def config_edit(tmp_path: Path, lab: Lab, runners: dict[str, dict[str, Any]]) -> ConfigEdit:
    """The Lab gets exactly `runners` (working in tmp_path unless they say otherwise); a
    runner on "build01" runs on the lab's InternalStage host, playing a Windows runner host."""

    def edit(raw: dict[str, Any]) -> None:
        dr = raw["environments"]["Lab"]["dr"]
        for key in ("axe", "e2e", "zap"):
            dr.pop(key, None)
        for key, spec in runners.items():
            dr[key] = {**spec, "working_dir": spec["working_dir"] or str(tmp_path)}
        if any(spec.get("runs_on") == "build01" for spec in runners.values()):
            raw["runner_hosts"] = [
                {
                    "name": "build01",
                    "winrm_url": lab.winrm_url(lab.host_for("InternalStage")),
                    "transport": "basic",
                    "allow_insecure_transport": True,
                    "username_env": "MCMS_LAB_WINRM_USER",
                    "password_env": "MCMS_LAB_WINRM_PASSWORD",
                }
            ]

    return edit


def with_runners(**specs: dict[str, Any]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("runners", [specs], indirect=True, ids=[""])


def run_id_of(reply: ConnectorCall) -> str:
    found = re.search(r"dr-[0-9a-f]{8}", reply.text)
    assert found, reply.text
    return found.group(0)


def card_of(call: ConnectorCall) -> dict[str, Any]:
    content: dict[str, Any] = call.body["attachments"][0]["content"]
    return content


async def finished(chat: Chat, reply: ConnectorCall, timeout: float = 30) -> dict[str, Any]:
    """Wait for the check to end and chat to go quiet; the card's final state."""
    run_id = run_id_of(reply)
    await chat.eventually(
        lambda: (
            chat.runtime.services.checks.find(run_id) is None
            and any(run_id in c.text and "Reports and logs" in c.text for c in chat.replies)
        ),
        timeout=timeout,
    )
    edits = chat.puts(reply.assigned_id or "")
    assert edits, "the check's card was never edited"
    return card_of(edits[-1])


def rows(card: dict[str, Any]) -> dict[str, list[str]]:
    """Each test's cells as Teams shows them (findings are markdown-escaped in the card)."""
    return {r[0]: [shown(c) for c in r[1:]] for r in table_rows(card)[1:]}


def audit(chat: Chat, event: str) -> list[dict[str, Any]]:
    lines = []
    for path in sorted(Path(chat.config.paths.audit_dir).glob("*.jsonl")):
        lines += [json.loads(line) for line in path.read_text().splitlines()]
    return [e for e in lines if e["event"] == event]


def run_folder(chat: Chat, run_id: str) -> Path:
    return Path(chat.config.paths.smoke_logs_dir) / "dr" / run_id


# --- results on the card, in the audit, in the folder ---------------------------------------


async def test_check_smoke_answers_with_a_card_that_ends_with_one_row_per_test(
    chat: Chat,
) -> None:
    reply = await chat.say("check Lab smoke")
    first = card_of(reply)
    assert card_texts(first)[0].startswith("DR check Lab: running")
    final = await finished(chat, reply)
    assert card_texts(final)[0] == "DR check Lab: PASSED — 1/1 passed"
    assert rows(final) == {
        "DR-SMOKE": ["✅ passed", "3/3 checks passed", rows(final)["DR-SMOKE"][2], ""]
    }
    run_id = run_id_of(reply)
    folder = run_folder(chat, run_id)
    assert "Health\thttp://127.0.0.1" in (folder / "DR-SMOKE.log").read_text()
    manifest = json.loads((folder / "check.json").read_text())
    assert manifest["state"] == "passed" and manifest["results"][0]["outcome"] == "passed"
    (line,) = audit(chat, "DrTest")
    assert (line["run_id"], line["step"], line["status"]) == (run_id, "DR-SMOKE", "passed")
    assert line["actor"]["name"] == "Alex Wilber"
    (end,) = audit(chat, "DrCheck")
    assert end["status"] == "passed"
    timeline = next(Path(chat.config.paths.timeline_dir).glob("Timeline_*.md")).read_text()
    assert f"check Lab smoke by Alex Wilber: PASSED — 1/1 passed ({run_id})" in timeline


@with_runners(
    axe=runner("copy=axe-violations.json", "exit=1"),
    e2e=runner("copy=junit-node-failing.xml", "exit=1"),
    zap=runner("copy=zap-baseline-clean.json", "exit=2"),
)
async def test_failing_suites_show_their_worst_findings_by_name_and_keep_the_raw_reports(
    chat: Chat,
) -> None:
    reply = await chat.say("check Lab all")
    final = await finished(chat, reply)
    assert card_texts(final)[0] == "DR check Lab: FAILED — DR-AXE, DR-E2E failed"
    table = rows(final)
    assert table["DR-SMOKE"][0] == "✅ passed"
    assert table["DR-AXE"][:2] == ["❌ failed", "5 serious/critical · 2 pages"]
    assert table["DR-AXE"][3].startswith("image-alt (critical), label (critical), color-contrast")
    assert table["DR-E2E"][:2] == ["❌ failed", "5 tests · 3 failed"]
    assert "signing in with the operator account opens the releases list" in table["DR-E2E"][3]
    # ZAP baseline exits 2 for warnings; its report has no High/Medium alert: it passes.
    assert table["DR-ZAP"][:2] == ["✅ passed", "0 High · 0 Medium · 1 Low · 0 Informational"]
    assert "exited 2 but its report passes: judged by the report" in table["DR-ZAP"][3]
    folder = run_folder(chat, run_id_of(reply))
    assert (folder / "DR-AXE.report.json").read_bytes() == (
        FIXTURES / "axe-violations.json"
    ).read_bytes()
    assert (folder / "DR-E2E.report.xml").read_bytes() == (
        FIXTURES / "junit-node-failing.xml"
    ).read_bytes()
    assert "fake suite for http://127.0.0.1" in (folder / "DR-AXE.log").read_text()
    lines = {line["step"]: line for line in audit(chat, "DrTest")}
    assert set(lines) == {"DR-SMOKE", "DR-AXE", "DR-E2E", "DR-ZAP"}
    assert lines["DR-E2E"]["status"] == "failed"
    assert lines["DR-E2E"]["detail"]["counts"] == "5 tests · 3 failed"
    assert lines["DR-AXE"]["detail"]["files"] == ["DR-AXE.log", "DR-AXE.report.json"]
    summary = next(c for c in chat.replies if "Reports and logs" in c.text)
    assert "DR-E2E: 5 tests · 3 failed" in summary.text


@with_runners(axe=runner("copy=axe-clean.json"))
async def test_all_runs_what_is_configured_and_lists_the_rest_as_not_run(chat: Chat) -> None:
    final = await finished(chat, await chat.say("check Lab"))
    table = rows(final)
    assert table["DR-AXE"][0] == "✅ passed"
    for test, key in (("DR-E2E", "e2e"), ("DR-ZAP", "zap")):
        assert table[test][0] == "⏭️ not run"
        assert table[test][2] == ""  # no time: it never ran
        assert f"add [environments.Lab.dr.{key}]" in table[test][3]
    assert card_texts(final)[0] == "DR check Lab: PASSED — 2/2 passed"


# Both exit 0 and write nothing; an earlier run's JUnit report sits where e2e's goes.
@with_runners(axe=runner(report="reports/{environment}/axe.json"), e2e=runner())
async def test_a_missing_or_stale_report_fails_the_test_with_why(
    chat: Chat, tmp_path: Path
) -> None:
    stale = tmp_path / "reports" / "Lab" / "report.out"
    stale.parent.mkdir(parents=True)
    stale.write_text("<testsuites><testcase name='old'/></testsuites>")
    table = rows(await finished(chat, await chat.say("check Lab axe e2e")))
    assert table["DR-AXE"][0] == "❌ failed"
    assert f"no report at {tmp_path}/reports/Lab/axe.json (exit code 0)" in table["DR-AXE"][3]
    assert table["DR-E2E"][0] == "❌ failed"
    assert "stale: this run did not write it" in table["DR-E2E"][3]


@with_runners(axe=runner("copy=axe-clean.json"))
async def test_when_no_smoke_check_answers_the_suites_are_not_run(chat: Chat) -> None:
    chat.lab.set_fault(chat.lab.host_for("Lab"), "http", "down")
    table = rows(await finished(chat, await chat.say("check Lab smoke axe")))
    assert table["DR-SMOKE"][0] == "❌ failed"
    assert "the service looks fully stopped" in table["DR-SMOKE"][3]
    assert table["DR-AXE"][0] == "⏭️ not run"
    assert "no smoke check answered" in table["DR-AXE"][3]


@with_runners(
    e2e=runner(
        "copy=junit-node-passing.xml",
        "print=PORTAL_PASSWORD",
        secret_env={"PORTAL_PASSWORD": "MCMS_DR_PORTAL_PASSWORD"},
    )
)
async def test_a_secret_reaches_the_suite_and_never_its_kept_log(
    chat: Chat, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCMS_DR_PORTAL_PASSWORD", "s3cret-portal-pw")
    reply = await chat.say("check Lab e2e")
    assert rows(await finished(chat, reply))["DR-E2E"][0] == "✅ passed"
    log = (run_folder(chat, run_id_of(reply)) / "DR-E2E.log").read_text()
    assert "PORTAL_PASSWORD=***" in log and "s3cret-portal-pw" not in log


# --- long checks: progress, one at a time, cancel --------------------------------------------


@with_runners(
    axe=runner("sleep=60", "grandchild=browser.pid", "copy=axe-clean.json"),
    e2e=runner("copy=junit-node-passing.xml"),
)
async def test_a_long_check_shows_progress_and_cancel_kills_its_process_tree(
    chat: Chat, tmp_path: Path
) -> None:
    pidfile = tmp_path / "browser.pid"  # the suite's "browser", detached like chromium
    chat.runtime.services.checks.progress_every_s = 0.2
    reply = await chat.say("check Lab axe e2e")
    run_id = run_id_of(reply)
    await chat.eventually(lambda: pidfile.exists() and pidfile.read_text(), timeout=10)

    # Progress: the card is edited while DR-AXE runs, saying so and for how long.
    def running_titles() -> set[str]:
        titles = {card_texts(card_of(e))[0] for e in chat.puts(reply.assigned_id or "")}
        return {t for t in titles if t.startswith("DR check Lab: running — DR-AXE for ")}

    # Ticks between the test's start and its end: the elapsed time moves on the card.
    await chat.eventually(lambda: len(running_titles()) >= 3, timeout=10)
    busy = await chat.say("check Lab smoke", user=MEGAN)
    assert f"already running ({run_id}, started by Alex Wilber" in busy.text
    assert f"`cancel {run_id}`" in busy.text

    refused = await chat.say(f"cancel {run_id}", user=ADELE)
    # A DR check's cancel needs an operator of its environment (a run's: its requester or
    # an approver), checked by the command.
    assert f"Cancelling `{run_id}` needs the **operator** role for Lab" in refused.text
    began = time.monotonic()
    answer = await chat.say(f"cancel {run_id}")
    assert "DR-AXE is being stopped now (its process tree is killed)" in answer.text
    final = await finished(chat, reply)
    assert time.monotonic() - began < 10
    assert card_texts(final)[0].startswith("DR check Lab: cancelled")
    table = rows(final)
    assert table["DR-AXE"][0] == "⛔ cancelled"
    assert table["DR-E2E"][0] == "⏭️ not run"
    assert "cancelled before it started" in table["DR-E2E"][3]
    assert any("Stopped during DR-AXE by Alex Wilber" in t for t in card_texts(final))
    assert not alive(int(pidfile.read_text())), "the suite's browser outlived the cancel"
    (requested,) = audit(chat, "CancelRequested")
    assert (requested["run_id"], requested["step"]) == (run_id, "DR-AXE")
    assert audit(chat, "DrCheck")[-1]["status"] == "cancelled"
    # The environment is free again.
    again = await chat.say("check Lab smoke")
    await finished(chat, again)


@with_runners(axe=runner("sleep=60", timeout_s=1), e2e=runner("copy=junit-node-passing.xml"))
async def test_a_suite_past_its_timeout_fails_and_the_check_goes_on(chat: Chat) -> None:
    table = rows(await finished(chat, await chat.say("check Lab axe e2e")))
    assert table["DR-AXE"][0] == "❌ failed"
    assert "did not finish within 1 s; its process tree was killed" in table["DR-AXE"][3]
    assert table["DR-E2E"][0] == "✅ passed"


# --- refusals: nothing runs ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason", "says"),
    [
        ("check Lab lighthouse", "unknown-test", "`lighthouse` is not a DR test"),
        ("check Lab zap", "not-configured", "DR-ZAP is not configured for Lab"),
        ("check Nowhere", "unknown-environment", "There is no environment `Nowhere`"),
        ("check", "missing-environment", "`check` needs an environment"),
    ],
)
async def test_bad_checks_are_refused_and_nothing_runs(
    chat: Chat, text: str, reason: str, says: str
) -> None:
    reply = await chat.say(text)
    assert says in reply.text
    assert "Nothing was run" in reply.text or reason.endswith("environment")
    assert not (Path(chat.config.paths.smoke_logs_dir) / "dr").exists()
    assert audit(chat, "DrTest") == []


async def test_no_check_while_a_rollback_changes_the_environment(chat: Chat) -> None:
    await chat.store.try_lock("Lab", "run-0badc0de", "Megan Bowen")
    reply = await chat.say("check Lab smoke")
    assert "Lab is being changed by run-0badc0de (Megan Bowen)" in reply.text
    assert not (Path(chat.config.paths.smoke_logs_dir) / "dr").exists()


async def test_cancel_of_a_check_that_is_not_running_says_so(chat: Chat) -> None:
    reply = await chat.say("cancel dr-0000beef")
    assert "No DR check `dr-0000beef` is running" in reply.text


# --- a Windows runner host over WinRM --------------------------------------------------------


@with_runners(
    e2e={
        "command": ["npm.cmd", "run", "test:regression"],
        "working_dir": "D:\\src\\MCMS",
        "runs_on": "build01",
        "report": "reports\\junit.xml",
        "env": {"BASE_URL": "{base_url}"},
        "timeout_s": 600,
    }
)
async def test_a_suite_on_a_windows_runner_host_runs_over_winrm(chat: Chat) -> None:
    runner_host = chat.lab.host_for("InternalStage")  # plays the team's build/runner host
    failing = (FIXTURES / "junit-node-failing.xml").read_bytes()
    chat.lab.set_dr_suite(runner_host, DrSuite(exit_code=1, stdout=b"3 failed\n", report=failing))
    reply = await chat.say("check Lab e2e")
    table = rows(await finished(chat, reply))
    assert table["DR-E2E"][:2] == ["❌ failed", "5 tests · 3 failed"]
    assert "the releases list needs a session" in table["DR-E2E"][3]
    call = chat.lab.calls(runner_host)[-1]
    assert call.op == "run-dr-test"
    assert call.params["Variables"] == {"BASE_URL": chat.lab.http_base("lab-web01") + "/"}
    assert call.params["ReportPath"] == "D:\\src\\MCMS\\reports\\junit.xml"
    assert call.params["TimeoutSec"] == 600
    folder = run_folder(chat, run_id_of(reply))
    assert (folder / "DR-E2E.report.xml").read_bytes() == failing
    assert "3 failed" in (folder / "DR-E2E.log").read_text()


@with_runners(axe=runner("sleep=60", "grandchild=browser.pid", "copy=axe-clean.json"))
async def test_a_check_running_at_shutdown_is_stopped_and_says_interrupted(
    chat: Chat, tmp_path: Path
) -> None:
    reply = await chat.say("check Lab axe")
    run_id = run_id_of(reply)
    pidfile = tmp_path / "browser.pid"
    await chat.eventually(lambda: pidfile.exists() and pidfile.read_text(), timeout=10)
    await chat.client.close()  # the app's cleanup: what SIGTERM does to the bot
    assert not alive(int(pidfile.read_text()))
    manifest = json.loads((run_folder(chat, run_id) / "check.json").read_text())
    assert manifest["state"] == "interrupted"
    assert audit(chat, "DrCheck")[-1]["status"] == "interrupted"
    final = card_of(chat.puts(reply.assigned_id or "")[-1])
    assert card_texts(final)[0].startswith("DR check Lab: interrupted")
    assert any("by the bot shutting down" in t for t in card_texts(final))


# --- the entry gates will call -----------------------------------------------------------------


@with_runners(
    axe=runner("sleep=60", "copy=axe-clean.json"), e2e=runner("copy=junit-node-passing.xml")
)
async def test_run_dr_tests_is_callable_without_chat_with_progress_and_cancel(chat: Chat) -> None:
    """What a plan's gate will do: its own folder, an observer, a cancel event, typed results."""
    services = chat.runtime.services
    tests = (SMOKE, AXE, E2E)
    folder = open_run_folder(services, services.checks.dr_dir, "Lab", tests, {"name": "gate"})
    heard: list[str] = []
    cancel = asyncio.Event()

    class Observer:
        async def started(self, test: DrTest) -> None:
            heard.append(f"started {test.id}")
            if test is AXE:
                asyncio.get_running_loop().call_later(0.5, cancel.set)

        async def finished(self, result: DrResult) -> None:
            heard.append(f"{result.outcome} {result.test.id}")

    results = await run_dr_tests(services, "Lab", tests, folder, observer=Observer(), cancel=cancel)
    assert [(r.test.id, r.outcome) for r in results] == [
        ("DR-SMOKE", "passed"),
        ("DR-AXE", "cancelled"),
        ("DR-E2E", "not-run"),
    ]
    assert heard == [
        "started DR-SMOKE",
        "passed DR-SMOKE",
        "started DR-AXE",
        "cancelled DR-AXE",
        "not-run DR-E2E",
    ]
    assert not any(r.passed for r in results[1:])
    manifest = json.loads((folder.path / "check.json").read_text())
    assert [r["outcome"] for r in manifest["results"]] == ["passed", "cancelled", "not-run"]
    assert audit(chat, "DrTest") == []  # recording is the caller's business


async def test_a_check_whose_chat_is_down_still_runs_to_its_audit_line(chat: Chat) -> None:
    class ChatDown:
        async def post(self, *_: Any, **__: Any) -> str | None:
            raise RuntimeError("chat is down")

        async def update(self, *_: Any, **__: Any) -> None:
            raise RuntimeError("chat is down")

    services = chat.runtime.services
    board = DrChecks(services.checks.dr_dir)
    board.connect(ChatDown())
    check = board.start(services, "Lab", (SMOKE,), Actor("Alex Wilber", None), "conversation-1")
    await board.attach_card(check, "activity-1")
    assert check.task is not None
    await asyncio.wait_for(check.task, 10)
    assert check.state == "passed"
    assert [e["status"] for e in audit(chat, "DrCheck")] == ["passed"]
