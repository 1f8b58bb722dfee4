"""`audit verify` over one chain per instance: each chain, and a run's order across them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from adapters.audit import AuditLog, main_verify
from adapters.audit.instances import instance_dirs, verify_instances
from adapters.clock import ManualClock
from tests.adapters.test_audit import KEY, KST, START, read_lines, write_back


def chains(tmp_path: Path) -> tuple[AuditLog, AuditLog, ManualClock]:
    clock = ManualClock(START)
    root = tmp_path / "notifications"
    a = AuditLog(root / "bot-a", KST, clock=clock, key=KEY)
    b = AuditLog(root / "bot-b", KST, clock=clock, key=KEY)
    return a, b, clock


def taken_over(tmp_path: Path) -> tuple[AuditLog, AuditLog, ManualClock]:
    """bot-a runs run-1 and dies; bot-b takes it over; both go on with other work."""
    a, b, clock = chains(tmp_path)
    a.append_sync("Approved", environment="Lab", request_id="q1")
    clock.advance(timedelta(seconds=1))
    a.append_sync("Started", environment="Lab", request_id="q1", run_id="run-1")
    clock.advance(timedelta(seconds=1))
    b.append_sync("StepStarted", environment="Lab", run_id="run-2", step="smoke")
    a.append_sync("StepStarted", environment="Lab", run_id="run-1", step="deploy_package")
    clock.advance(timedelta(seconds=20))
    b.append_sync("Interrupted", environment="Lab", run_id="run-1", status="interrupted")
    clock.advance(timedelta(seconds=1))
    b.append_sync("HostsAfterInterrupt", environment="Lab", run_id="run-1")
    return a, b, clock


def test_two_instances_chains_and_a_takeover_verify(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taken_over(tmp_path)
    root = tmp_path / "notifications"
    assert [p.name for p in instance_dirs(root)] == ["bot-a", "bot-b"]
    report = verify_instances(instance_dirs(root), [KEY])
    assert report.ok and len(report.reports) == 2
    assert main_verify(root, [KEY]) == 0
    out = capsys.readouterr().out
    assert "bot-a: OK" in out and "bot-b: OK" in out and "Across instances" in out


def test_an_instance_writing_about_a_run_after_it_was_taken_over_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, _, clock = taken_over(tmp_path)
    clock.advance(timedelta(seconds=1))
    # bot-a was not dead after all: it went on with the run the survivor had settled.
    a.append_sync("StepSucceeded", environment="Lab", run_id="run-1", step="deploy_package")
    report = verify_instances(instance_dirs(tmp_path / "notifications"), [KEY])
    assert all(r.ok for r in report.reports), "each chain on its own is intact"
    (problem,) = report.order
    assert "run run-1: instance bot-a wrote" in problem.message and "bot-b" in problem.message
    assert main_verify(tmp_path / "notifications", [KEY]) == 1
    assert "Across instances: FAILED" in capsys.readouterr().out


def test_a_tampered_line_in_one_instance_chain_fails_the_whole(tmp_path: Path) -> None:
    taken_over(tmp_path)
    (day,) = (tmp_path / "notifications" / "bot-b").glob("*.jsonl")
    lines = read_lines(day)
    lines[0] = lines[0].replace('"Lab"', '"Prod"')
    write_back(day, lines)
    report = verify_instances(instance_dirs(tmp_path / "notifications"), [KEY])
    assert not report.ok
    bad = [r for r in report.reports if not r.ok]
    assert [r.directory.name for r in bad] == ["bot-b"]
    assert main_verify(tmp_path / "notifications", [KEY]) == 1


def test_a_chain_whose_clock_went_back_is_named(tmp_path: Path) -> None:
    a, _, clock = chains(tmp_path)
    a.append_sync("Started", environment="Lab", run_id="run-1")
    clock.advance(timedelta(seconds=-30))
    a.append_sync("StepStarted", environment="Lab", run_id="run-1")
    report = verify_instances(instance_dirs(tmp_path / "notifications"), [KEY])
    assert [p.kind for p in report.order] == ["reordered"]
    assert "clock went back" in report.order[0].message


def test_a_single_chain_directory_is_verified_as_before(tmp_path: Path) -> None:
    clock = ManualClock(START)
    AuditLog(tmp_path / "one", KST, clock=clock, key=KEY).append_sync("Started")
    assert instance_dirs(tmp_path / "one") == []
    assert main_verify(tmp_path / "one", [KEY]) == 0


def test_a_cancel_handled_by_another_instance_is_not_two_instances_acting_on_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`cancel RUN` reaches bot-b while bot-a runs the run: bot-b writes CancelRequested
    under the run's id, bot-a goes on and ends it — one run, one runner."""
    a, b, clock = chains(tmp_path)
    a.append_sync("Started", environment="Lab", request_id="q1", run_id="run-1")
    clock.advance(timedelta(seconds=1))
    a.append_sync("StepStarted", environment="Lab", run_id="run-1", step="stop_site")
    clock.advance(timedelta(seconds=1))
    b.append_sync("CancelRequested", environment="Lab", run_id="run-1", status="accepted")
    clock.advance(timedelta(seconds=1))
    a.append_sync("StepSucceeded", environment="Lab", run_id="run-1", step="stop_site")
    a.append_sync("Cancelled", environment="Lab", run_id="run-1", status="cancelled")
    report = verify_instances(instance_dirs(tmp_path / "notifications"), [KEY])
    assert report.ok, report.order
    assert main_verify(tmp_path / "notifications", [KEY]) == 0
    assert "Across instances (bot-a, bot-b): OK" in capsys.readouterr().out


def legacy_root_and_instances(tmp_path: Path) -> Path:
    """The bot ran alone on SQLite (its chain in the root), then as two instances."""
    root = tmp_path / "notifications"
    clock = ManualClock(START - timedelta(days=3))
    alone = AuditLog(root, KST, clock=clock, key=KEY)
    alone.append_sync("Started", environment="Lab", request_id="q0", run_id="run-0")
    alone.append_sync("Deployed", environment="Lab", request_id="q0", run_id="run-0")
    taken_over(tmp_path)
    return root


def test_instance_chains_beside_a_root_chain_are_verified_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = legacy_root_and_instances(tmp_path)
    assert main_verify(root, [KEY]) == 0
    out = capsys.readouterr().out
    assert "notifications: OK" in out and "bot-a: OK" in out and "bot-b: OK" in out


def test_a_tampered_instance_chain_beside_a_root_chain_is_detected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = legacy_root_and_instances(tmp_path)
    (day,) = (root / "bot-b").glob("*.jsonl")
    lines = read_lines(day)
    lines[0] = lines[0].replace('"Lab"', '"Prod"')
    write_back(day, lines)
    assert main_verify(root, [KEY]) == 1
    out = capsys.readouterr().out
    assert "notifications: OK" in out and "bot-b: FAILED" in out, out
