"""`mcms-bot check-config`: every problem is reported with its key and why."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import main
from commands.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "lab" / "demo-bot.toml"
EXAMPLE = ROOT / "docs" / "config.example.toml"


@pytest.mark.parametrize("path", [DEMO, EXAMPLE], ids=["demo", "example"])
def test_shipped_configs_are_valid(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--config", str(path)]) == 0
    assert "OK" in capsys.readouterr().out


def _broken(tmp_path: Path, old: str, new: str, count: int = 1) -> Path:
    text = DEMO.read_text()
    assert old in text, old
    path = tmp_path / "bad.toml"
    path.write_text(text.replace(old, new, count))
    return path


@pytest.mark.parametrize(
    ("old", "new", "key", "why"),
    [
        (
            'allowed_tenants = ["00000000-0000-0000-0000-0000000000001"]',
            "",
            "teams.allowed_tenants",
            "required key is missing",
        ),
        ("port = 3978", 'port = "lots"', "server.port", "valid integer"),
        (
            'url = "http://127.0.0.1:18081/health"',
            'url = "not a url"',
            "environments.Lab.smoke[0].url",
            "URL",
        ),
        (
            'roles = ["operator"]',
            'roles = ["operator"]\nenvironments = ["Lab", "Prodd"]',
            "people[1].environments[1]",
            "unknown environment 'Prodd'",
        ),
        (
            "timeout_s = 5",
            "timeout_s = -1",
            "environments.Lab.smoke[0].timeout_s",
            "greater than 0",
        ),
        (
            'name = "MCMS.Api", app_pool = "MCMS.Api"',
            'name = "MC$(x)", app_pool = "MCMS.Api"',
            "environments.Lab.sites[1].name",
            "ASCII letters",
        ),
        (
            "executable = 'Worker\\MCMS.Worker.exe'",
            "executable = '..\\..\\Windows\\notepad.exe'",
            "environments.Lab.services[0].executable",
            "inside the release",
        ),
        (
            'folder = "Api"',
            'folder = "C:\\\\inetpub"',
            "environments.Lab.sites[1].folder",
            "inside the release",
        ),
        (
            'arguments = "--service"',
            'arguments = "--x \\"$(calc)\\""',
            "environments.Lab.services[0].arguments",
            "arguments may hold",
        ),
        (
            'name = "MCMS.Api", app_pool = "MCMS.Api", folder = "Api", pool_action = "recycle"',
            'name = "MCMS.Api", app_pool = "MCMS.Portal", folder = "Api", pool_action = "stop"',
            "environments.Lab",
            "shared by sites with different pool_action",
        ),
        (
            'transport = "basic"\nallow_insecure_transport = true',
            'transport = "basic"',
            "environments.Lab.hosts[0]",
            "clear text",
        ),
        ('timezone = "Asia/Seoul"', 'timezone = "Mars/Olympus"', "timezone", "unknown time zone"),
        ("[server]", "[server]\nlisten = 1", "server.listen", "unknown key"),
    ],
    ids=[
        "missing-key",
        "wrong-type",
        "bad-url",
        "unknown-env-in-role",
        "negative-timeout",
        "hostile-name",
        "executable-outside-release",
        "folder-outside-release",
        "hostile-arguments",
        "shared-pool-two-actions",
        "insecure-basic",
        "bad-timezone",
        "unknown-key",
    ],
)
def test_check_config_names_the_key_and_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, key: str, why: str
) -> None:
    path = _broken(tmp_path, old, new)
    assert main(["check-config", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    line = next((ln for ln in err.splitlines() if f"- {key}:" in ln), None)
    assert line is not None, err
    assert why in line, line


def test_check_config_reports_every_problem_at_once(tmp_path: Path) -> None:
    path = _broken(tmp_path, "port = 3978", 'port = "x"')
    text = path.read_text().replace('timezone = "Asia/Seoul"', 'timezone = "Nowhere/City"')
    path.write_text(text.replace('url = "http://127.0.0.1:18082/health"', 'url = "ftp:/x"'))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    keys = {re.split(r":\s", p, maxsplit=1)[0] for p in info.value.problems}
    assert {"server.port", "timezone", "environments.InternalStage.smoke[0].url"} <= keys


def test_check_config_rejects_unreadable_toml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "x.toml"
    path.write_text("[teams\n")
    assert main(["check-config", "--config", str(path)]) == 1
    assert "not valid TOML" in capsys.readouterr().err


def test_check_config_cli_exit_codes() -> None:
    def check(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "bot.cli", "check-config", *args]
        return subprocess.run(argv, capture_output=True, text=True, check=False)

    ok, missing = check("--config", str(DEMO)), check("--config", "/nonexistent.toml")
    assert (ok.returncode, missing.returncode) == (0, 1)
    assert "file not found" in missing.stderr


@pytest.mark.parametrize(
    ("key", "value", "ok"),
    [
        ("releases_root", r"D:\MCMS\releases", True),
        ("releases_root", r"\\files\mcms\releases", False),  # hosts expand releases locally
        ("releases_root", r"D:\MCMS\..\Windows", False),
        ("host_package_dir", r"\\files\mcms\artifacts\offline", True),
        ("host_package_dir", r"\\files\D$\packages", True),
        ("host_package_dir", r"D:\MC$MS", False),
    ],
)
def test_windows_paths_are_checked_as_the_host_scripts_will(
    tmp_path: Path, key: str, value: str, ok: bool
) -> None:
    path = _broken(
        tmp_path,
        "releases_root = 'D:\\MCMS\\releases'\npackage_store",
        f"{key} = '{value}'\n"
        + ("releases_root = 'D:\\MCMS\\releases'\n" if key != "releases_root" else "")
        + "package_store",
    )
    if ok:
        load_config(path)
    else:
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert any(p.startswith(f"environments.Lab.{key}:") for p in info.value.problems)


def test_the_one_site_one_worker_shape_stays_valid_as_one_component_of_each(
    tmp_path: Path,
) -> None:
    text = DEMO.read_text()
    start = text.index("sites = [", text.index("[environments.Lab]"))
    end = text.index("]\n", text.index("services = [", start)) + 2
    legacy = 'iis = { site = "MCMS", app_pool = "MCMS", pool_action = "recycle" }\n'
    legacy += 'worker = { service = "MCMS.Worker" }\n'
    path = tmp_path / "legacy.toml"
    path.write_text(text[:start] + legacy + text[end:])

    parts = load_config(path).environments["Lab"].components
    assert [(s.name, s.app_pool, s.folder, s.pool_action) for s in parts.sites] == [
        ("MCMS", "MCMS", "", "recycle")
    ]
    assert [(s.name, s.executable) for s in parts.services] == [("MCMS.Worker", None)]

    both = tmp_path / "both.toml"
    both.write_text(text[:start] + legacy + text[start:])
    with pytest.raises(ConfigError) as info:
        load_config(both)
    assert any("not both" in p for p in info.value.problems)


LAB_APPROVAL = (
    "approval = { required = true, self_approval = true, ttl_minutes = 15, break_glass = true }"
)


def test_on_failure_and_start_order_are_per_environment(tmp_path: Path) -> None:
    path = _broken(
        tmp_path,
        LAB_APPROVAL,
        LAB_APPROVAL + '\non_failure = "stop"',
    )
    env = load_config(path).environments["Lab"]
    assert env.on_failure == "stop"
    assert load_config(DEMO).environments["Lab"].on_failure == "restore"
    bad = _broken(
        tmp_path,
        LAB_APPROVAL,
        LAB_APPROVAL + '\non_failure = "pray"',
    )
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert any(p.startswith("environments.Lab.on_failure:") for p in info.value.problems)


@pytest.mark.parametrize(
    ("store", "why"),
    [
        ('url = "postgresql://bot:hunter2@db:5432/mcms"', "holds a password"),
        ('url = "mysql://db/mcms"', "postgresql://"),
        ('url = "postgresql:///mcms"', "postgresql://"),
        ('instance_id = "bot 1"', "instance_id"),
        ("lease_s = 1", "lease_s"),
    ],
)
def test_a_bad_store_section_is_named(tmp_path: Path, store: str, why: str) -> None:
    path = tmp_path / "bot.toml"
    path.write_text(DEMO.read_text() + f"\n[store]\n{store}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    problems = [p for p in info.value.problems if p.startswith("store.")]
    assert len(problems) == 1 and why in problems[0], info.value.problems
    assert "hunter2" not in str(info.value)


def test_a_store_url_without_a_password_is_taken(tmp_path: Path) -> None:
    path = tmp_path / "bot.toml"
    url = "postgresql://mcms@db.example.internal:5432/mcms"
    path.write_text(DEMO.read_text() + f'\n[store]\nurl = "{url}"\ninstance_id = "bot-1"\n')
    store = load_config(path).store
    assert (store.url, store.instance_id, store.lease_s) == (url, "bot-1", 15.0)


def test_os_users_map_logins_to_people_and_any_login_only_in_local_mode(tmp_path: Path) -> None:
    demo = load_config(DEMO)
    alex = demo.person_for_login("whoever-runs-make-run")
    assert alex is not None and alex.name == "Alex Wilber" and "break_glass" in alex.roles
    assert demo.environments["Lab"].approval.break_glass
    assert not demo.environments["InternalProd"].approval.break_glass

    named = _broken(tmp_path, '\nos_user = "*"\n', '\nos_user = "alex"\n')
    config = load_config(named)
    assert config.person_for_login("ALEX") is not None and config.person_for_login("eve") is None

    anywhere = _broken(tmp_path, 'mode = "local"', 'mode = "teams"')
    with pytest.raises(ConfigError, match=r'os_user = "\*" \(any login on this machine\)'):
        load_config(anywhere)
    text = DEMO.read_text().replace(
        'roles = ["operator"]\n', 'roles = ["operator"]\nos_user = "*"\n', 1
    )
    twice = tmp_path / "twice.toml"
    twice.write_text(text)
    with pytest.raises(ConfigError, match=r"os_user listed twice: \*"):
        load_config(twice)
