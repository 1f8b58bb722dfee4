"""Pass/fail from the report with the playbook's criteria — and what the exit code cannot do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapters.dr.outcome import RunnerOutput
from adapters.smoke import CheckResult
from commands.dr.judge import judge, judge_smoke, worst
from commands.dr.matrix import AXE, E2E, MATRIX, ZAP, DrTest, select

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dr"


def ran(report: bytes | str | None, exit_code: int = 0) -> RunnerOutput:
    data = (FIXTURES / report).read_bytes() if isinstance(report, str) else report
    problem = None if data is not None else "no report at /x/report.json"
    return RunnerOutput("exited", exit_code, 12.5, data, problem)


MODERATE_ONLY = json.dumps(
    [{"url": "http://x/", "violations": [{"id": "region", "impact": "moderate", "nodes": [{}]}]}]
).encode()


@pytest.mark.parametrize(
    ("test", "output", "outcome", "counts", "note"),
    [
        (AXE, ran("axe-clean.json"), "passed", "0 serious/critical · 2 pages", None),
        (AXE, ran("axe-violations.json", 1), "failed", "5 serious/critical · 2 pages", None),
        # The suite fails on any violation; the playbook only on serious + critical.
        (AXE, ran(MODERATE_ONLY, 1), "passed", "0 serious/critical · 1 moderate · 1 page",
         "the suite exited 1 but its report passes: judged by the report"),
        (AXE, ran("axe-violations.json", 0), "failed", "5 serious/critical · 2 pages",
         "the suite exited 0 but its report fails: judged by the report"),
        (E2E, ran("junit-node-passing.xml"), "passed", "5 tests · 0 failed", None),
        (E2E, ran("junit-node-failing.xml", 1), "failed", "5 tests · 3 failed", None),
        (E2E, ran("junit-jest-nested.xml", 1), "failed", "4 tests · 1 failed · 1 skipped", None),
        # ZAP baseline exits 2 for warnings: the report has no High/Medium, so it passes.
        (ZAP, ran("zap-baseline-clean.json", 2), "passed",
         "0 High · 0 Medium · 1 Low · 0 Informational",
         "the suite exited 2 but its report passes: judged by the report"),
        (ZAP, ran("zap-baseline-findings.json", 2), "failed",
         "0 High · 2 Medium · 1 Low · 1 Informational · 1 false positive(s) not counted", None),
        (ZAP, ran("zap-api-alerts.json", 0), "failed",
         "1 High · 1 Medium · 1 Low · 0 Informational",
         "the suite exited 0 but its report fails: judged by the report"),
    ],
    ids=["axe-clean", "axe-violations", "axe-moderate-exit-1", "axe-exit-0-lies", "e2e-pass",
         "e2e-fail", "e2e-jest", "zap-warn-exit-2", "zap-medium", "zap-api-high"],
)  # fmt: skip
def test_the_report_decides_and_a_disagreeing_exit_code_is_noted(
    test: DrTest, output: RunnerOutput, outcome: str, counts: str, note: str | None
) -> None:
    result = judge(test, output)
    assert (result.outcome, result.counts, result.note) == (outcome, counts, note)
    assert result.duration_s == 12.5


@pytest.mark.parametrize(
    ("test", "output", "why"),
    [
        (E2E, ran(None, 0), "no report at /x/report.json (exit code 0)"),
        (AXE, RunnerOutput("exited", 0, 1.0, None, "the report at /x is stale: this run did "
         "not write it"), "stale: this run did not write it (exit code 0)"),
        (E2E, ran(b"<testsuites/>", 0), "the report holds no test: nothing was checked"),
        (AXE, ran(b"[]", 0), "unusable report: the axe report is an empty list"),
        (ZAP, ran(b"<html>", 3), "unusable report: the ZAP report is not JSON"),
        (E2E, ran("axe-clean.json", 0), "unusable report: the JUnit report is not well-formed"),
        (AXE, RunnerOutput("not-started", None, 0.0, None, None, "command not found: npm"),
         "command not found: npm"),
        (AXE, RunnerOutput("timeout", None, 300.0, b"[]", None, "did not finish within 300 s"),
         "did not finish within 300 s"),
    ],
    ids=["missing", "stale", "empty-junit", "no-pages", "garbage", "wrong-kind", "not-started",
         "timeout"],
)  # fmt: skip
def test_no_usable_report_is_a_failure_that_says_why(
    test: DrTest, output: RunnerOutput, why: str
) -> None:
    result = judge(test, output)
    assert result.outcome == "failed"
    assert result.why is not None and why in result.why


def test_a_cancelled_suite_is_cancelled_not_failed() -> None:
    output = RunnerOutput("cancelled", None, 3.0, None, None, "cancelled; process tree killed")
    result = judge(AXE, output)
    assert (result.outcome, result.why) == ("cancelled", "cancelled; process tree killed")


def test_worst_findings_are_named_worst_first() -> None:
    result = judge(AXE, ran("axe-violations.json", 1))
    assert worst(result.findings) == (
        "image-alt (critical), label (critical), color-contrast (serious, 2) and 1 more"
    )
    failed = judge(E2E, ran("junit-node-failing.xml", 1))
    assert worst(failed.findings, limit=1) == (
        "signing in with the operator account opens the releases list and 2 more"
    )


def test_smoke_names_the_failing_checks() -> None:
    results = [
        CheckResult("Health", "http://h/health", 200, (200,), 5),
        CheckResult("Swagger", "http://h/swagger", 500, (200,), 7),
        CheckResult("Kerberos", "http://h/k", -1, (401,), 5000, "timeout"),
    ]
    result = judge_smoke(results, 5.1)
    assert (result.outcome, result.counts, result.why) == ("failed", "1/3 checks passed", None)
    assert worst(result.findings) == "Swagger (status 500), Kerberos (no answer: timeout)"
    silent = [CheckResult(r.name, r.url, -1, r.expect, 1, "connection refused") for r in results]
    assert judge_smoke(silent, 0.1).why == "no check answered: the service looks fully stopped"


@pytest.mark.parametrize(
    ("words", "keys"),
    [
        ((), ["smoke", "axe", "e2e", "zap"]),
        (("all",), ["smoke", "axe", "e2e", "zap"]),
        (("zap", "AXE"), ["axe", "zap"]),
        (("DR-E2E", "e2e"), ["e2e"]),
    ],
)
def test_a_selection_runs_in_matrix_order_without_repeats(
    words: tuple[str, ...], keys: list[str]
) -> None:
    chosen = select(words)
    assert not isinstance(chosen, str)
    assert [t.key for t in chosen] == keys


def test_an_unknown_test_name_is_refused_with_the_choices() -> None:
    assert select(("axe", "lighthouse")) == (
        "`lighthouse` is not a DR test: choose smoke|axe|e2e|zap|all"
    )
    assert [t.id for t in MATRIX] == ["DR-SMOKE", "DR-AXE", "DR-E2E", "DR-ZAP"]
