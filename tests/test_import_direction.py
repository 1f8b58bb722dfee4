"""commands/ and adapters/ stay free of the Teams SDK, so bot/ alone can be replaced."""

from __future__ import annotations

import subprocess
import sys

import pytest

FORBIDDEN_IN_COMMANDS = ["aiohttp", "botbuilder", "aiosqlite", "winrm"]


@pytest.mark.parametrize(
    "module",
    [
        "commands.dispatch",
        "commands.registry",
        "commands.help",
        "commands.smoke",
        "commands.status",
    ],
)
def test_commands_never_import_io_libraries(module: str) -> None:
    code = (
        f"import sys, {module}, commands.registry; commands.registry.default_registry(); "
        f"print(','.join(m for m in {FORBIDDEN_IN_COMMANDS!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_adapters_never_import_bot_or_commands() -> None:
    code = (
        "import sys, pkgutil, importlib, adapters\n"
        "for m in pkgutil.iter_modules(adapters.__path__):\n"
        "    importlib.import_module('adapters.' + m.name)\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('bot', 'commands'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
