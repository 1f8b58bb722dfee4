"""The README's "Try it locally" is the conversation the browser test walks, on `make run`."""

from __future__ import annotations

import json
import re
from pathlib import Path

from bot import demo
from bot.teams.png import read_png
from tests.browser_stack import SCENARIO

ROOT = Path(__file__).resolve().parents[1]


def trial_section() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return readme.split("## Try it locally\n", 1)[1].split("\n## ", 1)[0]


def test_readme_trial_types_what_the_browser_test_types() -> None:
    typed = re.findall(r"^\d+\. `([^`]+)`", trial_section(), flags=re.MULTILINE)
    assert typed == [step["say"] for step in SCENARIO if "say" in step]
    assert "Click **Approve**" in trial_section()
    assert any(step.get("double_click") == "Approve" for step in SCENARIO)


def test_readme_trial_starts_with_make_run_on_the_demo_ports() -> None:
    section = trial_section()
    assert section.count("```sh\nmake run\n```") == 1
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "run: $(RUN_STAMP)\n\t$(BIN)/python -m bot.demo\n" in makefile
    assert f"http://127.0.0.1:{demo.PLAYGROUND_PORT}/" in section
    assert f"@microsoft/m365agentsplayground@{demo.PLAYGROUND_VERSION}" in section
    # `make run` and the browser tests use the same Playground release.
    pins = json.loads((ROOT / "tests" / "browser" / "package.json").read_text())
    assert pins["devDependencies"]["@microsoft/m365agentsplayground"] == demo.PLAYGROUND_VERSION
    assert demo.BOT_HEALTH.replace("/healthz", "/api/messages") in section


def test_readme_screenshots_exist() -> None:
    images = re.findall(r"!\[[^\]]+\]\(([^)]+\.png)\)", trial_section())
    assert images == ["docs/playground-approval-card.png", "docs/playground-finished-run.png"]
    for image in images:
        png = read_png((ROOT / image).read_bytes())
        assert png.width >= 800, image
