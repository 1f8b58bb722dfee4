"""Reproducible installs: the lock pins every package, direct and transitive, with hashes;
it satisfies the compatible ranges pyproject.toml gives embedders; `make run`, `make test`
(and so CI) install exactly it; and the environment running these tests is that install."""

from __future__ import annotations

import ast
import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
RUN_LOCK, TEST_LOCK = ROOT / "requirements.txt", ROOT / "requirements-test.txt"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")


def locked(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name → (version, hashes) of a pip-compile --generate-hashes file."""
    out: dict[str, tuple[str, list[str]]] = {}
    name = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        pin = PIN.match(line)
        if pin:
            name = canonicalize_name(pin.group(1))
            assert name not in out, f"{path.name}: {name} pinned twice"
            out[name] = (pin.group(2), [])
        elif line.strip().startswith("--hash=sha256:"):
            out[name][1].append(line.strip().removeprefix("--hash=sha256:").rstrip(" \\"))
        elif line.strip() and not line.lstrip().startswith("#"):
            raise AssertionError(f"{path.name}: unexpected line {line!r}")
    return out


def requirements(specs: list[str]) -> list[Requirement]:
    return [Requirement(s) for s in specs]


RUN = locked(RUN_LOCK)
TEST = locked(TEST_LOCK)
DEPENDENCIES = requirements(PYPROJECT["project"]["dependencies"])
TEST_EXTRA = requirements(PYPROJECT["project"]["optional-dependencies"]["test"])
BUILD = requirements(PYPROJECT["build-system"]["requires"])


@pytest.mark.parametrize("lock", [RUN, TEST], ids=["run", "test"])
def test_every_locked_package_has_an_exact_version_and_hashes(
    lock: dict[str, tuple[str, list[str]]],
) -> None:
    assert lock
    for name, (version, hashes) in lock.items():
        assert hashes, f"{name}=={version} has no --hash"
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), name


@pytest.mark.parametrize(
    ("lock", "wanted"),
    [(RUN, DEPENDENCIES + BUILD), (TEST, DEPENDENCIES + TEST_EXTRA + BUILD)],
    ids=["run", "test"],
)
def test_the_lock_satisfies_the_ranges_in_pyproject(
    lock: dict[str, tuple[str, list[str]]], wanted: list[Requirement]
) -> None:
    for requirement in wanted:
        name = canonicalize_name(requirement.name)
        assert name in lock, f"{requirement} is not in the lock: run `make lock`"
        version = lock[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"locked {name}=={version} is outside {requirement}: run `make lock`"
        )


def test_transitive_dependencies_are_pinned_too() -> None:
    """Reproduction: only direct dependencies were pinned, not what bot/ reconfigures."""
    for name in ("msrest", "requests", "urllib3", "botframework-connector", "pydantic-core"):
        assert name in RUN, name


def test_the_test_lock_agrees_with_the_run_lock() -> None:
    for name, (version, hashes) in RUN.items():
        assert name in TEST, name
        assert TEST[name][0] == version, f"{name}: run {version}, test {TEST[name][0]}"
        assert set(hashes) <= set(TEST[name][1]), name


def test_an_unused_dependency_is_not_declared() -> None:
    """pydantic-settings was declared and never imported."""
    assert "pydantic-settings" not in {canonicalize_name(r.name) for r in DEPENDENCIES}
    assert "pydantic-settings" not in RUN and "pydantic-settings" not in TEST
    imported: set[str] = set()
    for top in ("bot", "commands", "adapters"):
        for path in (ROOT / top).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    imported |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    imported.add(node.module.split(".")[0])
    assert "pydantic_settings" not in imported


def test_transport_extras_are_declared() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    for extra in ("kerberos", "credssp"):
        [requirement] = requirements(extras[extra])
        assert (canonicalize_name(requirement.name), requirement.extras) == ("pywinrm", {extra})


def test_this_environment_is_the_test_lock() -> None:
    """`make test` installed exactly the lock: every package at its locked version."""
    differ = {}
    for name, (version, _) in TEST.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "missing"
        if installed != version:
            differ[name] = (version, installed)
    assert differ == {}, "locked vs installed; rebuild the venv with `make test`"


def test_make_and_ci_install_from_the_lock_with_hashes() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for stamp, lock in (("RUN_STAMP", "requirements.txt"), ("TEST_STAMP", "requirements-test.txt")):
        recipe = makefile.split(f"$({stamp}): ", 1)[1].split("\n\n", 1)[0]
        steps = [line.strip() for line in recipe.splitlines()[1:]]
        assert steps[0] == f"$(BIN)/python -m pip install --quiet --require-hashes -r {lock}"
        assert steps[1] == (
            "$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e ."
        )
    assert "\nrun: $(RUN_STAMP)\n" in makefile and "\npytest: $(TEST_STAMP)\n" in makefile
    assert "\nlock: " in makefile and "pip-compile" in makefile
    assert re.search(r"^make test$", (ROOT / ".ci" / "run").read_text(), re.MULTILINE)
