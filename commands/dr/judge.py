"""Pass or fail for one DR test, judged from its report — never from the exit code alone.

A suite's exit code says little: an axe script may exit 1 for one minor violation, ZAP's
baseline exits 2 for warnings, a crashed runner may exit 0. The criteria are the playbook's
(§8), applied to the report:

    DR-AXE   serious + critical violations = 0 (and at least one page scanned)
    DR-E2E   failures (failure + error) = 0 (and at least one test ran)
    DR-ZAP   High = 0 and Medium = 0 (alerts ZAP marks false positive are not counted)

When the exit code disagrees with the report, the result says so (`note`). A suite that
did not start, ran out of time, left no report, a stale one, or one that is not of its
kind has failed, and `why` says which.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Final, Literal

from adapters.dr.outcome import RunnerOutput
from adapters.dr.reports import (
    AxeSummary,
    Finding,
    JUnitSummary,
    ReportError,
    ZapSummary,
    parse_axe,
    parse_junit,
    parse_zap,
)
from adapters.smoke import NO_ANSWER, CheckResult
from commands.dr.matrix import AXE, E2E, SMOKE, ZAP, DrTest

Outcome = Literal["passed", "failed", "cancelled", "not-run"]
WORST_SHOWN: Final = 3


@dataclass(frozen=True)
class DrResult:
    """One test's verdict: what the card row, the audit line and a gate read."""

    test: DrTest
    outcome: Outcome
    counts: str = ""  # "0 serious/critical · 2 moderate · 2 pages"
    findings: tuple[Finding, ...] = ()  # worst first
    why: str | None = None  # why failed/not run when the findings do not say it
    note: str | None = None  # e.g. the exit code disagreed with the report
    duration_s: float = 0.0
    exit_code: int | None = None
    files: tuple[str, ...] = ()  # in the run folder: the log, the raw report

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"


@dataclass(frozen=True)
class Verdict:
    passed: bool
    counts: str
    findings: tuple[Finding, ...]
    why: str | None = None


def _axe(summary: AxeSummary) -> Verdict:
    impacts = summary.by_impact
    major = impacts["serious"] + impacts["critical"]
    parts = [f"{major} serious/critical"]
    parts += [f"{impacts[i]} {i}" for i in ("moderate", "minor") if impacts[i]]
    parts.append(f"{len(summary.pages)} page{'s' if len(summary.pages) != 1 else ''}")
    if not summary.pages:
        return Verdict(False, " · ".join(parts), (), "the report covers no page")
    return Verdict(major == 0, " · ".join(parts), summary.findings)


def _junit(summary: JUnitSummary) -> Verdict:
    counts = f"{summary.tests} tests · {summary.failures} failed"
    if summary.skipped:
        counts += f" · {summary.skipped} skipped"
    if summary.tests == 0:
        return Verdict(False, counts, (), "the report holds no test: nothing was checked")
    return Verdict(summary.failures == 0, counts, summary.failed)


def _zap(summary: ZapSummary) -> Verdict:
    risks = summary.by_risk
    counts = " · ".join(f"{risks[r]} {r}" for r in ("High", "Medium", "Low", "Informational"))
    if summary.false_positives:
        counts += f" · {summary.false_positives} false positive(s) not counted"
    return Verdict(risks["High"] == 0 and risks["Medium"] == 0, counts, summary.findings)


_JUDGES: Final[dict[str, Callable[[bytes], Verdict]]] = {
    AXE.key: lambda data: _axe(parse_axe(data)),
    E2E.key: lambda data: _junit(parse_junit(data)),
    ZAP.key: lambda data: _zap(parse_zap(data)),
}


def judge_report(test: DrTest, data: bytes) -> Verdict:
    """The playbook's criterion for `test` applied to its report; raises ReportError."""
    return _JUDGES[test.key](data)


def judge(test: DrTest, output: RunnerOutput) -> DrResult:
    """The verdict of one suite run (see the module doc); pure."""
    base = DrResult(test, "failed", duration_s=output.duration_s, exit_code=output.exit_code)
    if output.ended == "cancelled":
        return replace(base, outcome="cancelled", why=output.problem or "cancelled")
    if output.ended in ("not-started", "timeout"):
        return replace(base, why=output.problem or f"the suite {output.ended}")
    exited = f"exit code {output.exit_code}"
    if output.report is None:
        return replace(base, why=f"{output.report_problem or 'no report'} ({exited})")
    try:
        verdict = judge_report(test, output.report)
    except ReportError as exc:
        return replace(base, why=f"unusable report: {exc} ({exited})")
    note = None
    if output.exit_code is not None and (output.exit_code == 0) != verdict.passed:
        says = "passes" if verdict.passed else "fails"
        note = f"the suite exited {output.exit_code} but its report {says}: judged by the report"
    return replace(
        base,
        outcome="passed" if verdict.passed else "failed",
        counts=verdict.counts,
        findings=verdict.findings,
        why=verdict.why,
        note=note,
    )


def judge_smoke(results: Sequence[CheckResult], duration_s: float) -> DrResult:
    """DR-SMOKE: every configured check answered as expected."""
    passed = sum(r.passed for r in results)
    findings = tuple(
        Finding(
            r.name,
            f"no answer: {r.error or 'refused'}" if r.status == NO_ANSWER else f"status {r.status}",
            1,
            r.url,
        )
        for r in results
        if not r.passed
    )
    why = None
    if results and all(r.status == NO_ANSWER for r in results):
        why = "no check answered: the service looks fully stopped"
    return DrResult(
        SMOKE,
        "passed" if passed == len(results) else "failed",
        counts=f"{passed}/{len(results)} checks passed",
        findings=findings,
        why=why,
        duration_s=duration_s,
    )


def worst(findings: Sequence[Finding], limit: int = WORST_SHOWN) -> str:
    """`image-alt (critical, 2), label (critical, 1)` — the first `limit`, and how many more."""
    shown = []
    for f in findings[:limit]:
        # A failed test is its name; everything else says how bad, and how often if more.
        extra = [] if f.severity == "failure" else [f.severity]
        extra += [str(f.count)] if f.count > 1 else []
        shown.append(f"{f.name} ({', '.join(extra)})" if extra else f.name)
    more = len(findings) - limit
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")
