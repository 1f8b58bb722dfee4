"""The operators' own PowerShell scripts as plan steps: where each runs, with which parameters.

    [[environments.InternalProd.scripts]]
    name = "notify-deploy"
    path = 'D:\\MCMS\\scripts\\deploy\\notify-deploy.ps1'
    at = "notify"                     # notify | before_stop | after_switch | after_start
    runs_on = "mcms-ops01"            # "hosts" = every host of the plan at once, or a
                                      # [[runner_hosts]] name
    timeout_s = 60
    parameters = [
      { name = "EventType", value = "{event}", pattern = "Approved|RolledBack|Deployed" },
      { name = "Environment", value = "{environment}" },
      { name = "SkipBuild", type = "switch", value = "true" },
    ]

Values are bound from the run (`BOUND`) when the plan is made, checked against their type
and `pattern` (a full match), shown on the approval card and bound by the plan's hash. On
the host they arrive as PowerShell parameters (base64 JSON, splatted): never in script text.
`at = "notify"` runs inside both notify steps, {event} being that step's event (RolledBack
or Approved, then Deployed); {event} means nothing at the other places and is refused there.
"""

from __future__ import annotations

import re
from typing import Final, Literal

from pydantic import Field, field_validator, model_validator

from commands.config.base import _check_name, _Strict

HOSTS: Final = "hosts"
# Known when the plan is made (its hash binds them): no run id, which exists only later.
BOUND: Final = ("environment", "target_version", "current_version", "kind", "event")
_PLACEHOLDER: Final = re.compile(r"\{([^{}]*)\}")
_PARAM_NAME: Final = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,39}$")
_SCRIPT_PATH: Final = re.compile(r"^[A-Za-z]:\\[A-Za-z0-9 ._\\-]*\.ps1$", re.IGNORECASE)
# A string value the host receives: printable ASCII (PowerShell reads U+2018.. as quotes).
_PRINTABLE: Final = re.compile(r"^[ -~]{0,1024}$")

ScriptAt = Literal["notify", "before_stop", "after_switch", "after_start"]


def expand(text: str, values: dict[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


class ScriptParam(_Strict):
    """One parameter: its PowerShell name, its type, its value (placeholders allowed for
    string and int), and the pattern the bound value must match."""

    name: str
    type: Literal["string", "int", "switch"] = "string"
    value: str
    pattern: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _PARAM_NAME.fullmatch(v):
            raise ValueError(f"{v!r} is not a PowerShell parameter name (letters and digits)")
        return v

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"pattern {v!r} is not a regular expression: {exc}") from exc
        return v

    @model_validator(mode="after")
    def _typed(self) -> ScriptParam:
        for name in _PLACEHOLDER.findall(self.value):
            if name not in BOUND:
                known = ", ".join("{" + b + "}" for b in BOUND)
                raise ValueError(f"{self.name}: unknown placeholder {{{name}}} (known: {known})")
        if self.type == "switch" and self.value not in ("true", "false"):
            raise ValueError(f'{self.name}: a switch takes value = "true" or "false"')
        literal = not _PLACEHOLDER.search(self.value)
        if self.type == "int" and literal and not re.fullmatch(r"-?[0-9]{1,18}", self.value):
            raise ValueError(f"{self.name}: {self.value!r} is not a whole number")
        return self

    def bind(self, values: dict[str, str]) -> str | int | bool:
        """The value for the host, or ValueError saying which rule it breaks."""
        if self.type == "switch":
            return self.value == "true"
        text = expand(self.value, values)
        if self.pattern is not None and not re.fullmatch(self.pattern, text):
            raise ValueError(f"-{self.name} {text!r} does not match its pattern {self.pattern!r}")
        if self.type == "int":
            if not re.fullmatch(r"-?[0-9]{1,18}", text):
                raise ValueError(f"-{self.name} {text!r} is not a whole number")
            return int(text)
        if not _PRINTABLE.fullmatch(text):
            raise ValueError(f"-{self.name} {text!r} holds characters other than printable ASCII")
        return text


class ScriptStep(_Strict):
    """One of the team's scripts, run as a step of every rollback and deploy."""

    name: str
    path: str
    at: ScriptAt
    runs_on: str = HOSTS
    parameters: list[ScriptParam] = Field(default_factory=list, max_length=20)
    timeout_s: float = Field(default=120, gt=0, le=3600)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, "script step name")

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not _SCRIPT_PATH.fullmatch(v) or ".." in v.split("\\"):
            raise ValueError(
                f"{v!r} must be the absolute path of a .ps1 on the host, like "
                "D:\\MCMS\\scripts\\deploy\\notify-deploy.ps1 (ASCII, no '..')"
            )
        return v

    @model_validator(mode="after")
    def _coherent(self) -> ScriptStep:
        names = [p.name.casefold() for p in self.parameters]
        if len(set(names)) != len(names):
            raise ValueError(f"script {self.name}: a parameter is given twice")
        if self.at != "notify" and any("{event}" in p.value for p in self.parameters):
            raise ValueError(
                f'script {self.name}: {{event}} is only bound for at = "notify" (the notify '
                "steps' RolledBack/Approved and Deployed)"
            )
        return self
