"""A test double for PowerShell on a simulated host: recognises our scripts, not a language.

The bot sends `powershell.exe ... -EncodedCommand <bootstrap>` and the composed script on
stdin (adapters/winrm/scripts.py). This module checks both look like that, finds the
`# mcms-op: <op>` marker and the base64 JSON parameters, binds them against the received
script's own `param()` block (so a script and its Python caller cannot drift apart
unnoticed), applies the operation to the `SimHost` and prints the JSON line the real script
would print — or the error JSON and exit code 1 where the real one would fail.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from lab import arr
from lab.components import preflight, read_state, switch_release
from lab.model import ScriptCall, ScriptError, SimHost
from lab.releases import deploy_release
from lab.runner import run_dr_test
from lab.scripts import run_operator_script
from lab.share import read_share, sync_package

MAX_COMMAND_LINE: Final = 8191  # cmd.exe's limit on Windows
_MARKER: Final = re.compile(r"^\s*# mcms-op: ([a-z][a-z-]*)\s*$", re.MULTILINE)
_PARAMS_B64: Final = re.compile(r"FromBase64String\('([A-Za-z0-9+/=]*)'\)")
_ENCODED: Final = re.compile(r"-EncodedCommand\s+([A-Za-z0-9+/=]+)", re.IGNORECASE)
_PARAM_BLOCK: Final = re.compile(r"^param\(", re.MULTILINE | re.IGNORECASE)
_VALIDATE_SET: Final = re.compile(r"ValidateSet\(([^)]*)\)", re.IGNORECASE)
_VARIABLE: Final = re.compile(r"\$([A-Za-z][A-Za-z0-9]*)")


@dataclass(frozen=True)
class ScriptRun:
    """What the process printed; `duration_s` is how long the real script would have run.

    A script that waits on the simulated world (arr-wait-drain) has `later` instead: the
    WinRM endpoint awaits it for the real output.
    """

    stdout: bytes
    stderr: bytes
    exit_code: int
    duration_s: float = 0.0
    later: Callable[[], Awaitable[ScriptRun]] | None = None


def check_command_line(command: str, arguments: str) -> str | None:
    """None when this is our stdin bootstrap; otherwise why PowerShell would not run it."""
    if len(command) + 1 + len(arguments) > MAX_COMMAND_LINE:
        return "The command line is too long."
    match = _ENCODED.search(arguments)
    if not command.lower().startswith("powershell") or match is None:
        return f"lab: only powershell -EncodedCommand is simulated, got {command!r}"
    try:
        bootstrap = base64.b64decode(match.group(1), validate=True).decode("utf-16-le")
    except (binascii.Error, UnicodeDecodeError):
        return "lab: -EncodedCommand is not base64 of UTF-16LE"
    if "[Console]::In.ReadToEnd()" not in bootstrap:
        return "lab: the bootstrap does not read its script from stdin"
    return None


def parse_script(host: SimHost, stdin: bytes) -> ScriptCall | ScriptRun:
    """The call a composed script makes (recorded in `host.calls`), or the failed run a
    script the double cannot accept would give."""
    try:
        text = stdin.decode("ascii")
    except UnicodeDecodeError:
        # The real console would decode stdin with the shell's code page and mangle it.
        return failed("lab: non-ASCII bytes on stdin would be mangled by the console code page")
    markers = _MARKER.findall(text)
    payloads = _PARAMS_B64.findall(text)
    if len(markers) != 1 or len(payloads) != 1 or "} @a" not in text:
        return failed("lab: stdin is not one composed mcms script (marker, parameters, splat)")
    op = markers[0]
    raw = base64.b64decode(payloads[0]).decode("utf-8")
    params = json.loads(raw)
    if not isinstance(params, dict):
        return failed("lab: the parameters are not a JSON object")
    call = ScriptCall(op, params, raw)
    host.calls.append(call)
    try:
        _bind(text, params)
    except ScriptError as exc:
        return failed(str(exc))
    return call


def run_script(host: SimHost, stdin: bytes) -> ScriptRun:
    """Apply one composed script to `host`; never raises for a bad script."""
    call = parse_script(host, stdin)
    if isinstance(call, ScriptRun):
        return call
    return apply_op(host, call.op, call.params)


def apply_op(host: SimHost, op: str, params: dict[str, Any]) -> ScriptRun:
    """What the script `op` prints when run on `host` with already-bound `params`."""
    deferred = _DEFERRED_OPS.get(op)
    if deferred is not None:
        return _deferred(host, deferred, params)
    handler = _OPS.get(op)
    if handler is None:
        return failed(f"lab: no simulation for op {op!r}")
    try:
        result, duration = handler(host, params)
    except ScriptError as exc:
        return failed(str(exc), exc.duration_s)
    except KeyError as exc:
        return failed(str(exc))
    line = json.dumps(result, ensure_ascii=False, separators=(",", ":"))
    return ScriptRun((line + "\r\n").encode("utf-8"), b"", 0, duration)


def _deferred(host: SimHost, deferred: DeferredHandler, params: dict[str, Any]) -> ScriptRun:
    try:
        wait = deferred(host, params)
    except ScriptError as exc:
        return failed(str(exc), exc.duration_s)
    except KeyError as exc:
        return failed(str(exc))

    async def later() -> ScriptRun:
        line = json.dumps(await wait(), ensure_ascii=False, separators=(",", ":"))
        return ScriptRun((line + "\r\n").encode("utf-8"), b"", 0)

    return ScriptRun(b"", b"", 0, later=later)


def failed(message: str, duration_s: float = 0.0) -> ScriptRun:
    """What the prelude prints when the script throws: the error JSON, exit code 1."""
    line = json.dumps({"ok": False, "error": message}, separators=(",", ":"))
    return ScriptRun((line + "\r\n").encode("utf-8"), b"", 1, duration_s)


def _bind(text: str, params: dict[str, Any]) -> None:
    """PowerShell's parameter binding, for the shapes our param() blocks use."""
    declared: dict[str, tuple[bool, list[str] | None]] = {}
    for decl in _param_declarations(text):
        names = [n for n in _VARIABLE.findall(decl) if n.lower() not in ("true", "false", "null")]
        if not names:
            continue
        mandatory = re.search(r"Mandatory\s*=\s*\$true", decl, re.IGNORECASE) is not None
        allowed = _VALIDATE_SET.search(decl)
        choices = re.findall(r"'([^']*)'", allowed.group(1)) if allowed else None
        declared[names[0].lower()] = (mandatory, choices)
    for key, value in params.items():
        if key.lower() not in declared:
            raise ScriptError(f"A parameter cannot be found that matches parameter name '{key}'.")
        choices = declared[key.lower()][1]
        if choices is not None and str(value).lower() not in [c.lower() for c in choices]:
            raise ScriptError(
                f"Cannot validate argument on parameter '{key}'. The argument \"{value}\" does "
                f'not belong to the set "{",".join(choices)}"'
            )
    given = {k.lower() for k in params}
    missing = [n for n, (mandatory, _) in declared.items() if mandatory and n not in given]
    if missing:
        raise ScriptError(f"missing mandatory parameters: {', '.join(missing)}")


