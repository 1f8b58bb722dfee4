"""A DR check's folder: artifacts/offline/logs/dr/<run-id>/ with its manifest, logs and reports.

    check.json             the manifest: run id, environment, tests, who, when (and the
                           local day, which retention reads), then each result as it lands
    DR-AXE.log             the suite's output (stdout and stderr)
    DR-AXE.report.json     the raw report, byte for byte as the suite wrote it

Files are written whole (temp + rename), so a reader never sees half of one. The folder is
created exclusively: a run id is never reused, and nothing of an earlier run is overwritten.
"""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path
from typing import Any, Final

from adapters.files import replace_atomic

RUN_ID_PATTERN: Final = re.compile(r"^dr-[0-9a-f]{8}$")
MANIFEST: Final = "check.json"


def new_run_id() -> str:
    return "dr-" + secrets.token_hex(4)


class RunFolder:
    """One run's folder; `create` makes it, every other method writes inside it."""

    def __init__(self, path: Path, manifest: dict[str, Any] | None = None) -> None:
        self.path = path
        self.manifest: dict[str, Any] = dict(manifest or {})

    @property
    def run_id(self) -> str:
        return self.path.name

    @classmethod
    def create(cls, base: Path, run_id: str, manifest: dict[str, Any]) -> RunFolder:
        if not RUN_ID_PATTERN.fullmatch(run_id):
            raise ValueError(f"{run_id!r} is not a DR run id (dr- and 8 hex digits)")
        base.mkdir(parents=True, exist_ok=True)
        path = base / run_id
        path.mkdir()  # FileExistsError: a reused id must never mix two runs' files
        folder = cls(path, manifest)
        folder.write_manifest(folder.manifest)
        return folder

    def file(self, name: str) -> Path:
        if "/" in name or name.startswith("."):
            raise ValueError(f"{name!r} is not a plain file name")
        return self.path / name

    def write(self, name: str, data: bytes) -> Path:
        path = self.file(name)
        replace_atomic(path, data)
        return path

    def update_manifest(self, **fields: Any) -> None:
        """Set manifest fields and rewrite it whole."""
        self.manifest.update(fields)
        self.write_manifest(self.manifest)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        text = json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
        self.write(MANIFEST, text.encode("utf-8"))


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of a run folder, or None when it has none we can read."""
    try:
        raw = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return raw if isinstance(raw, dict) else None
