"""The lab's package store: a real small zip and a sha256sum-style digest per version.

Laid out like the playbook's `artifacts/offline/`: `MCMS_Setup_<version>.zip` next to
`MCMS_Setup_<version>.zip.sha256`. The zips are deterministic (fixed timestamps), so a
version's digest is the same on every run and machine.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Iterable
from pathlib import Path

_STAMP = (2025, 9, 29, 11, 45, 0)


def package_name(version: str) -> str:
    return f"MCMS_Setup_{version}.zip"


def _web_config(dll: str) -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<configuration><system.webServer>'
        f'<aspNetCore processPath="dotnet" arguments=".\\{dll}" />'
        "</system.webServer></configuration>\n"
    )


def _files(version: str) -> dict[str, str]:
    """The release's layout (lab/model.py RELEASE_FOLDERS): a site at the root, the Portal
    and Api sites' folders, the Worker's executable."""
    return {
        "VERSION": f"{version}\n",
        "web.config": _web_config("Mcms.Portal.dll"),
        "Portal/web.config": _web_config("Mcms.Portal.dll"),
        "Portal/appsettings.json": f'{{"Mcms": {{"Version": "{version}"}}}}\n',
        "Api/web.config": _web_config("Mcms.Api.dll"),
        "Api/appsettings.json": f'{{"Mcms": {{"Version": "{version}"}}}}\n',
        "Worker/MCMS.Worker.exe": f"MZ lab stand-in for the Worker {version}\n",
        "Worker/VERSION": f"{version}\n",
    }


def build_package_store(directory: Path, versions: Iterable[str]) -> dict[str, str]:
    """Write one zip + .sha256 per version into `directory`; returns version → hex digest."""
    directory.mkdir(parents=True, exist_ok=True)
    digests: dict[str, str] = {}
    for version in sorted(set(versions)):
        path = directory / package_name(version)
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, text in _files(version).items():
                archive.writestr(zipfile.ZipInfo(name, date_time=_STAMP), text)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        # sha256sum's format: digest, two spaces, file name.
        (directory / f"{path.name}.sha256").write_text(f"{digest}  {path.name}\n", "ascii")
        digests[version] = digest
    return digests
