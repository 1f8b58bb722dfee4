"""The reports DR test suites leave, read into small typed summaries (pure functions).

Three formats, as their tools write them:

- axe-core results JSON: one `axe.run()` result ({"violations": [...], "url": ...}) or a
  list of them, one per page (what @axe-core/cli and lab/dr-suites write). Each violation
  has a rule `id`, an `impact` (minor | moderate | serious | critical) and its `nodes`.
- JUnit XML: `<testsuites>` / `<testsuite>` / `<testcase>` with `<failure>`, `<error>` or
  `<skipped>` children (node's `--test-reporter=junit`, jest-junit, mocha, pytest...).
  Counted from the elements, never from the summary attributes, which some writers omit.
- OWASP ZAP: the traditional JSON report (`zap-baseline.py -J report.json`: `site[].alerts[]`
  with `riskcode` 0-3 and `confidence` 0-4, as strings), or alerts as the ZAP API returns
  them (`/JSON/alert/view/alerts/` → {"alerts": [...]}, or the list the `zaproxy` Python
  client's `zap.alert.alerts()` returns), one entry per instance with `risk` and
  `confidence` in words. Alerts ZAP marks as false positives (confidence 0) are not counted.

Anything else raises ReportError saying what was wrong, so the test is failed with why.
Nothing here decides pass or fail: commands/dr/judge.py does, from these summaries.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

MAX_REPORT_BYTES: Final = 50 * 1024 * 1024

AXE_IMPACTS: Final = ("critical", "serious", "moderate", "minor")
ZAP_RISKS: Final = ("High", "Medium", "Low", "Informational")
_ZAP_CONFIDENCE_WORDS: Final = ("False Positive", "Low", "Medium", "High", "Confirmed")


class ReportError(ValueError):
    """The bytes are not a report of the expected kind; the message says why."""


@dataclass(frozen=True)
class Finding:
    """One thing a report found: an axe rule, a failed test, a ZAP alert."""

    name: str
    severity: str  # axe impact, "failure"/"error", ZAP risk
    count: int = 1  # elements (axe), instances (ZAP)
    detail: str = ""  # the page, the failure message's first line, the first URL


@dataclass(frozen=True)
class AxeSummary:
    pages: tuple[str, ...]
    # Violations (one per rule and page) by impact; every impact key is present.
    by_impact: Mapping[str, int]
    findings: tuple[Finding, ...]  # by rule, worst impact first, then most elements


@dataclass(frozen=True)
class JUnitSummary:
    tests: int
    failures: int  # <failure> and <error> both: the test did not pass
    skipped: int
    failed: tuple[Finding, ...]  # in report order


@dataclass(frozen=True)
class ZapSummary:
    # Alerts (one per alert type and risk) by risk word; every risk key is present.
    by_risk: Mapping[str, int]
    false_positives: int
    findings: tuple[Finding, ...] = field(default=())  # worst risk first, then most instances


def _load_json(data: bytes, what: str) -> Any:
    if len(data) > MAX_REPORT_BYTES:
        raise ReportError(f"the {what} is {len(data)} bytes, over the {MAX_REPORT_BYTES} limit")
    try:
        return json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ReportError(f"the {what} is not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        raise ReportError(f"the {what} is not JSON ({exc.msg} at line {exc.lineno})") from exc


def _first_line(text: str, limit: int = 200) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


# --- axe ------------------------------------------------------------------------------------


def parse_axe(data: bytes) -> AxeSummary:
    """axe-core results (one object or a list of them) → violations by impact and rule."""
    raw = _load_json(data, "axe report")
    results = raw if isinstance(raw, list) else [raw]
    if not results:
        raise ReportError("the axe report is an empty list: no page was scanned")
    pages: list[str] = []
    by_impact = dict.fromkeys(AXE_IMPACTS, 0)
    rules: dict[str, tuple[str, int, str]] = {}  # rule id → (impact, elements, first page)
    for i, result in enumerate(results):
        where = f"[{i}]" if isinstance(raw, list) else "the top level"
        if not isinstance(result, dict) or not isinstance(result.get("violations"), list):
            raise ReportError(f"not axe results: no 'violations' list at {where}")
        page = str(result.get("url") or f"page {i + 1}")
        pages.append(page)
        for violation in result["violations"]:
            if not isinstance(violation, dict) or not isinstance(violation.get("id"), str):
                raise ReportError(f"not axe results: a violation without a rule id at {where}")
            impact = violation.get("impact")
            # axe reports impact null only for rules that passed; a violation has one.
            if impact not in by_impact:
                raise ReportError(
                    f"axe violation {violation['id']!r} has impact {impact!r}, not one of "
                    f"{', '.join(AXE_IMPACTS)}"
                )
            nodes = violation.get("nodes")
            count = len(nodes) if isinstance(nodes, list) else 0
            by_impact[impact] += 1
            seen = rules.get(violation["id"])
            if seen is None:
                rules[violation["id"]] = (impact, count, page)
            else:
                worst = min(seen[0], impact, key=AXE_IMPACTS.index)
                rules[violation["id"]] = (worst, seen[1] + count, seen[2])
    findings = sorted(
        (Finding(rule, impact, count, page) for rule, (impact, count, page) in rules.items()),
        key=lambda f: (AXE_IMPACTS.index(f.severity), -f.count, f.name),
    )
    return AxeSummary(tuple(pages), by_impact, tuple(findings))


# --- JUnit ----------------------------------------------------------------------------------


def parse_junit(data: bytes) -> JUnitSummary:
    """JUnit XML → tests, failures (failure + error), skipped, the failed tests by name."""
    if len(data) > MAX_REPORT_BYTES:
        raise ReportError(f"the JUnit report is {len(data)} bytes, over the limit")
    # No test runner writes a DTD; refusing one keeps entity expansion out of the parser.
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise ReportError("the JUnit report declares a DTD or entities; refused")
    try:
        root = ET.fromstring(data)  # noqa: S314 - no DTD (checked above), bounded size
    except ET.ParseError as exc:
        raise ReportError(f"the JUnit report is not well-formed XML ({exc})") from exc
    if root.tag not in ("testsuites", "testsuite"):
        raise ReportError(f"not a JUnit report: the root element is <{root.tag}>")
    tests = skipped = 0
    failed: list[Finding] = []

    def walk(node: ET.Element, suites: tuple[str, ...]) -> None:
        nonlocal tests, skipped
        for child in node:
            if child.tag == "testsuite":
                name = child.get("name", "").strip()
                walk(child, (*suites, name) if name else suites)
            elif child.tag == "testcase":
                tests += 1
                name = " › ".join((*suites, child.get("name", "").strip() or "(unnamed test)"))
                problem = child.find("failure")
                kind = "failure"
                if problem is None:
                    problem, kind = child.find("error"), "error"
                if problem is not None:
                    message = problem.get("message") or problem.text or ""
                    failed.append(Finding(name, kind, 1, _first_line(message)))
                elif child.find("skipped") is not None:
                    skipped += 1

    # A lone <testsuite> root is the file itself: its name is not part of the test names.
    walk(root, ())
    return JUnitSummary(tests, len(failed), skipped, tuple(failed))


# --- ZAP ------------------------------------------------------------------------------------


def _zap_code(value: Any, words: Sequence[str], what: str, alert: str) -> int:
    """ZAP writes risk/confidence as "2" in reports and "Medium" in the API."""
    text = str(value).strip()
    if text.isdigit() and int(text) < len(words):
        return int(text)
    for code, word in enumerate(words):
        if text.casefold() == word.casefold():
            return code
    raise ReportError(f"ZAP alert {alert!r} has {what} {value!r}, which ZAP does not write")


_RISK_BY_CODE: Final = ("Informational", "Low", "Medium", "High")


def _zap_alerts_traditional(raw: dict[str, Any]) -> list[tuple[str, int, int, int, str]]:
    out = []
    sites = raw["site"]
    if not isinstance(sites, list):
        raise ReportError("not a ZAP JSON report: 'site' is not a list")
    for site in sites:
        alerts = site.get("alerts") if isinstance(site, dict) else None
        if not isinstance(alerts, list):
            raise ReportError("not a ZAP JSON report: a site without an 'alerts' list")
        for alert in alerts:
            if not isinstance(alert, dict):
                raise ReportError("not a ZAP JSON report: an alert is not an object")
            name = str(alert.get("name") or alert.get("alert") or "").strip()
            if not name or "riskcode" not in alert:
                raise ReportError("not a ZAP JSON report: an alert without name or riskcode")
            risk = _zap_code(alert["riskcode"], _RISK_BY_CODE, "riskcode", name)
            confidence = _zap_code(
                alert.get("confidence", "2"), _ZAP_CONFIDENCE_WORDS, "confidence", name
            )
            instances = alert.get("instances")
            count_text = str(alert.get("count", "")).strip()
            if count_text.isdigit():
                count = int(count_text)
            else:
                count = len(instances) if isinstance(instances, list) else 1
            first = instances[0] if isinstance(instances, list) and instances else {}
            uri = str(first.get("uri", "")) if isinstance(first, dict) else ""
            out.append((name, risk, confidence, count, uri or str(site.get("@name", ""))))
    return out


def _zap_alerts_api(alerts: list[Any]) -> list[tuple[str, int, int, int, str]]:
    out = []
    for alert in alerts:
        if not isinstance(alert, dict):
            raise ReportError("not ZAP API alerts: an alert is not an object")
        name = str(alert.get("alert") or alert.get("name") or "").strip()
        if not name or "risk" not in alert:
            raise ReportError("not ZAP API alerts: an alert without name or risk")
        risk = _zap_code(alert["risk"], _RISK_BY_CODE, "risk", name)
        confidence = _zap_code(
            alert.get("confidence", "Medium"), _ZAP_CONFIDENCE_WORDS, "confidence", name
        )
        out.append((name, risk, confidence, 1, str(alert.get("url", ""))))
    return out


def parse_zap(data: bytes) -> ZapSummary:
    """A ZAP JSON report or API alerts → alerts by risk (false positives apart)."""
    raw = _load_json(data, "ZAP report")
    if isinstance(raw, dict) and "site" in raw:
        rows = _zap_alerts_traditional(raw)
    elif isinstance(raw, dict) and isinstance(raw.get("alerts"), list):
        rows = _zap_alerts_api(raw["alerts"])
    elif isinstance(raw, list):
        rows = _zap_alerts_api(raw)
    else:
        raise ReportError(
            "not a ZAP report: expected the JSON report (-J, with 'site') or API alerts "
            "(a list, or an object with 'alerts')"
        )
    grouped: dict[tuple[str, int], tuple[int, str]] = {}
    false_positives = 0
    for name, risk, confidence, count, where in rows:
        if confidence == 0:
            false_positives += count
            continue
        seen = grouped.get((name, risk))
        grouped[(name, risk)] = (count, where) if seen is None else (seen[0] + count, seen[1])
    by_risk = dict.fromkeys(ZAP_RISKS, 0)
    for _, risk in grouped:
        by_risk[_RISK_BY_CODE[risk]] += 1
    findings = sorted(
        (
            Finding(name, _RISK_BY_CODE[risk], count, where)
            for (name, risk), (count, where) in grouped.items()
        ),
        key=lambda f: (ZAP_RISKS.index(f.severity), -f.count, f.name),
    )
    return ZapSummary(by_risk, false_positives, tuple(findings))
