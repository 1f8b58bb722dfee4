"""`[pairs.NAME]`: a blue/green slot pair is checked against the environments it names."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cli import main
from commands.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "lab" / "demo-bot.toml"
SERVERS = 'servers = { InternalProd = ["prod-web01"], InternalStage = ["stage-web01"] }'
SLOTS = 'slots = ["InternalProd", "InternalStage"]'


def _demo_with(tmp_path: Path, old: str, new: str) -> Path:
    text = DEMO.read_text()
    assert old in text, old
    path = tmp_path / "pairs.toml"
    path.write_text(text.replace(old, new, 1))
    return path


def test_the_demo_pair_is_read_with_its_defaults() -> None:
    config = load_config(DEMO)
    pair = config.pairs["prod"]
    assert pair.slots == ["InternalProd", "InternalStage"]
    assert pair.servers_of("InternalStage") == ("stage-web01",)
    assert pair.other_slot("InternalProd") == "InternalStage"
    assert (pair.router.farm, str(pair.router.public_url)) == ("MCMS", "http://127.0.0.1:18080/")
    assert (pair.watch.window_minutes, pair.router.step_timeout_s) == (5, 30)
    assert config.pair_of("InternalStage") == "prod" and config.pair_of("Lab") is None
    assert config.find_pair("PROD") == "prod"
    assert "MCMS_LAB_WINRM_USER" in config.secret_env_names()


def test_check_config_names_the_pair_and_its_router(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--config", str(DEMO)]) == 0
    out = capsys.readouterr().out
    assert "pair prod: InternalProd / InternalStage behind arr-front01" in out


def test_a_slot_may_be_given_as_one_address(tmp_path: Path) -> None:
    path = _demo_with(
        tmp_path,
        SERVERS,
        'servers = { InternalProd = "prod-web01", InternalStage = "stage-web01" }',
    )
    assert load_config(path).pairs["prod"].servers_of("InternalProd") == ("prod-web01",)


@pytest.mark.parametrize(
    ("old", "new", "key", "why"),
    [
        (
            SLOTS,
            'slots = ["InternalProd", "InternalStag"]',
            "pairs.prod.slots[1]",
            "'InternalStage'",
        ),
        (SLOTS, 'slots = ["InternalProd", "Nowhere"]', "pairs.prod.slots[1]", "known: Lab"),
        (SLOTS, 'slots = ["InternalProd"]', "pairs.prod.slots", "exactly two different slots"),
        (SLOTS, 'slots = ["Lab", "lab"]', "pairs.prod.slots", "exactly two different slots"),
        (
            SLOTS,
            'slots = ["InternalProd", "InternalStage", "Lab"]',
            "pairs.prod.slots",
            "exactly two",
        ),
        (
            SERVERS,
            'servers = { InternalProd = ["prod-web01"] }',
            "pairs.prod.router.servers",
            "no entry for slot 'InternalStage'",
        ),
        (
            SERVERS,
            'servers = { InternalProd = ["prod-web01"], InternalStage = ["s1"], Lab = ["l1"] }',
            "pairs.prod.router.servers.Lab",
            "not a slot of this pair",
        ),
        (
            SERVERS,
            'servers = { InternalProd = ["web01"], InternalStage = ["WEB01"] }',
            "pairs.prod.router.servers",
            "listed twice",
        ),
        (
            SERVERS,
            'servers = { InternalProd = ["web01; iisreset"], InternalStage = ["s1"] }',
            "pairs.prod.router.servers",
            "not a host name",
        ),
        (
            SERVERS,
            'servers = { InternalProd = [], InternalStage = ["s1"] }',
            "pairs.prod.router.servers",
            "has no server address",
        ),
        ('farm = "MCMS"', 'farm = "MC\'MS"', "pairs.prod.router.farm", "ASCII letters"),
        (
            'public_url = "http://127.0.0.1:18080"',
            'public_url = "arr-front01"',
            "pairs.prod.router.public_url",
            "URL",
        ),
        (
            "drain_deadline_s = 30",
            "drain_deadline_s = 0",
            "pairs.prod.router.drain_deadline_s",
            "greater than or equal to 1",
        ),
        (
            "window_minutes = 5, interval_s = 15",
            "window_minutes = 1, interval_s = 90",
            "pairs.prod.watch",
            "longer than the window",
        ),
        ('farm = "MCMS"', 'farm = "MCMS"\nkind = "dns"', "pairs.prod.router.kind", "'arr'"),
        (
            "[pairs.prod]\n",
            '[pairs.prod]\nlive = "InternalProd"\n',
            "pairs.prod.live",
            "unknown key",
        ),
    ],
    ids=[
        "slot-typo",
        "slot-unknown",
        "one-slot",
        "same-slot-twice",
        "three-slots",
        "servers-missing-a-slot",
        "servers-of-a-non-slot",
        "server-in-both-slots",
        "hostile-address",
        "slot-without-servers",
        "hostile-farm",
        "bad-public-url",
        "zero-drain-deadline",
        "interval-longer-than-window",
        "unknown-router-kind",
        "live-slot-is-not-configurable",
    ],
)
def test_check_config_names_the_pair_key_and_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, key: str, why: str
) -> None:
    path = _demo_with(tmp_path, old, new)
    assert main(["check-config", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    line = next((ln for ln in err.splitlines() if f"- {key}:" in ln), None)
    assert line is not None, err
    assert why in line, line


def test_a_pair_may_not_be_named_like_an_environment(tmp_path: Path) -> None:
    path = tmp_path / "named.toml"
    path.write_text(DEMO.read_text().replace("[pairs.prod", "[pairs.internalprod"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert any(
        p.startswith("pairs.internalprod: 'internalprod' is also an environment name")
        for p in info.value.problems
    ), info.value.problems


def test_an_environment_is_a_slot_of_one_pair_at_most(tmp_path: Path) -> None:
    text = DEMO.read_text()
    second = text[text.index("[pairs.prod]") :].replace("pairs.prod", "pairs.prod2")
    second = second.replace('"InternalStage"]', '"Lab"]', 1).replace("InternalStage = ", "Lab = ")
    path = tmp_path / "two.toml"
    path.write_text(text + "\n" + second)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert any(
        p.startswith("pairs.prod2.slots[0]: InternalProd is already a slot of pair 'prod'")
        for p in info.value.problems
    ), info.value.problems


def test_a_config_without_pairs_is_still_valid(tmp_path: Path) -> None:
    text = DEMO.read_text()
    path = tmp_path / "nopairs.toml"
    path.write_text(text[: text.index("# Blue/green")])
    assert load_config(path).pairs == {}


def test_a_gate_needs_its_runner_on_both_slots(tmp_path: Path) -> None:
    text = DEMO.read_text(encoding="utf-8").replace("gates = []", 'gates = ["zap"]')
    path = tmp_path / "bot.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "pairs.prod.gates: 'zap' has no runner on InternalProd, InternalStage" in str(
        caught.value
    )
