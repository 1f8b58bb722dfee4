"""What `read-state.ps1`, `preflight.ps1` and `switch-release.ps1` do to a simulated host.

Each reads or switches every component of the release at once: sites (state and
physicalPath), app pools (state), services (state and ImagePath). `service`/`registry_denied`
makes an ImagePath write fail like a registry ACL would; `site`/`config_locked` makes a
physicalPath write fail like a locked applicationHost.config, after the script's retries;
`disk`/`full` leaves no free space on the releases volume.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

from lab.model import ScriptError, SimHost
from lab.releases import LOCKED, find, package_bytes, retries, same, trim

_DENIED: Final = "Requested registry access is not allowed."


def _components(host: SimHost, p: dict[str, Any]) -> dict[str, Any]:
    sites, pools, services = [], [], []
    for name in p.get("Sites") or []:
        key = host.find(host.sites, name)
        site = host.sites[key] if key else None
        sites.append(
            {
                "name": name,
                "state": site.state if site else "Missing",
                "physical_path": site.physical_path if site else None,
            }
        )
    for name in p.get("AppPools") or []:
        key = host.find(host.pools, name)
        pools.append({"name": name, "state": host.pools[key] if key else "Missing"})
    for name in p.get("Services") or []:
        key = host.find(host.services, name)
        service = host.services[key] if key else None
        services.append(
            {
                "name": name,
                "state": service.state if service else "Missing",
                "image_path": service.image_path if service else None,
            }
        )
    root_ok = same(p["ReleasesRoot"], host.spec.releases_root)
    return {
        "sites": sites,
        "pools": pools,
        "services": services,
        # Get-ChildItem lists folders by name; the bot sorts versions itself.
        "releases": sorted(host.release_dirs) if root_ok else [],
    }


def read_state(host: SimHost, p: dict[str, Any]) -> tuple[dict[str, Any], float]:
    return {"ok": True, "op": "read-state", **_components(host, p)}, 0.0


def preflight(host: SimHost, p: dict[str, Any]) -> tuple[dict[str, Any], float]:
    found = _components(host, p)
    problems: list[str] = []
    words = {"sites": "IIS site", "pools": "IIS application pool", "services": "service"}
    for key, what in words.items():
        for row in found[key]:
            if row["state"] == "Missing":
                problems.append(f"{what} '{row['name']}' does not exist on {host.name}")
    version, want = str(p["Version"]), str(p["Sha256"]).lower()
    whole = verified = False
    free: int | None = None
    if not same(p["ReleasesRoot"], host.spec.releases_root):
        problems.append(
            f"releases root '{trim(str(p['ReleasesRoot']))}' does not exist on {host.name}; "
            "check releases_root in the bot configuration (the bot does not create it)"
        )
    else:
        kept = find(host.release_dirs, version)
        whole = kept is not None and host.markers.get(kept) == want
        free = 0 if host.has_fault("disk", "full") else host.spec.free_bytes
        if not whole:
            try:
                data, zip_path = package_bytes(host, str(p["PackageDir"]), version)
            except ScriptError as exc:
                problems.append(str(exc))
            else:
                actual = hashlib.sha256(data).hexdigest()
                if actual != want:
                    problems.append(
                        f"SHA-256 of '{zip_path}' on {host.name} is {actual[:12]}..., expected "
                        f"{want[:12]}...: the host's copy differs from the verified package; "
                        "re-copy it"
                    )
                else:
                    verified = True
            needed = int(p.get("RequiredBytes") or 0)
            if free < needed:
                problems.append(
                    f"only {free // 2**20} MB free on the releases volume of {host.name}, "
                    f"{-(-needed // 2**20)} MB needed to expand {version}; free some space"
                )
    return {
        "ok": True,
        "op": "preflight",
        "problems": problems,
        **found,
        "release_whole": whole,
        "package_verified": verified,
        "free_bytes": free,
    }, 0.0


def switch_release(host: SimHost, p: dict[str, Any]) -> tuple[dict[str, Any], float]:
    names, paths = list(p.get("SiteNames") or []), list(p.get("SitePaths") or [])
    services, images = list(p.get("ServiceNames") or []), list(p.get("ServiceImagePaths") or [])
    if len(names) != len(paths) or len(services) != len(images):
        raise ScriptError(
            f"switch-release on {host.name}: names and paths differ in number (a bug in the "
            "bot); nothing was changed"
        )
    root = str(p.get("ReleasesRoot") or "")
    timeout = float(p.get("TimeoutSec", 30))
    # Every check before the first write, as the script does.
    for name, path in zip(names, paths, strict=True):
        if host.find(host.sites, name) is None:
            raise ScriptError(
                f"IIS site '{name}' does not exist on {host.name}; nothing was changed"
            )
        _inside(host, root, path, "site folder")
        if not host.exists(path) and not _outside_path_ok(host, root, path):
            raise ScriptError(
                f"folder '{path}' for site '{name}' does not exist on {host.name}; deploy the "
                "release first. Nothing was changed"
            )
    for name, image in zip(services, images, strict=True):
        if host.find(host.services, name) is None:
            raise ScriptError(
                f"service '{name}' does not exist on {host.name}; nothing was changed"
            )
        if root:
            exe = image.strip()[1:].split('"', 1)[0] if image.strip().startswith('"') else image
            _inside(host, root, exe, "executable")
            if not host.exists(exe):
                raise ScriptError(
                    f"executable '{exe}' for service '{name}' does not exist on {host.name}; "
                    "deploy the release first. Nothing was changed"
                )
    done: list[str] = []

    def already() -> str:
        return "already switched: " + ", ".join(done) if done else "nothing else was switched"

    site_results = []
    for name, path in zip(names, paths, strict=True):
        site = host.sites[host.find(host.sites, name) or name]
        before = site.physical_path
        changed = not same(before, path)
        if changed:
            if host.has_fault("site", "config_locked", name):
                attempts, waited = retries(timeout)
                raise ScriptError(
                    f"could not switch site '{name}' on {host.name} after {attempts} "
                    f"attempt(s): {LOCKED} ({already()})",
                    duration_s=waited,
                )
            site.physical_path = path
            done.append(f"site {name}")
        site_results.append(
            {
                "name": name,
                "before": before,
                "physical_path": site.physical_path,
                "changed": changed,
            }
        )
    service_results = []
    for name, image in zip(services, images, strict=True):
        service = host.services[host.find(host.services, name) or name]
        before = service.image_path
        changed = before != image
        if changed:
            if host.has_fault("service", "registry_denied", name):
                raise ScriptError(
                    f"could not switch the ImagePath of service '{name}' on {host.name} after "
                    f"1 attempt(s): {_DENIED} ({already()})"
                )
            service.image_path = image
            done.append(f"service {name}")
        service_results.append(
            {"name": name, "before": before, "image_path": service.image_path, "changed": changed}
        )
    return {
        "ok": True,
        "op": "switch-release",
        "sites": site_results,
        "services": service_results,
    }, 0.0


def _inside(host: SimHost, root: str, path: str, what: str) -> None:
    if root and not trim(path).casefold().startswith(trim(root).casefold() + "\\"):
        raise ScriptError(
            f"refused {what} '{path}' on {host.name}: it is not under the releases root "
            f"'{trim(root)}'; nothing was changed"
        )


def _outside_path_ok(host: SimHost, root: str, path: str) -> bool:
    """A restore may point a site back at a folder outside the releases (IIS's default)."""
    return not root and host.release_of(path) is None
