"""What `deploy-release.ps1` does to a simulated host, and the package as a host reads it.

The host really reads `MCMS_Setup_<version>.zip` from the lab's package store (its
`package_dir`, e.g. D:\\MCMS\\packages, is mapped onto the lab's packages_dir) and hashes
its bytes, so a zip changed in the store after the bot verified it is caught here too;
fault `package`/`corrupt` makes the host's copy differ, `package`/`expand_fail` (or
`disk`/`full`) makes the expand fail as a full disk would. Release folders exist only
whole, each with its marker, as the real script guarantees.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from typing import Any, Final

from lab.model import ScriptError, SimHost

# The switch script's retry schedule: up to 4 attempts, pausing 250 ms x attempt between
# them, never past TimeoutSec.
_ATTEMPTS: Final = 4
_PAUSE_S: Final = 0.25
LOCKED: Final = (
    "Filename: \\\\?\\C:\\Windows\\system32\\inetsrv\\config\\applicationHost.config "
    "Error: Cannot write configuration file"
)


def release_key(version: str) -> tuple[tuple[int, ...], int, str]:
    """The script's sort: [version] of the numeric part, then a pre-release first."""
    numbers, _, suffix = version.partition("-")
    return tuple(int(n) for n in numbers.split(".")), 0 if suffix else 1, suffix


def deploy_release(host: SimHost, p: dict[str, Any]) -> tuple[dict[str, Any], float]:
    version, want = str(p["Version"]), str(p["Sha256"]).lower()
    root = _root(host, str(p["ReleasesRoot"]))
    release = f"{root}\\{version}"
    existing = find(host.release_dirs, version)
    copied = verified = replaced = False
    if existing is None or host.markers.get(existing) != want:
        data, zip_path = package_bytes(host, str(p["PackageDir"]), version)
        actual = hashlib.sha256(data).hexdigest()
        if actual != want:
            raise ScriptError(
                f"SHA-256 of '{zip_path}' on {host.name} is {actual[:12]}..., expected "
                f"{want[:12]}...: the host's copy differs from the verified package (corrupt "
                "copy or a changed share). Nothing was changed; re-copy the package and retry"
            )
        verified = True
        if host.has_fault("package", "expand_fail") or host.has_fault("disk", "full"):
            raise ScriptError(
                f"expanding '{zip_path}' into '{release}.tmp' on {host.name} failed: There is "
                "not enough space on the disk. The release folder was not touched; check free "
                "disk space and the package, then retry"
            )
        if not zipfile.is_zipfile(io.BytesIO(data)):
            raise ScriptError(
                f"expanding '{zip_path}' into '{release}.tmp' on {host.name} failed: the "
                "archive is not a valid zip. The release folder was not touched; check free "
                "disk space and the package, then retry"
            )
        if existing is not None:
            host.release_dirs.remove(existing)
            host.markers.pop(existing, None)
            replaced = True
        host.release_dirs.append(version)
        host.markers[version] = want
        copied = True
    removed, remaining = _prune(host, version, int(p.get("KeepCount", 3)), p)
    return {
        "ok": True,
        "op": "deploy-release",
        "version": version,
        "release_path": release,
        "copied": copied,
        "replaced": replaced,
        "sha256_verified": verified,
        "sha256": want,
        "removed": removed,
        "prune_errors": [],
        "releases": remaining,
    }, 0.0


def retries(timeout_s: float) -> tuple[int, float]:
    """How many attempts the script makes, and how long it pauses, before giving up."""
    attempts, waited = 0, 0.0
    while True:
        attempts += 1
        pause = _PAUSE_S * attempts
        if attempts >= _ATTEMPTS or waited + pause > timeout_s:
            return attempts, waited
        waited += pause


def _root(host: SimHost, given: str) -> str:
    if not same(given, host.spec.releases_root):
        raise ScriptError(
            f"releases root '{trim(given)}' does not exist on {host.name}; check "
            "releases_root in the bot configuration (the bot does not create it)"
        )
    return trim(host.spec.releases_root)


def package_bytes(host: SimHost, package_dir: str, version: str) -> tuple[bytes, str]:
    """The zip's bytes as this host reads them, and its path as the host names it."""
    zip_path = f"{trim(package_dir)}\\MCMS_Setup_{version}.zip"
    real = host.packages_dir / f"MCMS_Setup_{version}.zip" if host.packages_dir else None
    if real is None or not same(package_dir, host.spec.package_dir) or not real.is_file():
        raise ScriptError(
            f"package '{zip_path}' is not reachable from {host.name}; copy "
            f"MCMS_Setup_{version}.zip there, or check host_package_dir (a UNC share needs "
            "CredSSP or Kerberos delegation). Nothing was changed"
        )
    data = real.read_bytes()
    if host.has_fault("package", "corrupt"):
        # One flipped bit in the host's copy: what a truncated or bit-rotted copy looks like.
        data = data[:-1] + bytes([data[-1] ^ 0x01]) if data else b"\x00"
    return data, zip_path


def _prune(
    host: SimHost, version: str, keep: int, p: dict[str, Any]
) -> tuple[list[str], list[str]]:
    protected = {version.casefold()}
    protected |= {str(v).casefold() for v in p.get("ProtectVersions") or []}
    # Whatever a site serves from or a service runs from is never deleted, whatever the
    # caller passed.
    used = [s.physical_path for s in host.sites.values()]
    used += [s.image_path for s in host.services.values()]
    protected |= {r.casefold() for path in used if (r := host.release_of(path))}
    newest_first = sorted(host.release_dirs, key=release_key, reverse=True)
    removed, remaining = [], []
    for i, name in enumerate(newest_first):
        if i < keep or name.casefold() in protected:
            remaining.append(name)
        else:
            removed.append(name)
            host.markers.pop(name, None)
    host.release_dirs[:] = sorted(remaining, key=release_key)
    return removed, remaining


def find(names: list[str], name: str) -> str | None:
    return next((n for n in names if n.casefold() == name.casefold()), None)


def trim(path: str) -> str:
    return path.rstrip("\\")


def same(a: object, b: object) -> bool:
    """Windows paths compare case-insensitively, a trailing backslash aside."""
    return trim(str(a)).casefold() == trim(str(b)).casefold()
