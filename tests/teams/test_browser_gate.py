"""The browser tests never vanish silently: skipped with one printed reason, failed under CI.

The same holds for the DR suites' tests (lab/dr-suites in chromium).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NO_CHROMIUM = "/nonexistent/chromium"

pytestmark = pytest.mark.slow


MODULES = [
    pytest.param("tests/teams/test_browser.py", "browser e2e needs", "tests/browser", id="browser"),
    pytest.param("tests/lab/test_dr_suites.py", "DR suites need", "lab/dr-suites", id="dr-suites"),
]


def run_browser_tests(ci: bool, module: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["MCMS_CHROMIUM"] = NO_CHROMIUM
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            module,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(("module", "needs", "npm_dir"), MODULES)
def test_without_chromium_the_browser_tests_skip_with_one_printed_reason(
    module: str, needs: str, npm_dir: str
) -> None:
    done = run_browser_tests(ci=False, module=module)
    # The whole module skips, so pytest ran no test of this one file: exit 5, not a failure.
    assert done.returncode == pytest.ExitCode.NO_TESTS_COLLECTED, done.stdout + done.stderr
    reasons = [line for line in done.stdout.splitlines() if line.startswith("SKIPPED")]
    assert len(reasons) == 1, done.stdout
    assert f"{needs} {NO_CHROMIUM} (Debian package chromium)" in reasons[0]
    assert f"apt-get install -y chromium && npm ci --prefix {npm_dir}" in reasons[0]
    assert "1 skipped" in done.stdout


@pytest.mark.parametrize(("module", "needs", "npm_dir"), MODULES)
def test_under_ci_missing_chromium_fails_instead_of_skipping(
    module: str, needs: str, npm_dir: str
) -> None:
    done = run_browser_tests(ci=True, module=module)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "skipped" not in done.stdout
    assert "CI=true: these tests must run here, not skip" in done.stdout
    assert f"{NO_CHROMIUM} (Debian package chromium)" in done.stdout
