"""The constant remote scripts and how one is composed with its parameters for a run.

No chat text ever becomes PowerShell (docs/architecture.md): each operation is a constant
script in `adapters/winrm/ps/<op>.ps1` with a `param()` block; values travel as base64 of
UTF-8 JSON, decoded on the host and splatted (docs/windows-hosts.md). The composed script
travels on stdin to a constant bootstrap, so its length never meets the 8,191-char command
line.

Invariant: every composed script is pure ASCII — the constants are checked at import, the
parameters are base64 — so the console code page of the remote shell cannot mangle it.

On the way back, every script prints exactly one JSON object line last; the prelude prints
`{"ok": false, "error": ...}` and exits 1 when the script throws, and whatever PowerShell
itself could not run shows up as CLIXML on stderr (`parse_result`).
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final, TypeAlias

from adapters.errors import BadReply, InvalidName, RemoteScriptFailed

JsonValue: TypeAlias = str | int | float | bool | list["JsonValue"] | dict[str, "JsonValue"] | None

# Duplicated from commands.config on purpose: adapters never import commands,
# and the edge must refuse unsafe names even if a caller skipped config validation.
# ASCII only, because PowerShell treats U+2018..U+201B as quote characters.
NAME_PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")
VERSION_PATTERN: Final = re.compile(r"^[0-9]+(\.[0-9]+){1,3}(-[A-Za-z0-9]+)?$")
WINDOWS_PATH_PATTERN: Final = re.compile(r"^[A-Za-z]:\\[A-Za-z0-9 ._\\-]*$")
# A directory the host reads from (*Dir): a local path as above, or a UNC share; `$` only
# ends a share name (admin shares like \\files\D$). Releases roots stay local (*Root).
SHARE_PATH_PATTERN: Final = re.compile(
    r"^(?:[A-Za-z]:(?:\\[A-Za-z0-9 ._-]*)+"
    r"|\\\\[A-Za-z0-9._-]+\\[A-Za-z0-9._-]+\$?(?:\\[A-Za-z0-9 ._-]*)*)$"
)
SHA256_PATTERN: Final = re.compile(r"^[0-9a-fA-F]{64}$")
# A server of a web farm as ARR addresses it: a host name, an FQDN or an IPv4 address.
ADDRESS_PATTERN: Final = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9][A-Za-z0-9-]{0,62})*$"
)
# A folder a site is pointed at: a drive path, or one starting with an environment variable
# as IIS writes its defaults (%SystemDrive%\inetpub\wwwroot); restores write back what was.
SITE_PATH_PATTERN: Final = re.compile(r"^(?:[A-Za-z]:|%[A-Za-z_]{1,32}%)\\[A-Za-z0-9 ._()\\-]*$")
# A service's ImagePath is registry data, never run by PowerShell: any printable ASCII.
IMAGE_PATH_PATTERN: Final = re.compile(r"^[ -~]{1,1024}$")
_MAX_LIST: Final = 50
_MAX_BYTES: Final = 2**53 - 1
_PARAM_NAME: Final = re.compile(r"^[A-Z][A-Za-z0-9]{0,39}$")
_ACTION: Final = re.compile(r"^[A-Z][A-Za-z]{0,19}$")

# Parameter keys are classified by suffix so a new script gets the right check by naming
# its parameters well (Site, AppPool, Service, FarmName, Version, ProtectVersions, Sha256,
# ReleasesRoot, PackageDir, TimeoutSec, KeepCount, ServerAddress, RequiredBytes; lists:
# Sites, AppPools, Services, SiteNames, SitePaths, ServiceImagePaths). Other keys (echo's
# Text) are free text.
_NAME_SUFFIXES: Final = ("site", "pool", "service", "name", "farm")
_NAMES_SUFFIXES: Final = ("sites", "pools", "services", "names")

OP_ECHO: Final = "echo"
OP_READ_STATE: Final = "read-state"
OP_SITE: Final = "site-control"
OP_POOL: Final = "pool-control"
OP_SERVICE: Final = "service-control"
OP_DEPLOY: Final = "deploy-release"
OP_SWITCH: Final = "switch-release"
OP_PREFLIGHT: Final = "preflight"
OP_ARR_READ: Final = "arr-read-farm"
OP_ARR_SET: Final = "arr-set-server"
OP_ARR_WAIT_DRAIN: Final = "arr-wait-drain"
OP_DR_TEST: Final = "run-dr-test"
OP_RUN_SCRIPT: Final = "run-script"
OP_SYNC_PACKAGE: Final = "sync-package"
OP_READ_SHARE: Final = "read-share"
# A parameter of an operator's script: a PowerShell name; its value a string, int or switch.
_SCRIPT_PARAM: Final = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,39}$")
_SCRIPT_VALUE: Final = re.compile(r"^[ -~]{0,1024}$")
_SCRIPT_FILE: Final = re.compile(r"^[A-Za-z]:\\[A-Za-z0-9 ._\\-]*\.ps1$", re.IGNORECASE)

# Runs on the host's command line (as -EncodedCommand): read the composed script from stdin
# and run it. Kept tiny and constant so the command line stays far below 8,191 characters.
BOOTSTRAP: Final = (
    "$ProgressPreference = 'SilentlyContinue'\n"
    "& ([ScriptBlock]::Create([Console]::In.ReadToEnd()))\n"
)
POWERSHELL: Final = "powershell.exe"
POWERSHELL_ARGS: Final = ("-NoLogo", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass")

_PRELUDE: Final = """\
# composed by adapters/winrm/scripts.py: prelude, parameters, one constant script
$ProgressPreference = 'SilentlyContinue'
$ErrorActionPreference = 'Stop'
try {
    [Console]::OutputEncoding = [Text.Encoding]::UTF8
    $p = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('{b64}')) | ConvertFrom-Json
    $a = @{}
    $p.PSObject.Properties | ForEach-Object { $a[$_.Name] = $_.Value }
    & {
{body}
    } @a
    exit 0
} catch {
    $e = [ordered]@{ ok = $false; error = $_.Exception.Message }
    [Console]::Out.WriteLine((ConvertTo-Json -InputObject $e -Compress))
    exit 1
}
"""


@dataclass(frozen=True)
class ScriptSpec:
    """One remote operation: its name, the parameters its `param()` block declares, its text."""

    op: str
    params: frozenset[str]
    body: str


def _load(op: str, params: tuple[str, ...]) -> ScriptSpec:
    body = resources.files("adapters.winrm").joinpath("ps", f"{op}.ps1").read_text(encoding="utf-8")
    if not body.isascii():
        raise RuntimeError(f"adapters/winrm/ps/{op}.ps1 must be pure ASCII (see module docstring)")
    if not body.startswith(f"# mcms-op: {op}\n"):
        raise RuntimeError(f"adapters/winrm/ps/{op}.ps1 must start with '# mcms-op: {op}'")
    return ScriptSpec(op, frozenset(params), body)


SCRIPTS: Final[Mapping[str, ScriptSpec]] = {
    spec.op: spec
    for spec in (
        _load(OP_ECHO, ("Text",)),
        _load(OP_READ_STATE, ("Sites", "AppPools", "Services", "ReleasesRoot")),
        _load(
            OP_PREFLIGHT,
            (
                "Sites",
                "AppPools",
                "Services",
                "ReleasesRoot",
                "Version",
                "Sha256",
                "PackageDir",
                "RequiredBytes",
            ),
        ),
        _load(OP_SITE, ("Site", "Action", "TimeoutSec")),
        _load(OP_POOL, ("AppPool", "Action", "TimeoutSec")),
        _load(OP_SERVICE, ("Service", "Action", "TimeoutSec")),
        _load(
            OP_DEPLOY,
            (
                "Version",
                "Sha256",
                "PackageDir",
                "ReleasesRoot",
                "KeepCount",
                "ProtectVersions",
            ),
        ),
        _load(
            OP_SWITCH,
            (
                "SiteNames",
                "SitePaths",
                "ServiceNames",
                "ServiceImagePaths",
                "ReleasesRoot",
                "TimeoutSec",
            ),
        ),
        _load(OP_ARR_READ, ("FarmName",)),
        _load(OP_ARR_SET, ("FarmName", "ServerAddress", "Action", "TimeoutSec")),
        _load(OP_ARR_WAIT_DRAIN, ("FarmName", "ServerAddress", "TimeoutSec")),
        _load(OP_SYNC_PACKAGE, ("Version", "Sha256", "SourceDir", "PackageDir", "TimeoutSec")),
        _load(OP_READ_SHARE, ("PackageDir", "Versions")),
        _load(OP_RUN_SCRIPT, ("ScriptPath", "ScriptParameters", "TimeoutSec", "MaxOutputBytes")),
        _load(
            OP_DR_TEST,
            (
                "Program",
                "Arguments",
                "WorkingDir",
                "Variables",
                "ReportPath",
                "TimeoutSec",
                "MaxReportBytes",
                "MaxLogBytes",
            ),
        ),
    )
}


def encoded_bootstrap() -> str:
    """The bootstrap as PowerShell's -EncodedCommand wants it: base64 of UTF-16LE."""
    return base64.b64encode(BOOTSTRAP.encode("utf-16-le")).decode("ascii")


