"""`mcms-bot` as scripts and operators call it: one `--config` for every subcommand (or
$MCMS_BOT_CONFIG), `--version`, and exit statuses that tell damage (1) from "could not even
check" (2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from adapters.audit import AuditLog
from bot.cli import main
from bot.version import installed_version
from commands.config import load_config
from tests.conftest import AUDIT_KEY, AUDIT_KEY_BYTES

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "lab" / "demo-bot.toml"
APP_ID = "6f1c2a9e-3b4d-4e5f-8a7b-0c1d2e3f4a5b"


def mcms_bot(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed console script, as an operator runs it."""
    script = str(Path(sys.executable).parent / "mcms-bot")
    return subprocess.run(
        [script, *args], capture_output=True, text=True, timeout=60, check=False, env=env
    )


def config_with_audit_dir(tmp_path: Path, audit_dir: Path) -> Path:
    """The demo config with its audit directory (and every other path) under tmp_path."""
    text = DEMO.read_text(encoding="utf-8")
    old = 'audit_dir = "logs/deploy/notifications"'
    assert old in text
    path = tmp_path / "bot.toml"
    path.write_text(text.replace(old, f'audit_dir = "{audit_dir}"'), encoding="utf-8")
    assert load_config(path).paths.audit_dir == audit_dir
    return path


@pytest.fixture(autouse=True)
def audit_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """`audit verify` needs the key the lines were written with (the chain is keyed)."""
    monkeypatch.setenv("MCMS_AUDIT_KEY", AUDIT_KEY)


def audit_with_lines(directory: Path) -> None:
    log = AuditLog(directory, load_config(DEMO).tz, key=AUDIT_KEY_BYTES)
    for i in range(3):
        log.append_sync("StepSucceeded", environment="Lab", run_id="r1", step=f"s{i}")


def test_version_is_the_installed_package_version() -> None:
    done = mcms_bot("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"mcms-bot {installed_version()}"
    assert installed_version() is not None


@pytest.mark.parametrize("where", ["after", "before", "env"])
def test_check_config_takes_the_config_like_every_subcommand(
    where: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reproduction: check-config took a positional file and ignored $MCMS_BOT_CONFIG."""
    argv = {
        "after": ["check-config", "--config", str(DEMO)],
        "before": ["--config", str(DEMO), "check-config"],
        "env": ["check-config"],
    }[where]
    if where == "env":
        monkeypatch.setenv("MCMS_BOT_CONFIG", str(DEMO))
    else:
        monkeypatch.delenv("MCMS_BOT_CONFIG", raising=False)
    assert main(argv) == 0
    assert f"{DEMO}: OK" in capsys.readouterr().out


def test_config_given_on_the_command_line_wins_over_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCMS_BOT_CONFIG", str(tmp_path / "missing.toml"))
    assert main(["check-config", "--config", str(DEMO)]) == 0
    assert main(["--config", str(DEMO), "check-config"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize(
    "argv", [["check-config"], ["run"], ["audit", "verify"]], ids=["check", "run", "audit"]
)
def test_no_config_anywhere_is_a_usage_error(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MCMS_BOT_CONFIG", raising=False)
    assert main(argv) == 2
    assert "pass --config FILE or set MCMS_BOT_CONFIG" in capsys.readouterr().err


def test_the_old_positional_config_file_is_refused_as_usage() -> None:
    done = mcms_bot("check-config", str(DEMO))
    assert done.returncode == 2
    assert "unrecognized arguments" in done.stderr


def test_audit_verify_exit_status_tells_intact_damaged_and_unreadable(tmp_path: Path) -> None:
    audit_dir = tmp_path / "audit"
    audit_with_lines(audit_dir)
    config = config_with_audit_dir(tmp_path, audit_dir)
    env = {**os.environ, "MCMS_BOT_CONFIG": str(config)}

    intact = mcms_bot("audit", "verify", env=env)
    assert intact.returncode == 0, intact.stdout + intact.stderr

    day = next(audit_dir.glob("*.jsonl"))
    day.write_text(day.read_text().replace('"s1"', '"sX"'))
    damaged = mcms_bot("audit", "verify", "--config", str(config))
    assert damaged.returncode == 1
    assert f"{day.name}:2  edited" in damaged.stdout

    missing_dir = mcms_bot("audit", "verify", "--dir", str(tmp_path / "nowhere"))
    missing_config = mcms_bot("audit", "verify", "--config", str(tmp_path / "none.toml"))
    no_such_option = mcms_bot("audit", "verify", "--bogus")
    assert (missing_dir.returncode, missing_config.returncode, no_such_option.returncode) == (
        2,
        2,
        2,
    )
    assert "no such directory" in missing_dir.stderr
    assert "file not found" in missing_config.stderr


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux /proc")
def test_audit_verify_says_2_when_a_day_file_cannot_be_read(tmp_path: Path) -> None:
    """An I/O error is not damage: reading /proc/self/mem at offset 0 fails with EIO."""
    audit_dir = tmp_path / "audit"
    audit_with_lines(audit_dir)
    (audit_dir / "2099-01-01.jsonl").symlink_to("/proc/self/mem")
    done = mcms_bot("audit", "verify", "--dir", str(audit_dir))
    assert done.returncode == 2, done.stdout
    assert "cannot read" in done.stderr and "2099-01-01.jsonl" in done.stderr


def test_manifest_takes_the_app_id_from_the_config_it_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "app.zip"
    monkeypatch.setenv("MCMS_BOT_APP_ID", APP_ID)
    assert main(["manifest", "--config", str(DEMO), "--out", str(out)]) == 0
    with zipfile.ZipFile(out) as archive:
        assert json.loads(archive.read("manifest.json"))["id"] == APP_ID


def test_manifest_without_an_app_id_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MCMS_BOT_CONFIG", raising=False)
    monkeypatch.delenv("MCMS_BOT_APP_ID", raising=False)
    assert main(["manifest", "--out", str(tmp_path / "a.zip")]) == 2
    assert main(["manifest", "--config", str(DEMO), "--out", str(tmp_path / "a.zip")]) == 2
    assert "set MCMS_BOT_APP_ID (teams.app_id_env)" in capsys.readouterr().err
    assert not (tmp_path / "a.zip").exists()


def test_run_refuses_an_unknown_log_level() -> None:
    done = mcms_bot("run", "--config", str(DEMO), "--log-level", "chatty")
    assert done.returncode == 2
    assert "invalid choice: 'CHATTY'" in done.stderr
