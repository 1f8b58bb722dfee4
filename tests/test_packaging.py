"""The bot as an operator installs it: a wheel built offline from this tree, installed into a
fresh venv outside the repository, and run from a directory that has no source tree —
`check-config`, `manifest`, and a bot that answers `smoke` and `status` against the lab.

Reproduction (issue 15): `pip install .` then `mcms-bot manifest` failed with
"manifest.template.json: template not found", because the template, icons and scripts were
read from the source tree instead of the package.

The fresh venv gets the wheel alone (no dependencies, no index); the locked dependencies come
from the test venv's site-packages through a .pth file, so nothing is downloaded. The Bot
Connector the installed bot answers is HTTPS with a certificate from a private CA that only
SSL_CERT_FILE trusts: the reply arriving proves the bot's outbound calls use the OS store.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.bot_process import free_port, start_bot
from tests.card_schema import card_problems
from tests.fake_connector import FakeConnector
from tests.lab_fixtures import LAB_CREDENTIALS, write_lab_config

if TYPE_CHECKING:
    from lab.core import Lab
    from tests.tls_fixtures import PrivateCA

pytest_plugins = ["tests.lab_fixtures", "tests.tls_fixtures"]

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
APP_ID = "6f1c2a9e-3b4d-4e5f-8a7b-0c1d2e3f4a5b"
# Not part of a build: caches, state and the environments themselves.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "node_modules", "var", "logs", "artifacts", "build", "dist",
    "test-artifacts", "__pycache__", "*.egg-info", ".mypy_cache", ".ruff_cache",
    ".hypothesis", ".pytest_cache",
)  # fmt: skip
PS_SCRIPTS = sorted(p.name for p in (ROOT / "adapters" / "winrm" / "ps").glob("*.ps1"))


def run(*argv: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{argv}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_pyproject_lists_every_package_on_disk() -> None:
    """The package list is explicit (manifest/ is mapped into it), so it must stay complete."""
    tool = PYPROJECT["tool"]["setuptools"]
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("bot", "commands", "adapters")
        for init in (ROOT / top).rglob("__init__.py")
    }
    missing = sorted(on_disk - set(tool["packages"]))
    assert not missing, f"add {missing} to [tool.setuptools] packages in pyproject.toml"
    assert set(tool["packages"]) == on_disk | {"bot.teams.app_manifest"}
    assert tool["package-dir"] == {"bot.teams.app_manifest": "manifest"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of this tree with the locked build backend, offline."""
    source = tmp_path_factory.mktemp("source") / "mcms-bot"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
        "--no-index", "--wheel-dir", out, source, cwd=source)  # fmt: skip
    [built] = out.glob("mcms_bot-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv outside the repository with the wheel installed; its bin/ directory."""
    venv = tmp_path_factory.mktemp("venv") / "mcms-bot"
    here = tmp_path_factory.mktemp("elsewhere")
    run(sys.executable, "-m", "venv", venv, cwd=here)
    bin_dir = venv / "bin"
    run(bin_dir / "python", "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", wheel,
        cwd=here)  # fmt: skip
    site = run(bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
               cwd=here).strip()  # fmt: skip
    # The dependencies, as installed from the lock in the test venv (appended to sys.path, so
    # the wheel's own packages come first; the editable install's .pth is not processed).
    (Path(site) / "locked-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return bin_dir


def test_wheel_ships_what_the_installed_bot_reads_and_no_lab_or_tests(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = next(archive.read(n) for n in names if n.endswith(".dist-info/METADATA"))
    assert not [n for n in names if n.startswith(("lab/", "tests/", "bench/", "manifest/"))]
    data = "bot/teams/app_manifest/"
    for name in ("manifest.template.json", "color.png", "outline.png",
                 "schema/teams/v1.30/MicrosoftTeams.schema.json"):  # fmt: skip
        assert data + name in names, name
    for script in PS_SCRIPTS:
        assert f"adapters/winrm/ps/{script}" in names, script
    text = metadata.decode()
    assert "Requires-Dist: truststore" in text and "Requires-Dist: jsonschema" in text
    assert "pydantic-settings" not in text
    assert "Provides-Extra: kerberos" in text and "Provides-Extra: credssp" in text


@pytest.mark.slow
async def test_installed_package_checks_builds_and_answers_outside_the_repo(
    installed: Path, lab: Lab, private_ca: PrivateCA, tmp_path: Path
) -> None:
    here = tmp_path / "ops"  # an operator's directory: no source tree anywhere near
    here.mkdir()
    mcms_bot = installed / "mcms-bot"
    where = run(installed / "python", "-c", "import bot, adapters; print(bot.__file__)", cwd=here)
    assert where.startswith(str(installed.parent)), where

    assert run(mcms_bot, "--version", cwd=here).strip() == "mcms-bot 0.1.0"

    port = free_port()
    config = write_lab_config(lab, here / "deploy", port=port)
    env = {**os.environ, **LAB_CREDENTIALS, "SSL_CERT_FILE": str(private_ca.ca_pem)}
    env.pop("PYTHONPATH", None)
    assert "OK" in run(mcms_bot, "check-config", "--config", config, cwd=here, env=env)
    assert "OK" in run(
        mcms_bot, "check-config", cwd=here, env={**env, "MCMS_BOT_CONFIG": str(config)}
    )

    out = run(mcms_bot, "manifest", "--app-id", APP_ID, "--out", "app.zip", cwd=here, env=env)
    assert out.startswith("wrote app.zip")
    with zipfile.ZipFile(here / "app.zip") as archive:
        assert sorted(archive.namelist()) == ["color.png", "manifest.json", "outline.png"]
        manifest = json.loads(archive.read("manifest.json"))
    assert manifest["id"] == APP_ID and manifest["version"] == "0.1.0"
    assert manifest["defaultInstallScope"] == "team"

    connector = FakeConnector()
    await connector.start(ssl_context=private_ca.server_context())
    assert connector.url.startswith("https://")
    bot = await start_bot([str(mcms_bot), "run", "--config", str(config)], port=port, cwd=here,
                          env=env)  # fmt: skip
    try:
        smoke = await bot.say("smoke Lab", connector)
        assert smoke.text.startswith("Smoke Lab: PASS"), smoke.text
        status = await bot.say("status Lab", connector)  # WinRM: the packaged read-state.ps1
        [card] = [a["content"] for a in status.body["attachments"]]
        assert card_problems(card) == []
        assert "1.4.2" in json.dumps(card), "the lab host's current release, read over WinRM"
    finally:
        assert bot.stop() == 0
        await connector.close()
    assert connector.invalid_cards() == []
    audit = run(mcms_bot, "audit", "verify", "--config", config, cwd=here, env=env)
    assert "OK" in audit
