"""The DR test matrix's runners (playbook §8) in the config: what each suite runs, and where.

    [environments.InternalStage.dr]
    base_url = "https://mcms-stage.corp.example/"

    [environments.InternalStage.dr.axe]
    command = ["npm.cmd", "run", "test:axe"]
    working_dir = 'D:\\src\\MCMS'
    runs_on = "build01"                     # a [[runner_hosts]] name, or "bot"
    report = 'reports\\axe-results.json'     # relative to working_dir
    env = { BASE_URL = "{base_url}" }
    timeout_s = 900

DR-SMOKE needs no runner: it is the environment's smoke checks. `command` is an argv list,
never a shell line. Placeholders in `command` and `env` values: {base_url}, {environment},
{report} (the report's absolute path) and {run_id}; in `report`: {environment}, {run_id}.
A runner on a Windows runner host ("runs_on" a runner host) takes an absolute local working
directory, and its arguments avoid the characters cmd.exe would act on (a `.cmd` such as
npm.cmd goes through it).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath, PureWindowsPath
from typing import Final

from pydantic import AnyHttpUrl, Field, ValidationInfo, field_validator

from commands.config.base import EnvVarName, _check_env_var, _Strict

BOT_HOST: Final = "bot"
PLACEHOLDERS: Final = ("base_url", "environment", "report", "run_id")
REPORT_PLACEHOLDERS: Final = ("environment", "run_id")
_PLACEHOLDER: Final = re.compile(r"\{([^{}]*)\}")
_VARIABLE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# cmd.exe acts on " % ^ & | < > ! even in the middle of an argument: none may reach it.
_WINDOWS_ARGUMENT: Final = re.compile(r"^[A-Za-z0-9 _.,:;=/\\@+#~\[\]()-]*$")
_WINDOWS_DIR: Final = re.compile(r"^[A-Za-z]:\\[A-Za-z0-9 ._\\-]*$")


def expand(text: str, values: dict[str, str]) -> str:
    """`{base_url}/login` → the value; unknown names were refused when the config loaded."""
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def _check_placeholders(text: str, allowed: tuple[str, ...] = PLACEHOLDERS) -> str:
    for name in _PLACEHOLDER.findall(text):
        if name not in allowed:
            known = ", ".join("{" + p + "}" for p in allowed)
            raise ValueError(f"unknown placeholder {{{name}}} in {text!r} (known: {known})")
    return text


class DrRunner(_Strict):
    """One DR suite: its command line, where and how long it runs, the report it leaves."""

    command: list[str] = Field(min_length=1)
    working_dir: str = Field(min_length=1)
    runs_on: str = BOT_HOST
    report: str = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    # Variable for the suite → the bot's environment variable that holds its (secret) value.
    secret_env: dict[str, EnvVarName] = Field(default_factory=dict)
    timeout_s: float = Field(default=900, gt=0, le=3600)

    @field_validator("command")
    @classmethod
    def _command(cls, v: list[str]) -> list[str]:
        if not v[0].strip():
            raise ValueError("the program (the first word of command) is empty")
        for word in v:
            if any(ch in word for ch in "\r\n\0"):
                raise ValueError(f"{word!r}: a command word cannot hold line breaks")
            _check_placeholders(word)
        return v

    @field_validator("report")
    @classmethod
    def _report(cls, v: str) -> str:
        return _check_placeholders(v, REPORT_PLACEHOLDERS)

    @field_validator("env", "secret_env")
    @classmethod
    def _variables(cls, v: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        for name, value in v.items():
            if not _VARIABLE.fullmatch(name):
                raise ValueError(f"{name!r} is not an environment variable name")
            if info.field_name == "env":
                _check_placeholders(value)
            else:
                _check_env_var(value)  # the bot's own variable holding the secret
        return v

    @property
    def remote(self) -> bool:
        return self.runs_on != BOT_HOST

    def report_path(self, working_dir: str, environment: str, run_id: str) -> str:
        """The report's absolute path, for the host it runs on (`working_dir` resolved)."""
        report = expand(self.report, {"environment": environment, "run_id": run_id})
        if self.remote:
            return str(PureWindowsPath(working_dir) / PureWindowsPath(report))
        return str(PurePosixPath(working_dir) / PurePosixPath(report))

    def placeholder_values(
        self, base_url: str, environment: str, run_id: str, working_dir: str
    ) -> dict[str, str]:
        return {
            "base_url": base_url,
            "environment": environment,
            "report": self.report_path(working_dir, environment, run_id),
            "run_id": run_id,
        }

    def problems(self, base_url: str, environment: str) -> list[str]:
        """What the runner's host cannot take (checked at load, to name the key)."""
        found = []
        if set(self.env) & set(self.secret_env):
            both = ", ".join(sorted(set(self.env) & set(self.secret_env)))
            found.append(f"env and secret_env both set {both}")
        if not self.remote:
            return found
        if not _WINDOWS_DIR.fullmatch(self.working_dir) or ".." in self.working_dir.split("\\"):
            found.append(
                f"working_dir {self.working_dir!r} must be an absolute local Windows path like "
                "D:\\src\\MCMS on the runner host (cmd.exe cannot start in a UNC share)"
            )
        report = self.report_path(self.working_dir, environment, "dr-00000000")
        if not _WINDOWS_DIR.fullmatch(report) or ".." in report.split("\\"):
            found.append(f"report {self.report!r} must be a path on the runner host's drive")
        values = self.placeholder_values(base_url, environment, "dr-00000000", self.working_dir)
        for word in self.command[1:]:
            if not _WINDOWS_ARGUMENT.fullmatch(expand(word, values)):
                found.append(
                    f"argument {expand(word, values)!r} holds a character cmd.exe would act "
                    'on (" % ^ & | < > ! ?): not allowed on a Windows runner host'
                )
        return found


class DrTests(_Strict):
    """An environment's DR test matrix: the URL the suites test, and their runners."""

    base_url: AnyHttpUrl
    axe: DrRunner | None = None
    e2e: DrRunner | None = None
    zap: DrRunner | None = None

    def runner(self, key: str) -> DrRunner | None:
        """The runner of the DR test `key` (axe, e2e, zap); None when not configured."""
        runners: dict[str, DrRunner | None] = {"axe": self.axe, "e2e": self.e2e, "zap": self.zap}
        return runners.get(key)

    def runners(self) -> dict[str, DrRunner]:
        return {k: r for k in ("axe", "e2e", "zap") if (r := self.runner(k)) is not None}
