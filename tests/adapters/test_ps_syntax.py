"""A syntax gate for the remote PowerShell: no Windows here, but tree-sitter parses it.

Every constant script, the bootstrap and composed scripts (with hostile values) must parse
without errors; a deliberately broken script must not, so the gate is known to bite.
"""

from __future__ import annotations

import base64

import pytest
import tree_sitter_powershell
from tree_sitter import Language, Parser

from adapters.errors import InvalidName
from adapters.winrm import scripts as ps_scripts
from adapters.winrm.scripts import SCRIPTS, JsonValue

PARSER = Parser(Language(tree_sitter_powershell.language()))
HOSTILE = "'; Remove-Item C:\\ -Recurse #\" $(calc) `whoami` ‘x’ “y” @{a=1}\r\n}}) 🙂 '@ \"@"
VALID_PARAMS: dict[str, dict[str, JsonValue]] = {
    "echo": {"Text": HOSTILE},
    "read-state": {
        "Sites": ["MCMS.Portal", "MCMS.Api"],
        "AppPools": ["MCMS.Portal", "MCMS.Api"],
        "Services": ["MCMS.Worker"],
        "ReleasesRoot": "D:\\MCMS\\releases",
    },
    "preflight": {
        "Sites": ["MCMS.Portal", "MCMS.Api"],
        "AppPools": ["MCMS.Portal"],
        "Services": ["MCMS.Worker"],
        "ReleasesRoot": "D:\\MCMS\\releases",
        "Version": "1.4.1",
        "Sha256": "ab" * 32,
        "PackageDir": "\\\\files\\mcms\\artifacts\\offline",
        "RequiredBytes": 1_500_000_000,
    },
    "site-control": {"Site": "MCMS", "Action": "Start", "TimeoutSec": 30},
    "pool-control": {"AppPool": "MCMS", "Action": "Recycle", "TimeoutSec": 30},
    "service-control": {"Service": "MCMS.Worker", "Action": "Stop", "TimeoutSec": 30},
    "deploy-release": {
        "Version": "1.4.2",
        "Sha256": "ab" * 32,
        "PackageDir": "\\\\files\\mcms\\artifacts\\offline",
        "ReleasesRoot": "D:\\MCMS\\releases",
        "KeepCount": 3,
        "ProtectVersions": ["1.4.2", "1.4.1"],
    },
    "switch-release": {
        "SiteNames": ["MCMS.Portal", "MCMS.Api"],
        "SitePaths": ["D:\\MCMS\\releases\\1.4.1\\Portal", "D:\\MCMS\\releases\\1.4.1\\Api"],
        "ServiceNames": ["MCMS.Worker"],
        "ServiceImagePaths": ['"D:\\MCMS\\releases\\1.4.1\\Worker\\MCMS.Worker.exe" --service'],
        "ReleasesRoot": "D:\\MCMS\\releases",
        "TimeoutSec": 30,
    },
    "arr-read-farm": {"FarmName": "MCMS"},
    "arr-set-server": {
        "FarmName": "MCMS",
        "ServerAddress": "prod-web01",
        "Action": "Drain",
        "TimeoutSec": 30,
    },
    "arr-wait-drain": {"FarmName": "MCMS", "ServerAddress": "prod-web01", "TimeoutSec": 60},
    # The runner's command line and environment come from the config, never from chat; even
    # so they travel as parameters, and hostile text must not break the composed script.
    "run-dr-test": {
        "Program": "npm.cmd",
        "Arguments": ["run", "test:axe", HOSTILE],
        "WorkingDir": "D:\\src\\MCMS",
        "Variables": {"BASE_URL": "https://mcms-stage.corp.example/", "X": HOSTILE},
        "ReportPath": "D:\\src\\MCMS\\reports\\axe-results.json",
        "TimeoutSec": 900,
        "MaxReportBytes": 52428800,
        "MaxLogBytes": 262144,
    },
    "sync-package": {
        "Version": "1.4.1",
        "Sha256": "ab" * 32,
        "SourceDir": "\\\\files\\mcms\\offline",
        "PackageDir": "D:\\MCMS\\packages",
        "TimeoutSec": 600,
    },
    "read-share": {"PackageDir": "\\\\files\\D$\\packages", "Versions": ["1.4.1", "1.4.3"]},
    "run-script": {
        "ScriptPath": "D:\\MCMS\\scripts\\deploy\\notify-deploy.ps1",
        "ScriptParameters": {
            "EventType": "RolledBack",
            "Environment": "Lab",
            "SkipBuild": True,
            "Retries": 3,
            "Note": "".join(c for c in HOSTILE if " " <= c <= "~"),
        },
        "TimeoutSec": 60,
        "MaxOutputBytes": 16384,
    },
}
# The most awkward values the edge still lets through: each must compose into valid syntax.
EDGE_PARAMS: list[tuple[str, dict[str, JsonValue]]] = [
    (
        "deploy-release",
        {
            "Version": "1.4.2.17-hotfix1",
            "Sha256": "AB" * 32,
            "PackageDir": "\\\\files-01.corp\\D$\\MCMS pkgs\\",
            "ReleasesRoot": "D:\\",
            "KeepCount": 100,
            "ProtectVersions": [],
        },
    ),
    (
        "deploy-release",
        {
            "Version": "0.0",
            "Sha256": "0" * 64,
            "PackageDir": "C:\\x",
            "ReleasesRoot": "D:\\MCMS\\rel eases 2",
            "ProtectVersions": ["9.9.9.9-x"] * 50,
        },
    ),
    (
        "switch-release",
        {
            "SiteNames": ["Default Web Site"],
            "SitePaths": ["%SystemDrive%\\inetpub\\wwwroot (x86)"],
            "ServiceNames": ["W3SVC"],
            # A restore writes back whatever the registry held: quotes, env vars, ' and $.
            "ServiceImagePaths": ["%SystemRoot%\\system32\\svchost.exe -k iissvcs '$(x)' \"y\""],
            "ReleasesRoot": "",
            "TimeoutSec": 3600,
        },
    ),
    (
        "arr-set-server",
        {
            "FarmName": "MCMS blue-green_2.0",
            "ServerAddress": "web-01.prod.corp.example",
            "Action": "Offline",
            "TimeoutSec": 3600,
        },
    ),
    ("arr-wait-drain", {"FarmName": "0", "ServerAddress": "10.0.0.17", "TimeoutSec": 1}),
    ("read-state", {"Sites": [], "AppPools": [], "Services": [], "ReleasesRoot": "D:\\"}),
]


