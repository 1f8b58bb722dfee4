"""Which version a rollback picks, and why; and what is refused before anything is asked."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from adapters.packages import PackageStore
from commands.target import NoTarget, Target, resolve_target


def store_with(tmp_path: Path, *versions: str, corrupt: str | None = None) -> PackageStore:
    for v in versions:
        zip_path = tmp_path / f"MCMS_Setup_{v}.zip"
        zip_path.write_bytes(f"package {v}".encode())
        digest = hashlib.sha256(zip_path.read_bytes()).hexdigest()
        if v == corrupt:
            digest = "0" * 64
        (tmp_path / f"{zip_path.name}.sha256").write_text(f"{digest}  {zip_path.name}\n")
    return PackageStore(tmp_path)


async def pick(store: PackageStore, **kw: object) -> Target | NoTarget:
    args: dict[str, object] = {
        "requested": None,
        "current": "1.4.2",
        "previous_stable": None,
        "kept_on_host": (),
    }
    args.update(kw)
    return await resolve_target("rollback", "Lab", store, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "version", "source"),
    [
        (
            {"previous_stable": "1.4.0", "kept_on_host": ("1.4.1",)},
            "1.4.0",
            "deployment history (previous stable)",
        ),
        ({"kept_on_host": ("1.3.9", "1.4.1", "1.4.2")}, "1.4.1", "newest release kept on the host"),
        ({"kept_on_host": ("1.4.2",)}, "1.4.1", "newest older package in the store"),
        ({"requested": "1.3.9"}, "1.3.9", "requested"),
    ],
    ids=["history-first", "kept-release-on-fresh-install", "package-store-last", "requested"],
)
async def test_rollback_target_source_order(
    tmp_path: Path, kw: dict[str, object], version: str, source: str
) -> None:
    store = store_with(tmp_path, "1.3.9", "1.4.0", "1.4.1", "1.4.2", "1.5.0")
    result = await pick(store, **kw)
    assert isinstance(result, Target), result
    assert (result.version, result.source) == (version, source)
    assert result.package.sha256 == hashlib.sha256(f"package {version}".encode()).hexdigest()


@pytest.mark.parametrize(
    ("kw", "says"),
    [
        ({"requested": "1..4"}, "is not a version"),
        ({"requested": "1.4.1;rm"}, "is not a version"),
        ({"requested": "2.0.0"}, "no package for 2.0.0"),
        ({"requested": "1.4.0"}, "does not match its digest"),
        ({"requested": "1.4.2"}, "already the current version"),
        ({"current": None}, "cannot tell which version"),
        ({"current": "1.3.9"}, "no version of Lab older than 1.3.9"),
    ],
    ids=[
        "short",
        "hostile",
        "missing",
        "tampered",
        "already-current",
        "unknown-current",
        "nothing-older",
    ],
)
async def test_rollback_without_a_valid_target_says_what_is_missing(
    tmp_path: Path, kw: dict[str, object], says: str
) -> None:
    store = store_with(tmp_path, "1.3.9", "1.4.0", "1.4.2", corrupt="1.4.0")
    result = await pick(store, **kw)
    assert isinstance(result, NoTarget), result
    assert says in result.message
    assert "Nothing was requested" in result.message or "Name" in result.message


def test_every_planned_step_has_an_implementation_and_a_deadline() -> None:
    """A plan step without code would fail a real run half-way; catch it here instead."""
    from bot.runs.restore import RESTORE
    from bot.runs.steps import DEADLINES, STEPS
    from commands.config import load_config
    from commands.plan import RESTORE_STEPS, PlanScript, components_of, plan_steps
    from tests.conftest import DEMO_CONFIG

    config = load_config(DEMO_CONFIG)
    actions: set[str] = set()
    for env in config.environments.values():
        sites, services = components_of(env)
        for kind in ("rollback", "deploy"):
            gates, share = ("smoke", "e2e"), "\\\\files\\mcms\\offline"
            cam = PlanScript("cam", "D:\\s\\Deploy-CamService.ps1", "after_switch", "hosts", 60, ())
            steps = plan_steps(
                kind, sites, services, env.releases_root, "1.4.1", 60, gates, (cam,), share
            )
            keys = [s.key for s in steps]
            assert len(keys) == len(set(keys))
            # Only the package sync (it writes the hosts' package folders, no component)
            # comes before the preflight.
            assert [s.action for s in steps[:2]] == ["sync_package", "preflight"]
            actions |= {s.action for s in steps}
    assert actions == set(STEPS)
    assert {s.action for s in RESTORE_STEPS} == set(RESTORE)
    records = {"notify_start", "notify_end", "timeline"}
    # The gates' deadline is their suites' own timeouts added up (steps.gates_deadline_s), a
    # script's its own timeout.
    assert actions - records - {"gates", "script"} <= set(DEADLINES) and not records & set(
        DEADLINES
    )
    assert set(RESTORE) <= set(DEADLINES)