def _param_declarations(text: str) -> list[str]:
    """The top-level comma-separated pieces of the first `param(...)` block."""
    start = _PARAM_BLOCK.search(text)
    if start is None:
        return []
    depth, piece, pieces = 1, "", []
    for ch in text[start.end() :]:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
            if depth == 0:
                break
        if ch == "," and depth == 1:
            pieces.append(piece)
            piece = ""
        else:
            piece += ch
    return [*pieces, piece]


Handler = Callable[[SimHost, dict[str, Any]], tuple[dict[str, Any], float]]
# Checks its parameters at once, then waits when the returned coroutine function is awaited.
DeferredHandler = Callable[[SimHost, dict[str, Any]], Callable[[], Awaitable[dict[str, Any]]]]


def _echo(host: SimHost, p: dict[str, Any]) -> tuple[dict[str, Any], float]:
    text = str(p.get("Text") or "")
    # .Length of a .NET string counts UTF-16 code units, so an emoji counts two.
    length = len(text.encode("utf-16-le")) // 2
    return {"ok": True, "op": "echo", "text": text, "length": length}, 0.0


_WORDS: Final = {
    # kind: (Start word, Stop word, Start pending, Stop pending)
    "site": ("Started", "Stopped", "Starting", "Stopping"),
    "pool": ("Started", "Stopped", "Starting", "Stopping"),
    "service": ("Running", "Stopped", "StartPending", "StopPending"),
}


def _control(kind: str, key: str, op: str) -> Handler:
    def handler(host: SimHost, p: dict[str, Any]) -> tuple[dict[str, Any], float]:
        name, action = str(p[key]), str(p["Action"]).capitalize()
        timeout = float(p.get("TimeoutSec", 30))
        started, stopped, start_pending, stop_pending = _WORDS[kind]
        stored = host.find(host.table(kind), name)
        if stored is None:
            raise ScriptError(_MISSING[kind].format(name=name, host=host.name))
        before = host.get_state(kind, stored)
        want = stopped if action == "Stop" else started
        if action == "Recycle" and before not in (started, start_pending):
            want = stopped  # nothing runs to recycle: a stopped pool stays stopped
        recycle = action == "Recycle" and before == started
        changed = recycle or (
            before != want and before != (stop_pending if action == "Stop" else start_pending)
        )
        stuck = changed and host.has_fault(kind, "stuck", stored, action)
        now = want
        if stuck:
            now = stop_pending if want == stopped else start_pending
        elif not changed and before in (start_pending, stop_pending):
            now = want  # a pending state settles while the script waits
        host.set_state(kind, stored, now)
        if recycle and not stuck:
            host.recycles[stored] = host.recycles.get(stored, 0) + 1
        result = {
            "ok": True,
            "op": op,
            "name": name,
            "action": action,
            "before": before,
            "state": now,
            "wanted": want,
            "changed": changed,
            "reached": now == want,
        }
        # A stuck component makes the real script wait its whole TimeoutSec.
        return result, timeout if now != want else 0.0

    return handler


_MISSING: Final = {
    "site": "IIS site '{name}' does not exist on {host}",
    "pool": "IIS application pool '{name}' does not exist on {host}",
    "service": "Cannot find any service with service name '{name}'.",
}

_OPS: Final[dict[str, Handler]] = {
    "echo": _echo,
    "read-state": read_state,
    "preflight": preflight,
    "site-control": _control("site", "Site", "site-control"),
    "pool-control": _control("pool", "AppPool", "pool-control"),
    "service-control": _control("service", "Service", "service-control"),
    "deploy-release": deploy_release,
    "switch-release": switch_release,
    "arr-read-farm": arr.read_farm,
    "arr-set-server": arr.set_server,
    "run-dr-test": run_dr_test,
    "run-script": run_operator_script,
    "sync-package": sync_package,
    "read-share": read_share,
}
_DEFERRED_OPS: Final[dict[str, DeferredHandler]] = {"arr-wait-drain": arr.wait_drain}

# ScriptError moved to lab.model (lab.releases raises it too); still importable from here.
__all__ = [
    "ScriptError",
    "ScriptRun",
    "apply_op",
    "check_command_line",
    "failed",
    "parse_script",
    "run_script",
]
