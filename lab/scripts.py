"""The operators' own scripts as a lab host has them installed, and `run-script` running them.

A real host runs notify-deploy.ps1 and friends; the lab knows each script's `param()` block
(its parameters, their types, a ValidateSet, which are mandatory) and binds a call against
it as PowerShell would: an unknown parameter, a value outside the set, a missing mandatory
one or a string where an int belongs makes the script fail, as it would on Windows. Every
invocation is recorded (`SimHost.script_runs`: the script and its parameters as bound), so a
test asserts on what the host received, not on what the bot says it sent. A "script" fault
(name = the script's file name) makes one fail (exit code 1) or run slow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from lab.model import ScriptError, SimHost

SCRIPTS_DIR: Final = "D:\\MCMS\\scripts\\deploy"


@dataclass(frozen=True)
class ScriptParamSpec:
    kind: str = "string"  # string | int | switch
    mandatory: bool = False
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabScript:
    """One installed script: its path and what its param() block declares."""

    path: str
    params: dict[str, ScriptParamSpec] = field(default_factory=dict)
    says: str = "done"

    @property
    def file_name(self) -> str:
        return self.path.rsplit("\\", 1)[-1]


# The playbook's scripts (§3, §5, §6) with the parameters the playbook calls them with.
PLAYBOOK_SCRIPTS: Final = (
    LabScript(
        f"{SCRIPTS_DIR}\\notify-deploy.ps1",
        {
            "EventType": ScriptParamSpec(
                mandatory=True, choices=("Approved", "RolledBack", "Deployed")
            ),
            "Environment": ScriptParamSpec(mandatory=True),
            "Version": ScriptParamSpec(),
            "Message": ScriptParamSpec(),
        },
        "notification appended to logs\\deploy\\notifications; webhook answered 200",
    ),
    LabScript(
        f"{SCRIPTS_DIR}\\Deploy-CamService.ps1",
        {"Environment": ScriptParamSpec(mandatory=True), "Version": ScriptParamSpec()},
        "CAM service deployed",
    ),
    LabScript(
        f"{SCRIPTS_DIR}\\package-offline.ps1",
        {"SkipBuild": ScriptParamSpec(kind="switch"), "Version": ScriptParamSpec()},
        "offline package laid out (build skipped)",
    ),
    LabScript(
        f"{SCRIPTS_DIR}\\run-smoke.ps1",
        {"Environment": ScriptParamSpec(mandatory=True), "TimeoutSec": ScriptParamSpec("int")},
        "Health 200, Swagger 200, Kerberos 401",
    ),
)


def _bind(script: LabScript, given: dict[str, Any]) -> list[str]:
    """What PowerShell would refuse in this call (empty: it binds)."""
    problems = []
    declared = {k.casefold(): (k, v) for k, v in script.params.items()}
    for name, value in given.items():
        found = declared.get(name.casefold())
        if found is None:
            problems.append(f"A parameter cannot be found that matches parameter name '{name}'.")
            continue
        spec = found[1]
        if spec.kind == "switch" and not isinstance(value, bool):
            problems.append(f"Cannot convert '{value}' to the type SwitchParameter of '{name}'.")
        elif spec.kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            problems.append(f'Cannot convert value "{value}" to type "System.Int32" ({name}).')
        elif spec.choices and str(value).casefold() not in [c.casefold() for c in spec.choices]:
            problems.append(
                f"Cannot validate argument on parameter '{name}'. The argument \"{value}\" does "
                f'not belong to the set "{",".join(spec.choices)}"'
            )
    given_names = {n.casefold() for n in given}
    for key, (name, spec) in declared.items():
        if spec.mandatory and key not in given_names:
            problems.append(f"missing mandatory parameter {name} (non-interactive session)")
    return problems


def run_operator_script(host: SimHost, p: dict[str, Any]) -> tuple[dict[str, Any], float]:
    path = str(p["ScriptPath"])
    parameters = dict(p.get("ScriptParameters") or {})
    timeout = float(p["TimeoutSec"])
    script = next((s for s in host.scripts if s.path.casefold() == path.casefold()), None)
    if script is None:
        raise ScriptError(
            f"script '{path}' does not exist on {host.name}; check its path under scripts in "
            "the bot configuration. Nothing was run"
        )
    record: dict[str, Any] = {"script": script.path, "parameters": parameters}
    host.script_runs.append(record)
    problems = _bind(script, parameters)
    slow = host.fault("script", "slow", script.file_name)
    took = slow.delay_s if slow is not None else 0.0
    ended, output = "exited", f"{script.file_name}: {script.says}"
    code: int | None = 0
    if problems:
        code, output = 1, " ".join(problems)
    elif host.fault("script", "fail", script.file_name) is not None:
        code, output = 1, f"{script.file_name}: lab-injected failure (exit 1)"
    if took > timeout:
        ended, code, output, took = "timeout", None, f"{script.file_name}: still running", timeout
    record.update(ended=ended, exit_code=code)
    result = {
        "ok": True,
        "op": "run-script",
        "script": path,
        "ended": ended,
        "exit_code": code,
        "duration_ms": int(took * 1000),
        "output": output,
    }
    return result, took