def parses_cleanly(source: str) -> bool:
    return PARSER.parse(source.encode("utf-8")).root_node.has_error is False


@pytest.mark.parametrize("op", sorted(SCRIPTS))
def test_constant_script_parses(op: str) -> None:
    assert parses_cleanly(SCRIPTS[op].body)


@pytest.mark.parametrize("op", sorted(SCRIPTS))
def test_composed_script_parses_and_is_ascii(op: str) -> None:
    composed = ps_scripts.compose("test-host", op, VALID_PARAMS[op])
    assert parses_cleanly(composed)
    assert composed.isascii()


@pytest.mark.parametrize(("op", "params"), EDGE_PARAMS, ids=lambda v: str(v)[:24])
def test_composed_script_with_edge_values_parses(op: str, params: dict[str, JsonValue]) -> None:
    assert parses_cleanly(ps_scripts.compose("test-host", op, params))


@pytest.mark.parametrize(
    ("op", "key", "value"),
    [
        ("deploy-release", "PackageDir", HOSTILE),
        ("deploy-release", "PackageDir", "\\\\files\\share\\$(calc)"),
        ("deploy-release", "ProtectVersions", ["1.4.2", HOSTILE]),
        ("deploy-release", "ProtectVersions", "1.4.2"),
        ("deploy-release", "Sha256", HOSTILE),
        ("deploy-release", "KeepCount", True),
        ("switch-release", "SiteNames", [HOSTILE]),
        ("switch-release", "SitePaths", ["D:\\MCMS\\..\\Windows"]),
        ("switch-release", "SitePaths", ["\\\\evil\\share"]),
        ("switch-release", "ServiceImagePaths", ["C:\\x.exe\r\nmore"]),
        ("switch-release", "ServiceImagePaths", "C:\\x.exe"),
        ("switch-release", "ReleasesRoot", "D:\\MCMS\\..\\Windows"),
        ("preflight", "Sites", ["MCMS", HOSTILE]),
        ("preflight", "RequiredBytes", -1),
        ("preflight", "RequiredBytes", "1"),
        ("read-state", "Services", "MCMS.Worker"),
        ("arr-set-server", "ServerAddress", HOSTILE),
        ("arr-set-server", "ServerAddress", "web01'; iisreset #"),
        ("arr-set-server", "ServerAddress", "web01/../x"),
        ("arr-set-server", "FarmName", "MCMS' or 1=1"),
        ("arr-set-server", "TimeoutSec", 0),
        ("arr-wait-drain", "ServerAddress", "-web01"),
        ("run-dr-test", "WorkingDir", HOSTILE),
        ("run-dr-test", "ReportPath", "D:\\src\\..\\Windows\\win.ini"),
        ("run-dr-test", "TimeoutSec", 7200),
        ("sync-package", "SourceDir", HOSTILE),
        ("sync-package", "SourceDir", "\\\\files\\..\\x"),
        ("sync-package", "Version", "1.4.1; calc"),
        ("read-share", "Versions", ["1.4.1", HOSTILE]),
        ("run-script", "ScriptPath", "D:\\MCMS\\..\\Windows\\evil.ps1"),
        ("run-script", "ScriptPath", "\\\\evil\\share\\x.ps1"),
        ("run-script", "ScriptPath", "D:\\MCMS\\scripts\\notify.cmd"),
        ("run-script", "ScriptParameters", {"Event Type": "x"}),
        ("run-script", "ScriptParameters", {"EventType": "a\r\nb"}),
        ("run-script", "ScriptParameters", {"EventType": ["a"]}),
        ("run-script", "ScriptParameters", {"EventType": 1.5}),
        ("run-script", "ScriptParameters", ["EventType"]),
    ],
    ids=lambda v: repr(v)[:20],
)
def test_hostile_values_never_reach_a_deploy_script(op: str, key: str, value: JsonValue) -> None:
    """Only echo and a DR runner's command line carry free text (base64, never spliced);
    every path, name, version and number is checked by its suffix."""
    with pytest.raises(InvalidName):
        ps_scripts.compose("test-host", op, {**VALID_PARAMS[op], key: value})