def compose(host: str, op: str, params: Mapping[str, JsonValue]) -> str:
    """The full script for one run; raises InvalidName before anything is sent."""
    spec = SCRIPTS.get(op)
    if spec is None:
        raise InvalidName(
            f"unknown remote operation {op!r} for {host}: a bug in the bot", host=host
        )
    for key, value in params.items():
        _check_param(host, spec, key, value)
    payload = json.dumps(dict(params), ensure_ascii=False, separators=(",", ":"))
    b64 = base64.b64encode(payload.encode("utf-8")).decode("ascii")
    # Not indented: a here-string terminator in a script must stay at the start of its line.
    # str.format would trip over PowerShell's braces, so the two holes are filled by hand.
    return _PRELUDE.replace("{b64}", b64).replace("{body}", spec.body.rstrip("\n"))


def _refuse(host: str, op: str, key: str, why: str) -> InvalidName:
    return InvalidName(
        f"refused to run {op} on {host}: parameter {key} {why}. Nothing was sent.", host=host
    )


def _check_param(host: str, spec: ScriptSpec, key: str, value: JsonValue) -> None:
    if not _PARAM_NAME.fullmatch(key) or key not in spec.params:
        raise _refuse(host, spec.op, repr(key), "is not declared by the script")
    lowered = key.lower()
    if key == "ScriptParameters":
        if not _script_parameters(value):
            raise _refuse(
                host,
                spec.op,
                key,
                f"= {value!r} is not an object of parameter names to printable strings, "
                "whole numbers or switches",
            )
        return
    if key == "ScriptPath" and not (
        isinstance(value, str) and _SCRIPT_FILE.fullmatch(value) and _no_up(value)
    ):
        raise _refuse(host, spec.op, key, f"= {value!r} is not the absolute path of a .ps1")
    if lowered.endswith(_NAMES_SUFFIXES):
        if not _list_of(value, lambda v: v.isascii() and NAME_PATTERN.fullmatch(v) is not None):
            raise _refuse(host, spec.op, key, f"= {value!r} is not a list of safe names")
    elif lowered.endswith("imagepaths"):
        if not _list_of(value, lambda v: IMAGE_PATH_PATTERN.fullmatch(v) is not None):
            raise _refuse(host, spec.op, key, f"= {value!r} is not a list of printable paths")
    elif lowered.endswith("paths"):
        if not _list_of(value, lambda v: SITE_PATH_PATTERN.fullmatch(v) is not None and _no_up(v)):
            raise _refuse(host, spec.op, key, f"= {value!r} is not a list of absolute paths")
    elif lowered.endswith("bytes"):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_BYTES:
            raise _refuse(host, spec.op, key, f"= {value!r} is not a byte count")
    elif lowered.endswith(_NAME_SUFFIXES):
        if not (isinstance(value, str) and value.isascii() and NAME_PATTERN.fullmatch(value)):
            raise _refuse(
                host,
                spec.op,
                key,
                f"= {value!r} is not a safe name (1-64 ASCII letters, digits, space, '.', '_', "
                "'-'; check the configuration)",
            )
    elif lowered.endswith("address"):
        if not (isinstance(value, str) and ADDRESS_PATTERN.fullmatch(value)):
            raise _refuse(
                host, spec.op, key, f"= {value!r} is not a host name, FQDN or IPv4 address"
            )
    elif lowered.endswith("version"):
        if not (isinstance(value, str) and VERSION_PATTERN.fullmatch(value)):
            raise _refuse(host, spec.op, key, f"= {value!r} is not a version like 1.4.2")
    elif lowered.endswith("versions"):
        if not (
            isinstance(value, list)
            and len(value) <= _MAX_LIST
            and all(isinstance(v, str) and VERSION_PATTERN.fullmatch(v) for v in value)
        ):
            raise _refuse(host, spec.op, key, f"= {value!r} is not a list of versions")
    elif lowered.endswith("sha256"):
        if not (isinstance(value, str) and SHA256_PATTERN.fullmatch(value)):
            raise _refuse(host, spec.op, key, f"= {value!r} is not a hex SHA-256 digest")
    elif lowered.endswith(("root", "path")):
        # An empty root means "none" where the script declares it optional (switch-release).
        if value == "" and spec.op == OP_SWITCH:
            return
        if not (isinstance(value, str) and WINDOWS_PATH_PATTERN.fullmatch(value) and _no_up(value)):
            raise _refuse(host, spec.op, key, f"= {value!r} is not an absolute ASCII path")
    elif lowered.endswith("dir"):
        if not (isinstance(value, str) and SHARE_PATH_PATTERN.fullmatch(value) and _no_up(value)):
            raise _refuse(
                host, spec.op, key, f"= {value!r} is not an absolute ASCII path or UNC share"
            )
    elif lowered.endswith("sec"):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 3600:
            raise _refuse(host, spec.op, key, f"= {value!r} is not whole seconds in 1..3600")
    elif lowered.endswith("count"):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
            raise _refuse(host, spec.op, key, f"= {value!r} is not a whole number in 1..100")
    elif lowered == "action" and not (isinstance(value, str) and _ACTION.fullmatch(value)):
        raise _refuse(host, spec.op, key, f"= {value!r} is not an action word")


