"""The break-glass CLI through its entry point: real processes, the real store, the lab.

Each command is run as the operator runs it (`python -m bot.cli COMMAND ... --config`),
without a bot process: status, smoke, plan, rollback, deploy, cancel, history, run. What a
command changed is read from the lab, the database, the audit and the timeline — not from
what the CLI printed.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from adapters.audit import verify
from lab.core import Lab
from tests.conftest import AUDIT_KEY_BYTES
from tests.lab_fixtures import write_lab_config
from tests.runs.test_rollback_bad_paths import MUTATING_OPS
from tests.terminal.cli_process import REASON, ROOT, cli, cli_env

pytest_plugins = ["tests.lab_fixtures"]
pytestmark = pytest.mark.slow

OPERATOR = (
    "status",
    "smoke",
    "plan",
    "rollback",
    "deploy",
    "cancel",
    "history",
    "run",
    "lock",
    "unlock",
)
WHY = "quarter-end close, no changes until Monday"


@pytest.fixture
def config(lab: Lab, tmp_path: Path) -> Path:
    return write_lab_config(lab, tmp_path / "bot", port=0)


def rows(config: Path, sql: str, *args: object) -> list[sqlite3.Row]:
    with sqlite3.connect(config.parent / "var" / "mcms-bot.db", timeout=5) as conn:
        conn.row_factory = sqlite3.Row
        return list(conn.execute(sql, args).fetchall())


def audit(config: Path) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for path in sorted((config.parent / "logs" / "deploy" / "notifications").glob("*.jsonl")):
        lines += [json.loads(line) for line in path.read_text().splitlines()]
    return lines


def timeline(config: Path) -> str:
    return "".join(p.read_text() for p in (config.parent / "docs" / "logs").glob("*.md"))


def mutations(lab: Lab) -> list[str]:
    return [c.op for c in lab.calls(lab.host_for("Lab")) if c.op in MUTATING_OPS]


def releases(lab: Lab) -> set[str]:
    state = lab.state(lab.host_for("Lab"))
    return {s["release"] for s in state["sites"].values()} | {
        state["services"]["MCMS.Worker"]["release"]
    }


def test_help_lists_every_command_with_one_line_and_the_exit_codes() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "--help"],
        cwd=ROOT,
        env=cli_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    text = done.stdout
    for command in (*OPERATOR, "check-config", "audit", "manifest"):
        line = next((ln for ln in text.splitlines() if ln.strip().startswith(command + " ")), "")
        assert len(line.split(None, 1)) == 2, f"{command} has no one-line help:\n{text}"
    for code, words in (
        ("0", "succeeded"),
        ("1", "the run failed"),
        ("2", "usage"),
        ("3", "refused"),
    ):
        assert any(ln.strip().startswith(f"{code}  {words}") for ln in text.splitlines()), text


def test_status_smoke_plan_and_history_answer_without_a_bot_and_change_nothing(
    config: Path, lab: Lab
) -> None:
    status = cli(config, "status", "Lab", "--json")
    assert status.code == 0, status.err
    assert "lab-web01" in " ".join(status.events()[0]["lines"])

    smoke = cli(config, "smoke", "Lab", "--json")
    assert smoke.code == 0 and smoke.result()["passed"] is True
    lab.set_fault(lab.host_for("Lab"), "health", "error")
    failing = cli(config, "smoke", "Lab")
    assert failing.code == 1 and "FAIL" in failing.out
    lab.clear_faults()

    plan = cli(config, "plan", "rollback", "Lab", "--json")
    assert plan.code == 0, plan.err
    result = plan.result()
    assert result["plan"]["target_version"] == "1.4.1" and len(result["plan_hash"]) == 64
    lines = plan.events()[0]["lines"]
    assert lines[0] == "Rollback Lab to 1.4.1?" and any("Preflight" in ln for ln in lines)
    deploy = cli(config, "plan", "deploy", "Lab", "1.4.3", "--json")
    assert deploy.code == 0 and deploy.result()["plan"]["target_version"] == "1.4.3"
    # A preview requests nothing and touches nothing.
    assert rows(config, "SELECT id FROM requests") == []
    assert mutations(lab) == [] and releases(lab) == {"1.4.2"}

    history = cli(config, "history", "Lab", "--json")
    assert history.code == 0 and history.result()["runs"] == []


def test_cli_rollback_is_approved_by_break_glass_runs_and_is_marked_everywhere(
    config: Path, lab: Lab
) -> None:
    done = cli(config, "rollback", "Lab", "--reason", REASON, "--json")
    assert done.code == 0, done.out + done.err
    result = done.result()
    assert result["state"] == "succeeded" and result["exit"] == 0
    steps = [e for e in done.events() if e["event"] == "step" and e["state"] == "passed"]
    assert [e["n"] for e in steps] == list(range(1, 19))

    # The lab really runs the previous release.
    assert releases(lab) == {"1.4.1"}
    # Break glass, everywhere: the request, the audit, the timeline, a notice for Teams.
    (request,) = rows(config, "SELECT * FROM requests")
    assert request["break_glass"] == 1 and request["reason"] == REASON
    assert request["decided_by_name"] == "Alex Wilber" and request["state"] == "succeeded"
    assert request["origin"].startswith("cli:") and request["conversation_id"] == request["origin"]
    approved = next(e for e in audit(config) if e["event"] == "Approved")
    assert approved["detail"]["break_glass"] is True
    assert approved["detail"]["break_glass_reason"] == REASON
    command = next(e for e in audit(config) if e["event"] == "Command")
    assert command["detail"]["conversation_id"].startswith("cli:")
    assert f"approved by BREAK GLASS by Alex Wilber ({request['id']}): {REASON}" in timeline(config)
    (notice,) = rows(config, "SELECT * FROM notices")
    assert notice["kind"] == "break-glass" and notice["delivered_at"] is None
    assert "BREAK-GLASS" in notice["text"] and "break-glass CLI" in notice["text"]
    # The run belongs to the process that ran it, and no lock is left.
    (run,) = rows(config, "SELECT * FROM runs")
    assert run["owner"] and rows(config, "SELECT * FROM env_locks") == []
    report = verify(config.parent / "logs" / "deploy" / "notifications", [AUDIT_KEY_BYTES])
    assert report.ok, report.problems

    # `history` and `run` read it back, through the CLI.
    history = cli(config, "history", "Lab", "--json").result()
    assert history["runs"][0]["run_id"] == run["id"] and history["runs"][0]["break_glass"]
    assert history["deployments"][0] == {
        "version": "1.4.1",
        "deployed_at": history["deployments"][0]["deployed_at"],
        "stable": True,
        "run_id": run["id"],
    }
    shown = cli(config, "run", run["id"], "--json")
    assert shown.code == 0 and shown.result()["state"] == "succeeded"
    plain = cli(config, "run", run["id"])
    assert plain.out.startswith("Rollback Lab 1.4.2 → 1.4.1: succeeded")
    assert "BREAK GLASS: Alex Wilber" in plain.out


def test_cli_deploy_needs_a_version_and_deploys_it(config: Path, lab: Lab) -> None:
    missing = cli(config, "deploy", "Lab", "--reason", REASON)
    assert missing.code == 2 and "VERSION" in missing.err
    done = cli(config, "deploy", "Lab", "1.4.3", "--reason", REASON, "--json")
    assert done.code == 0, done.out + done.err
    assert releases(lab) == {"1.4.3"}


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (("rollback", "Nowhere", "--reason", REASON), 2, "There is no environment `Nowhere`"),
        (("rollback", "Lab"), 2, "--reason"),
        (("rollback", "Lab", "--reason", "drill"), 2, "at least 10 characters"),
        (("cancel", "run-00000000"), 2, "There is no run"),
        (("history", "Lab", "0", "--json"), 2, "not a number of runs"),
        # InternalProd keeps the two-person rule: no break glass there, from anywhere.
        (("rollback", "InternalProd", "--reason", REASON), 3, "does not allow break-glass"),
    ],
)
def test_bad_input_and_refusals_exit_with_their_code_and_change_nothing(
    config: Path, lab: Lab, args: tuple[str, ...], code: int, words: str
) -> None:
    done = cli(config, *args)
    assert done.code == code, done.out + done.err
    assert words in done.out + done.err
    assert rows(config, "SELECT id FROM runs") == [] if (config.parent / "var").exists() else True
    assert all(not lab.calls(h) or not any(c.op in MUTATING_OPS for c in lab.calls(h))
               for h in lab.hosts)  # fmt: skip
    # A request the CLI could not approve is withdrawn, never left pending.
    if (config.parent / "var" / "mcms-bot.db").exists():
        assert rows(config, "SELECT id FROM requests WHERE state = 'pending'") == []


def test_an_os_login_mapped_to_nobody_is_refused(lab: Lab, tmp_path: Path) -> None:
    config = write_lab_config(lab, tmp_path / "bot", port=0)
    text = config.read_text().replace('os_user = "*"', 'os_user = "somebody-else"')
    config.write_text(text)
    done = cli(config, "rollback", "Lab", "--reason", REASON)
    assert done.code == 3 and "is not mapped to a person" in done.err
    assert releases(lab) == {"1.4.2"}


def test_cli_lock_freezes_for_chat_and_break_glass_runs_through_it_saying_so(
    config: Path, lab: Lab
) -> None:
    locked = cli(config, "lock", "Lab", "--reason", WHY, "--json")
    assert locked.code == 0, locked.out + locked.err
    (freeze,) = rows(config, "SELECT * FROM freezes")
    assert (freeze["environment"], freeze["frozen_by"], freeze["reason"]) == (
        "Lab",
        "Alex Wilber",
        WHY,
    )
    frozen = next(e for e in audit(config) if e["event"] == "Frozen")
    assert frozen["actor"]["name"] == "Alex Wilber" and frozen["detail"]["reason"] == WHY
    assert f"Lab frozen by Alex Wilber: {WHY}" in timeline(config)

    again = cli(config, "lock", "Lab", "--reason", "another reason, a later one")
    assert again.code == 3 and "Lab is already frozen by Alex Wilber since" in again.out
    assert rows(config, "SELECT reason FROM freezes")[0]["reason"] == WHY
    status = cli(config, "status", "Lab")
    line = next(ln for ln in status.out.splitlines() if ln.strip().startswith("Freeze "))
    assert status.code == 0 and "🧊 frozen by Alex Wilber since" in line and WHY in line

    # The CLI's rollback is break glass: the freeze lets it through, and it says so.
    done = cli(config, "rollback", "Lab", "--reason", REASON, "--json")
    assert done.code == 0, done.out + done.err
    assert releases(lab) == {"1.4.1"}
    assert "It overrides the freeze: Lab is frozen by Alex Wilber" in done.out
    approved = next(e for e in audit(config) if e["event"] == "Approved")
    assert approved["detail"]["break_glass"] is True
    assert "Lab frozen by Alex Wilber since" in approved["detail"]["overrode_freeze"]
    notice = next(n for n in rows(config, "SELECT * FROM notices") if n["kind"] == "break-glass")
    assert "It overrides the freeze" in notice["text"]
    assert len(rows(config, "SELECT * FROM freezes")) == 1  # break glass does not unlock

    unlocked = cli(config, "unlock", "Lab")
    assert unlocked.code == 0 and "Lab is unfrozen" in unlocked.out
    assert rows(config, "SELECT * FROM freezes") == []
    assert next(e for e in audit(config) if e["event"] == "Unfrozen")["actor"]["name"] == (
        "Alex Wilber"
    )
    twice = cli(config, "unlock", "Lab")
    assert twice.code == 3 and "Lab is not frozen" in twice.out


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (("lock", "Lab", "--reason", "drill"), 2, "say why in 10 to 300 characters"),
        (("lock", "Lab"), 2, "--reason"),
        (("lock", "Nowhere", "--reason", WHY), 2, "There is no environment `Nowhere`"),
        (("unlock", "Nowhere"), 2, "There is no environment `Nowhere`"),
    ],
)
def test_cli_lock_refuses_bad_input_and_freezes_nothing(
    config: Path, args: tuple[str, ...], code: int, words: str
) -> None:
    done = cli(config, *args)
    assert done.code == code, done.out + done.err
    assert words in done.out + done.err
    if (config.parent / "var" / "mcms-bot.db").exists():
        assert rows(config, "SELECT * FROM freezes") == []


def test_cli_lock_needs_the_approver_role(lab: Lab, tmp_path: Path) -> None:
    """The OS login maps to Megan, an operator: she may not lock (nor unlock)."""
    config = write_lab_config(lab, tmp_path / "bot", port=0)
    text = config.read_text().replace('os_user = "*"', 'os_user = "somebody-else"')
    megan = 'name = "Megan Bowen"\naad_object_id = "00000000-0000-0000-0000-0000000000021"\n'
    assert megan in text
    config.write_text(text.replace(megan, megan + 'os_user = "*"\n'))
    done = cli(config, "lock", "Lab", "--reason", WHY)
    assert done.code == 3 and "needs the **approver** role for Lab" in done.out + done.err
    assert rows(config, "SELECT * FROM freezes") == []