def test_bootstrap_parses_and_decodes_from_its_command_line_form() -> None:
    assert parses_cleanly(ps_scripts.BOOTSTRAP)
    encoded = ps_scripts.encoded_bootstrap()
    assert base64.b64decode(encoded).decode("utf-16-le") == ps_scripts.BOOTSTRAP
    # The command line stays far below Windows' 8,191 characters whatever the payload.
    command_line = " ".join([ps_scripts.POWERSHELL, *ps_scripts.POWERSHELL_ARGS, encoded])
    assert len(command_line) < 1000


def test_every_op_covered_by_this_gate() -> None:
    assert set(VALID_PARAMS) == set(SCRIPTS)


@pytest.mark.parametrize(
    "broken",
    [
        "param([string]$Site)\nif ($Site) { Write-Output 'x'\n",  # missing brace
        "param([string]$Site\nWrite-Output 'x'\n",  # missing paren
        "Write-Output 'unterminated\n",  # unterminated quote
    ],
    ids=["missing-brace", "missing-paren", "unterminated-quote"],
)
def test_the_gate_detects_broken_scripts(broken: str) -> None:
    assert not parses_cleanly(broken)


def test_the_gate_detects_a_broken_constant_spliced_into_the_prelude(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A script missing its closing brace must break the composed script too."""
    spec = SCRIPTS["echo"]
    broken = ps_scripts.ScriptSpec(spec.op, spec.params, spec.body + "if ($Text) {\n")
    monkeypatch.setitem(ps_scripts.SCRIPTS, "echo", broken)
    assert not parses_cleanly(ps_scripts.compose("test-host", "echo", {"Text": "x"}))
