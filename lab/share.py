"""A host's package share: `read-share` (what it holds, hashed) and `sync-package` (copy a
package from the store as the host sees it, verify it on the host, then rename it in).

By default a lab host reads packages straight from the lab's store (one folder, as if every
host mapped the same share). `Lab.use_own_share(host, versions)` gives a host a folder of its
own holding only `versions` — a share that lags behind the store — and the store stays
reachable as the copy source under `package_source_dir` (\\\\files\\mcms\\offline).
"""

from __future__ import annotations

import hashlib
from typing import Any

from lab.model import ScriptError, SimHost
from lab.releases import same, trim


def _zip_name(version: str) -> str:
    return f"MCMS_Setup_{version}.zip"


def read_share(host: SimHost, p: dict[str, Any]) -> tuple[dict[str, Any], float]:
    folder = host.packages_dir
    reachable = folder is not None and same(p["PackageDir"], host.spec.package_dir)
    entries = []
    for version in p.get("Versions") or []:
        path = folder / _zip_name(str(version)) if folder is not None and reachable else None
        present = path is not None and path.is_file()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path and present else None
        entries.append({"version": version, "present": present, "sha256": digest})
    return {"ok": True, "op": "read-share", "reachable": reachable, "packages": entries}, 0.0


def sync_package(host: SimHost, p: dict[str, Any]) -> tuple[dict[str, Any], float]:
    version, want = str(p["Version"]), str(p["Sha256"]).lower()
    name = _zip_name(version)
    folder = host.packages_dir
    if folder is None or not same(p["PackageDir"], host.spec.package_dir):
        raise ScriptError(
            f"package folder '{trim(p['PackageDir'])}' is not reachable from {host.name}; check "
            "host_package_dir (a UNC share needs CredSSP or Kerberos delegation). Nothing was "
            "copied"
        )
    dest = folder / name
    before = hashlib.sha256(dest.read_bytes()).hexdigest() if dest.is_file() else None
    result = {
        "ok": True, "op": "sync-package", "version": version,
        "path": f"{trim(host.spec.package_dir)}\\{name}", "copied": False, "replaced": False,
        "sha256": want,
    }  # fmt: skip
    if before == want:
        return result, 0.0
    source = host.store_dir / name if host.store_dir is not None else None
    if source is None or not same(p["SourceDir"], host.spec.package_source_dir):
        raise ScriptError(
            f"'{trim(p['SourceDir'])}\\{name}' is not reachable from {host.name}; check "
            "package_source_dir (a UNC share needs CredSSP or Kerberos delegation). Nothing "
            "was copied"
        )
    if not source.is_file():
        raise ScriptError(f"'{trim(p['SourceDir'])}\\{name}' does not exist. Nothing was copied")
    data = source.read_bytes()
    if host.has_fault("share", "corrupt_copy"):
        data = data[:-1] + bytes([data[-1] ^ 0x01]) if data else b"\x00"
    actual = hashlib.sha256(data).hexdigest()
    if actual != want:
        raise ScriptError(
            f"the copy of {name} on {host.name} has SHA-256 {actual[:12]}..., expected "
            f"{want[:12]}...: the source or the copy is damaged. The copy was deleted; "
            f"{trim(host.spec.package_dir)} is as it was"
        )
    tmp = folder / f"{name}.sync-tmp"
    tmp.write_bytes(data)
    tmp.replace(dest)
    result.update(copied=True, replaced=before is not None)
    return result, 0.0
