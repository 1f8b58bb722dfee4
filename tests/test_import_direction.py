"""The rooms of the code import in one direction only (docs/architecture.md).

bot → commands → adapters; lab/ stands apart. Inside bot/, the Teams edge (bot/teams/) and
the runs (bot/runs/) never import each other — they meet through bot/ports.py, wired in
bot/server.py; watching (bot/watch/) posts through the Teams edge but never reaches into a
run; botbuilder is imported in bot/teams/ alone, so the archived SDK can be replaced there.
The rules are read from every import statement of every module (functions and
TYPE_CHECKING blocks included), and commands/ is also imported for real to prove no I/O
library is loaded at run time.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_IN_COMMANDS = ["aiohttp", "botbuilder", "aiosqlite", "winrm"]

# room (a path prefix, as a dotted module name) → module prefixes it must never import.
RULES: dict[str, tuple[str, ...]] = {
    "adapters": ("bot", "commands", "lab", "tests"),
    "commands": ("bot", "lab", "tests", "aiohttp", "botbuilder", "botframework"),
    "lab": ("bot", "commands", "adapters", "tests", "botbuilder"),
    "bot.ports": ("bot.teams", "bot.runs", "bot.watch", "botbuilder"),
    "bot.teams": (
        "bot.runs",
        "bot.watch",
        "bot.server",
        "bot.services",
        "bot.cli",
        "bot.demo",
        "bot.terminal",
    ),
    "bot.runs": ("bot.teams", "bot.watch", "bot.server", "botbuilder", "botframework", "aiohttp"),
    "bot.watch": ("bot.runs", "bot.server", "bot.cli", "botbuilder", "botframework"),
    # The break-glass CLI: another edge beside Teams, over the same runs and commands.
    "bot.terminal": (
        "bot.teams",
        "bot.watch",
        "bot.server",
        "bot.cli",
        "botbuilder",
        "botframework",
        "aiohttp",
    ),
}
# botbuilder and botframework: only inside the Teams edge.
SDK = ("botbuilder", "botframework")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from bot import demo` imports bot.demo
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _sources() -> list[Path]:
    return sorted(
        p for top in ("bot", "commands", "adapters", "lab") for p in (ROOT / top).rglob("*.py")
    )


def test_every_room_imports_only_downwards() -> None:
    broken: list[str] = []
    for path in _sources():
        module = _module_name(path)
        for room, forbidden in RULES.items():
            if not _within(module, room):
                continue
            for imported in sorted(_imports(path)):
                if any(_within(imported, f) for f in forbidden):
                    broken.append(f"{module} imports {imported} (not allowed in {room})")
    assert broken == []


def test_botbuilder_is_imported_in_the_teams_edge_only() -> None:
    outside = [
        f"{_module_name(p)} imports {m}"
        for p in _sources()
        if not _within(_module_name(p), "bot.teams")
        for m in _imports(p)
        if any(_within(m, s) for s in SDK)
    ]
    assert outside == []


def test_the_rules_would_catch_a_violation(tmp_path: Path) -> None:
    """The checker itself: an upward import in a file is found."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from bot.runs.executor import Executor\n", encoding="utf-8")
    assert "bot.runs.executor" in _imports(bad)
    assert any(_within(m, "bot.runs") for m in _imports(bad))


@pytest.mark.parametrize(
    "module",
    [
        "commands.dispatch",
        "commands.registry",
        "commands.help",
        "commands.smoke",
        "commands.status",
        "commands.change",
        "commands.approvals",
        "commands.cards.run",
    ],
)
def test_commands_never_load_io_libraries_at_run_time(module: str) -> None:
    code = (
        f"import sys, {module}, commands.registry; commands.registry.default_registry(); "
        f"print(','.join(m for m in {FORBIDDEN_IN_COMMANDS!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_adapters_never_load_bot_or_commands() -> None:
    code = (
        "import sys, pkgutil, importlib, adapters\n"
        "for m in pkgutil.walk_packages(adapters.__path__, 'adapters.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('bot', 'commands'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