def _script_parameters(value: JsonValue) -> bool:
    if not isinstance(value, dict) or len(value) > 20:
        return False
    for name, item in value.items():
        if not _SCRIPT_PARAM.fullmatch(name):
            return False
        if isinstance(item, str):
            if not _SCRIPT_VALUE.fullmatch(item):
                return False
        elif not isinstance(item, (bool, int)) or isinstance(item, float):
            return False
    return True


def _list_of(value: JsonValue, ok: Callable[[str], bool]) -> bool:
    return (
        isinstance(value, list)
        and len(value) <= _MAX_LIST
        and all(isinstance(v, str) and ok(v) for v in value)
    )


def _no_up(path: str) -> bool:
    """No `..` (nor `...`, which Windows trims to `..`-like oddities) segment: a path built
    from config must not climb out of where it points."""
    return all(seg.strip(". ") or not seg for seg in path.split("\\"))


@dataclass(frozen=True)
class ScriptOutput:
    """The raw result of one command: both streams and the exit code."""

    stdout: bytes
    stderr: bytes
    exit_code: int


def parse_result(host: str, op: str, output: ScriptOutput) -> dict[str, Any]:
    """The last JSON object line of stdout; script failures become RemoteScriptFailed."""
    text = output.stdout.decode("utf-8", errors="replace").replace("\ufeff", "")
    result: dict[str, Any] | None = None
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                candidate = json.loads(line)
                if isinstance(candidate, dict):
                    result = candidate
                    break
    if result is not None and result.get("ok") is True and output.exit_code == 0:
        return result
    if result is None and output.exit_code == 0:
        raise BadReply(
            f"{op} on {host} finished but printed no JSON result line. Is PowerShell on the "
            "host printing a profile banner or prompt? The scripts run with -NoProfile.",
            host=host,
        )
    remote = str(result.get("error", "")) if result else _stderr_summary(output.stderr)
    remote = remote or f"exit code {output.exit_code}, no message"
    raise RemoteScriptFailed(
        f"{op} failed on {host}: {remote}",
        host=host,
        op=op,
        remote_message=remote,
        exit_code=output.exit_code,
    )


_CLIXML_ERROR = re.compile(r'<S S="Error">(.*?)</S>', re.DOTALL)


def _stderr_summary(stderr: bytes) -> str:
    """PowerShell writes errors to stderr as CLIXML; keep the human text, bounded."""
    text = stderr.decode("utf-8", errors="replace")
    parts = _CLIXML_ERROR.findall(text)
    if parts:
        text = "".join(parts).replace("_x000D_", "").replace("_x000A_", " ")
        text = html.unescape(text)
    return " ".join(text.split())[:500]
