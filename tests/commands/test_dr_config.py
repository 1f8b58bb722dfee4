"""The DR runners in the config: refused at load, with the key, when their host cannot run them."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from commands.config import Config, format_validation_error

ROOT = Path(__file__).resolve().parents[2]
DEMO: dict[str, Any] = tomllib.loads((ROOT / "lab" / "demo-bot.toml").read_text())
BUILD_HOST = {
    "name": "build01",
    "winrm_url": "https://build01.corp.example:5986/wsman",
    "username_env": "MCMS_BUILD_USER",
    "password_env": "MCMS_BUILD_PASSWORD",
}


def remote(**overrides: Any) -> dict[str, Any]:
    return {
        "command": ["npm.cmd", "run", "test:regression", "--", "--base={base_url}"],
        "working_dir": "D:\\src\\MCMS",
        "runs_on": "build01",
        "report": "reports\\junit-{environment}.xml",
        "env": {"BASE_URL": "{base_url}"},
        **overrides,
    }


def config(e2e: dict[str, Any], *, hosts: list[dict[str, Any]] | None = None) -> Config:
    raw = copy.deepcopy(DEMO)
    raw["environments"]["Lab"]["dr"]["e2e"] = e2e
    raw["runner_hosts"] = [BUILD_HOST] if hosts is None else hosts
    return Config.model_validate(raw)


def problems(e2e: dict[str, Any], **kwargs: Any) -> list[str]:
    with pytest.raises(ValidationError) as info:
        config(e2e, **kwargs)
    return list(format_validation_error(info.value))


def test_a_runner_on_a_windows_runner_host_loads_with_its_report_path_resolved() -> None:
    loaded = config(remote(secret_env={"PORTAL_PASSWORD": "MCMS_DR_PASSWORD"}))
    dr = loaded.environments["Lab"].dr
    assert dr is not None and dr.e2e is not None
    assert (
        dr.e2e.report_path("D:\\src\\MCMS", "Lab", "dr-1")
        == "D:\\src\\MCMS\\reports\\junit-Lab.xml"
    )
    assert loaded.runner_host("build01") is not None
    # Its WinRM credentials and the suite's secret are redacted like every other secret.
    assert {"MCMS_BUILD_USER", "MCMS_BUILD_PASSWORD", "MCMS_DR_PASSWORD"} <= set(
        loaded.secret_env_names()
    )


@pytest.mark.parametrize(
    ("e2e", "key", "why"),
    [
        (remote(runs_on="build02"), "environments.Lab.dr.e2e.runs_on", "unknown runner host"),
        (
            remote(working_dir="\\\\files\\src\\MCMS"),
            "environments.Lab.dr.e2e",
            "cmd.exe cannot start in a UNC share",
        ),
        (remote(working_dir="D:\\src\\..\\Windows"), "environments.Lab.dr.e2e", "absolute local"),
        (remote(report="..\\..\\x.xml"), "environments.Lab.dr.e2e", "runner host's drive"),
        (
            remote(command=["npm.cmd", "run", "x & del C:\\*"]),
            "environments.Lab.dr.e2e",
            "a character cmd.exe would act on",
        ),
        (
            remote(command=["npm.cmd", "run", "%PATH%"]),
            "environments.Lab.dr.e2e",
            "a character cmd.exe would act on",
        ),
        (
            remote(env={"BASE_URL": "{baseurl}"}),
            "environments.Lab.dr.e2e.env",
            "unknown placeholder {baseurl}",
        ),
        (
            remote(report="reports\\{report}.xml"),
            "environments.Lab.dr.e2e.report",
            "unknown placeholder {report}",
        ),
        (
            remote(env={"X": "1"}, secret_env={"X": "MCMS_X"}),
            "environments.Lab.dr.e2e",
            "env and secret_env both set X",
        ),
        (remote(env={"BAD-NAME": "1"}), "environments.Lab.dr.e2e.env", "not an environment"),
        (remote(command=[" "]), "environments.Lab.dr.e2e.command", "the program"),
        (remote(timeout_s=7200), "environments.Lab.dr.e2e.timeout_s", "less than or equal"),
    ],
    ids=[
        "unknown-host",
        "unc-dir",
        "dotdot-dir",
        "report-escapes",
        "ampersand",
        "percent",
        "bad-placeholder",
        "report-placeholder",
        "env-twice",
        "bad-variable",
        "empty-program",
        "too-long",
    ],
)
def test_a_runner_its_host_cannot_run_is_refused_with_the_key(
    e2e: dict[str, Any], key: str, why: str
) -> None:
    found = problems(e2e)
    assert any(p.startswith(f"{key}:") and why in p for p in found), found


def test_runner_host_names_must_be_unique_and_not_the_bots_own() -> None:
    found = problems(remote(), hosts=[BUILD_HOST, {**BUILD_HOST, "name": "bot"}])
    assert any("runner_hosts: names must be unique and not 'bot'" in p for p in found)


def test_a_local_runner_takes_posix_paths_and_any_argument() -> None:
    local = {
        "command": ["npm", "run", "test:regression", "--", "--grep=a&b"],
        "working_dir": "lab/dr-suites",
        "report": "reports/{run_id}/junit.xml",
    }
    dr = config(local).environments["Lab"].dr
    assert dr is not None and dr.e2e is not None
    assert dr.e2e.report_path("/srv/suites", "Lab", "dr-0a1b2c3d") == (
        "/srv/suites/reports/dr-0a1b2c3d/junit.xml"
    )


def test_the_readmes_runner_example_is_a_valid_config() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Pointing the runners at the team's suites\n", 1)[1]
    example = tomllib.loads(section.split("```toml\n", 1)[1].split("```", 1)[0])
    raw = copy.deepcopy(DEMO)
    raw["environments"]["InternalStage"]["dr"] = example["environments"]["InternalStage"]["dr"]
    raw["runner_hosts"] = example["runner_hosts"]
    dr = Config.model_validate(raw).environments["InternalStage"].dr
    assert dr is not None and set(dr.runners()) == {"axe", "e2e"}
    assert all(r.runs_on == "mcms-build01" for r in dr.runners().values())
