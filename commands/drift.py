"""Which release each component of each host runs, and drift said in words (pure).

A site runs the release its physicalPath lies in, a service the release its ImagePath's
executable lies in (adapters/winrm/hoststate.py `release_of`). A service whose binaries
are not switched by the bot (no `executable` configured) is not part of a release and never
counts as drift. When hosts or components disagree, `drift_words` says who runs what:
"MCMS.Worker on prod-web01 runs 1.4.2; everything else runs 1.4.1".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from adapters.winrm.hoststate import HostState, release_of, version_key
from commands.config import Environment


@dataclass(frozen=True)
class ComponentVersion:
    """One component on one host: its state, its path and the release that path is in."""

    host: str
    kind: str  # "site" | "service"
    name: str
    state: str
    path: str | None
    version: str | None  # None: not in any release folder
    managed: bool = True  # False: a service whose binaries the bot does not switch

    @property
    def label(self) -> str:
        if self.state == "Missing":
            return "missing"
        if not self.managed:
            return "not switched by the bot"
        return self.version or f"not in a release ({self.path or 'no path'})"


def component_versions(state: HostState, env: Environment) -> list[ComponentVersion]:
    """Every configured component of one host, sites first, in the configured order."""
    parts, root = env.components, env.releases_root
    out: list[ComponentVersion] = []
    for site in parts.sites:
        found = state.site(site.name)
        path = found.physical_path if found else None
        out.append(
            ComponentVersion(
                state.host, "site", site.name, found.state if found else "Missing", path,
                release_of(path, root),
            )
        )  # fmt: skip
    for service in parts.services:
        svc = state.service(service.name)
        path = svc.image_path if svc else None
        out.append(
            ComponentVersion(
                state.host, "service", service.name, svc.state if svc else "Missing", path,
                release_of(path, root), managed=service.executable is not None,
            )
        )  # fmt: skip
    return out


def release_versions(versions: Iterable[ComponentVersion]) -> set[str | None]:
    """The releases the managed components that exist run (None: one runs no release).
    A missing component is no version: the preflight names it before anything stops."""
    return {v.version for v in versions if v.managed and v.state != "Missing"}


def drift_words(versions: Sequence[ComponentVersion]) -> str | None:
    """None when every managed component of every host runs one release; else who runs what."""
    counted = [v for v in versions if v.managed or v.state == "Missing"]
    labels = Counter(v.label for v in counted)
    if len(labels) <= 1:
        return None
    # The release most components run is "everything else"; the others are named.
    common = max(labels, key=lambda label: (labels[label], _sortable(label)))
    odd: dict[tuple[str, str], list[str]] = {}
    for v in counted:
        if v.label != common:
            odd.setdefault((v.host, v.label), []).append(v.name)
    parts = []
    for (host, label), names in odd.items():
        verb = "is" if label == "missing" else "runs"
        if len(names) > 1:
            verb = "are" if label == "missing" else "run"
        parts.append(f"{' and '.join(names)} on {host} {verb} {label}")
    return "; ".join(parts) + f"; everything else runs {common}"


def _sortable(label: str) -> tuple[tuple[int, ...], int, str]:
    try:
        return version_key(label)
    except ValueError:
        return (), 0, label
