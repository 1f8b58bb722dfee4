"""The package store: `MCMS_Setup_<version>.zip` + `.sha256` (playbook §3, artifacts/offline).

A version is deployable only when its zip exists AND its digest file matches the zip's
SHA-256. Problems are values (`PackageProblem`), because "no such version" is an answer
for the operator, not a crash. `layout` reads what the zip holds without expanding it: its
uncompressed size (the disk space a host needs) and its paths (the folders and executables
the components will point at must be in it).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from adapters.winrm.hoststate import version_key

# Same pattern as commands.config.model.VERSION_PATTERN (adapters must not import commands).
_VERSION = re.compile(r"^[0-9]+(\.[0-9]+){1,3}(-[A-Za-z0-9]+)?$")
_NAME = re.compile(r"^MCMS_Setup_(?P<version>.+)\.zip$")
_DIGEST = re.compile(r"^(?P<hex>[0-9a-fA-F]{64})\b")


@dataclass(frozen=True)
class Package:
    version: str
    path: Path
    sha256: str

    @property
    def file_name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class PackageProblem:
    """Why a version cannot be deployed; `message` says what to do about it."""

    version: str
    kind: str  # bad-version | missing | no-digest | bad-digest | mismatch
    message: str


@dataclass(frozen=True)
class Layout:
    """What a package expands into: its size and every path in it (folders included),
    Windows-style and case-folded: `portal`, `worker\\mcms.worker.exe`."""

    expanded_bytes: int
    paths: frozenset[str]

    def has(self, relative: str) -> bool:
        """Whether `relative` (a folder or file inside the release; "" = its root) is in it."""
        return relative == "" or relative.strip("\\").casefold() in self.paths


class PackageStore:
    """A directory of packages; reads only, never writes."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def versions(self) -> list[str]:
        """Versions with a zip in the store, oldest first (not yet verified)."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in self.directory.iterdir():
            match = _NAME.match(path.name)
            if match and _VERSION.fullmatch(match["version"]):
                found.append(match["version"])
        return sorted(found, key=version_key)

    async def verify(self, version: str) -> Package | PackageProblem:
        """The package of `version` with its digest checked against the zip's bytes."""
        return await asyncio.to_thread(self.verify_sync, version)

    def verify_sync(self, version: str) -> Package | PackageProblem:
        if not _VERSION.fullmatch(version):
            return PackageProblem(
                version,
                "bad-version",
                f"`{version}` is not a version (expected e.g. 1.4.2 or 1.4.2-hotfix1).",
            )
        zip_path = self.directory / f"MCMS_Setup_{version}.zip"
        digest_path = zip_path.with_name(zip_path.name + ".sha256")
        if not zip_path.is_file():
            known = ", ".join(self.versions()[-5:]) or "none"
            return PackageProblem(
                version,
                "missing",
                f"There is no package for {version} in the package store ({self.directory}); "
                f"newest there: {known}. Build it with package-offline.ps1 first.",
            )
        try:
            expected_text = digest_path.read_text(encoding="ascii", errors="replace")
        except FileNotFoundError:
            return PackageProblem(
                version,
                "no-digest",
                f"{zip_path.name} has no {digest_path.name} next to it, so its integrity "
                "cannot be checked. Re-create the digest from the build, not from this file.",
            )
        match = _DIGEST.match(expected_text.strip())
        if not match:
            return PackageProblem(
                version, "bad-digest", f"{digest_path.name} does not hold a SHA-256 digest."
            )
        actual = _sha256(zip_path)
        if actual != match["hex"].lower():
            return PackageProblem(
                version,
                "mismatch",
                f"{zip_path.name} does not match its digest (file {actual[:12]}…, expected "
                f"{match['hex'][:12].lower()}…): the package may be corrupt or tampered with. "
                "Do not deploy it; rebuild or re-copy the package.",
            )
        return Package(version, zip_path, actual)

    async def layout(self, package: Package) -> Layout | PackageProblem:
        """Size and paths of a verified package's contents, read from the zip's directory."""
        return await asyncio.to_thread(self.layout_sync, package)

    def layout_sync(self, package: Package) -> Layout | PackageProblem:
        try:
            with zipfile.ZipFile(package.path) as archive:
                infos = archive.infolist()
        except (zipfile.BadZipFile, OSError):
            return PackageProblem(
                package.version,
                "not-a-zip",
                f"{package.file_name} is not a readable zip archive. Rebuild the package.",
            )
        paths: set[str] = set()
        for info in infos:
            parts = [p for p in info.filename.replace("\\", "/").split("/") if p]
            for i in range(1, len(parts) + 1):
                paths.add("\\".join(parts[:i]).casefold())
        return Layout(sum(i.file_size for i in infos), frozenset(paths))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
