"""The DR report parsers, table-driven: real reports as fixtures, then every bad shape.

axe and JUnit fixtures are real output of lab/dr-suites (axe-core 4.14 in chromium, node's
junit reporter), trimmed; jest-junit's nested suites and ZAP's reports are written to
their documented formats (ZAP cannot be installed here).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dr"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def axe_page(*violations: tuple[str, str, int], url: str = "http://x/login") -> dict[str, object]:
    return {
        "url": url,
        "violations": [
            {"id": rule, "impact": impact, "nodes": [{}] * nodes}
            for rule, impact, nodes in violations
        ],
        "passes": [],
    }


# --- axe ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "pages", "by_impact", "names"),
    [
        (fixture("axe-clean.json"), 2, (0, 0, 0, 0), []),
        (
            fixture("axe-violations.json"),
            2,
            (2, 3, 0, 0),
            # color-contrast is serious on both pages: one finding, two elements.
            ["image-alt", "label", "color-contrast", "link-name"],
        ),
        (
            json.dumps(axe_page(("region", "moderate", 4), ("frame-title", "serious", 1))).encode(),
            1,
            (0, 1, 1, 0),
            ["frame-title", "region"],
        ),
        (json.dumps([axe_page()]).encode(), 1, (0, 0, 0, 0), []),
    ],
    ids=["lab-clean", "lab-a11y-fault", "single-result-object", "one-clean-page"],
)
def test_axe_results_count_violations_by_impact_worst_first(
    data: bytes, pages: int, by_impact: tuple[int, ...], names: list[str]
) -> None:
    summary = parse_axe(data)
    assert isinstance(summary, AxeSummary)
    assert len(summary.pages) == pages
    impacts = summary.by_impact
    assert (impacts["critical"], impacts["serious"], impacts["moderate"], impacts["minor"]) == (
        by_impact
    )
    assert [f.name for f in summary.findings] == names


def test_axe_merges_a_rule_across_pages_and_keeps_its_elements() -> None:
    summary = parse_axe(fixture("axe-violations.json"))
    contrast = next(f for f in summary.findings if f.name == "color-contrast")
    assert contrast == Finding("color-contrast", "serious", 2, "http://127.0.0.1:18081/login")


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe{", "not UTF-8"),
        (b"[]", "no page was scanned"),
        (b'{"results": []}', "no 'violations' list at the top level"),
        (b'[{"violations": []}, {"passes": []}]', "no 'violations' list at [1]"),
        (b'[{"violations": [{"impact": "serious"}]}]', "without a rule id"),
        (b'[{"violations": [{"id": "x", "impact": null}]}]', "impact None"),
        (b'[{"violations": [{"id": "x", "impact": "severe"}]}]', "impact 'severe'"),
    ],
    ids=["empty", "not-utf8", "no-pages", "wrong-top", "one-page-wrong", "no-id", "null", "bad"],
)
def test_axe_refuses_what_is_not_axe_results_with_why(data: bytes, why: str) -> None:
    with pytest.raises(ReportError, match=why.replace("[", r"\[").replace("]", r"\]")):
        parse_axe(data)


# --- JUnit ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "tests", "failures", "skipped", "failed"),
    [
        ("junit-node-passing.xml", 5, 0, 0, []),
        (
            "junit-node-failing.xml",
            5,
            3,
            0,
            [
                "signing in with the operator account opens the releases list",
                "the releases list needs a session",
                "the releases list marks the version health reports as current",
            ],
        ),
        ("junit-jest-nested.xml", 4, 1, 1, ["Releases list › filters by version"]),
    ],
    ids=["node-passing", "node-failing", "jest-nested"],
)
def test_junit_counts_from_the_elements_and_names_the_failed_tests(
    name: str, tests: int, failures: int, skipped: int, failed: list[str]
) -> None:
    summary = parse_junit(fixture(name))
    assert isinstance(summary, JUnitSummary)
    assert (summary.tests, summary.failures, summary.skipped) == (tests, failures, skipped)
    assert [f.name for f in summary.failed] == failed


def test_junit_keeps_the_first_line_of_each_failure_message() -> None:
    failed = parse_junit(fixture("junit-node-failing.xml")).failed
    assert failed[0].detail == "the releases page answered 500500 !== 200"
    jest = parse_junit(fixture("junit-jest-nested.xml")).failed[0]
    assert jest.detail == "expect(received).toContain(expected)"


@pytest.mark.parametrize(
    ("xml", "tests", "failed"),
    [
        (b"<testsuite name='x'><testcase name='a'><error message='boom'/></testcase></testsuite>",
         1, ["a"]),
        (b"<testsuites><testsuite name='S'><testsuite name='inner'><testcase name='t'>"
         b"<failure/></testcase></testsuite></testsuite></testsuites>", 1, ["S › inner › t"]),
        (b"<testsuites tests='9' failures='4'></testsuites>", 0, []),
    ],
    ids=["error-counts-as-failure", "nested-suites", "attributes-ignored"],
)  # fmt: skip
def test_junit_shapes(xml: bytes, tests: int, failed: list[str]) -> None:
    summary = parse_junit(xml)
    assert summary.tests == tests
    assert [f.name for f in summary.failed] == failed


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"<testsuites><testcase name='a'>", "not well-formed"),
        (b"not xml at all", "not well-formed"),
        (b"<html><body>502 Bad Gateway</body></html>", "root element is <html>"),
        (
            b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">]><testsuites/>',
            "declares a DTD",
        ),
    ],
    ids=["truncated", "text", "html", "dtd"],
)
def test_junit_refuses_what_is_not_junit_with_why(data: bytes, why: str) -> None:
    with pytest.raises(ReportError, match=why):
        parse_junit(data)


# --- ZAP ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "by_risk", "false_positives", "names"),
    [
        (
            "zap-baseline-findings.json",
            (0, 2, 1, 1),
            1,
            [
                "Content Security Policy (CSP) Header Not Set",
                "Missing Anti-clickjacking Header",
                "X-Content-Type-Options Header Missing",
                "Modern Web Application",
            ],
        ),
        (
            "zap-baseline-clean.json",
            (0, 0, 1, 0),
            0,
            ['Server Leaks Version Information via "Server" HTTP Response Header Field'],
        ),
        (
            "zap-api-alerts.json",
            (1, 1, 1, 0),
            0,
            [
                "Cross Site Scripting (Reflected)",
                "Content Security Policy (CSP) Header Not Set",
                'Server Leaks Version Information via "Server" HTTP Response Header Field',
            ],
        ),
    ],
    ids=["baseline-findings", "baseline-clean", "api-alerts"],
)
def test_zap_counts_alerts_by_risk_without_false_positives(
    name: str, by_risk: tuple[int, ...], false_positives: int, names: list[str]
) -> None:
    summary = parse_zap(fixture(name))
    assert isinstance(summary, ZapSummary)
    risks = summary.by_risk
    assert (risks["High"], risks["Medium"], risks["Low"], risks["Informational"]) == by_risk
    assert summary.false_positives == false_positives
    assert [f.name for f in summary.findings] == names


def test_zap_api_instances_of_one_alert_are_one_finding() -> None:
    """The API lists an alert once per URL; the report's `count` is what the card shows."""
    csp = next(f for f in parse_zap(fixture("zap-api-alerts.json")).findings if "CSP" in f.name)
    assert (csp.severity, csp.count) == ("Medium", 2)
    as_client_returns = json.loads(fixture("zap-api-alerts.json"))["alerts"]
    assert parse_zap(json.dumps(as_client_returns).encode()) == parse_zap(
        fixture("zap-api-alerts.json")
    )


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"{}", "expected the JSON report"),
        (b'{"site": {}}', "'site' is not a list"),
        (b'{"site": [{"@name": "x"}]}', "without an 'alerts' list"),
        (b'{"site": [{"alerts": [{"name": "x"}]}]}', "without name or riskcode"),
        (b'{"site": [{"alerts": [{"name": "x", "riskcode": "7"}]}]}', "riskcode '7'"),
        (b'[{"alert": "x", "risk": "Severe"}]', "risk 'Severe'"),
        (b'{"alerts": [{"alert": "x"}]}', "without name or risk"),
        (b"<OWASPZAPReport/>", "not JSON"),
    ],
    ids=["empty", "site-dict", "no-alerts", "no-risk", "bad-code", "bad-word", "api", "xml"],
)
def test_zap_refuses_what_is_not_a_zap_report_with_why(data: bytes, why: str) -> None:
    with pytest.raises(ReportError, match=why):
        parse_zap(data)
