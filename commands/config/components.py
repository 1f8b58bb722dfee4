"""What a release contains on a host: IIS sites (each with its app pool) and Windows services.

A run switches every component to the target release and reads each back: a site's
physicalPath to `<releases_root>\\<version>\\<folder>`, a service's ImagePath to the
executable inside the release. The older one-site/one-service shape (`iis` + `worker`)
stays valid and means one component of each kind: the site at the release root, the
service started and stopped but its binaries not switched (no executable is known).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, field_validator

from commands.config.base import _check_name, _Strict

# A path inside a release: segments of safe characters, no drive, no `..`.
RELATIVE_PATH = re.compile(r"^[A-Za-z0-9._-][A-Za-z0-9 ._-]*(\\[A-Za-z0-9._-][A-Za-z0-9 ._-]*)*$")
# Service arguments end up in the registry's ImagePath (data, never run by PowerShell); still
# no quotes or shell metacharacters, so the value reads back exactly as written.
ARGUMENTS = re.compile(r"^[A-Za-z0-9 ._:=/\\,+-]{0,200}$")

# Default start order: sites first, services last (what the playbook's hosts expect).
SITE_START_ORDER = 1
SERVICE_START_ORDER = 2


def _relative(value: str, what: str) -> str:
    if not RELATIVE_PATH.fullmatch(value) or any(s.strip(". ") == "" for s in value.split("\\")):
        raise ValueError(
            f"{what} {value!r} must be a path inside the release like Portal or "
            "Worker\\MCMS.Worker.exe (ASCII letters, digits, space, '.', '_', '-'; no '..')"
        )
    return value


class Site(_Strict):
    """One IIS site of the release; `folder` is inside the release ("" = its root)."""

    name: str
    app_pool: str
    folder: str = ""
    # Playbook §6 says "stop the site and recycle the app pool"; some hosts prefer a full stop.
    pool_action: Literal["recycle", "stop"] = "stop"
    start_order: int = Field(default=SITE_START_ORDER, ge=0, le=99)

    @field_validator("name", "app_pool")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, "IIS name")

    @field_validator("folder")
    @classmethod
    def _folder(cls, v: str) -> str:
        return v if v == "" else _relative(v.strip("\\"), "folder")


class Service(_Strict):
    """One Windows service of the release; its ImagePath points at `executable` in it."""

    name: str
    # None: the service is stopped and started, but its binaries are not switched.
    executable: str | None = None
    arguments: str = ""
    start_order: int = Field(default=SERVICE_START_ORDER, ge=0, le=99)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, "service name")

    @field_validator("executable")
    @classmethod
    def _executable(cls, v: str | None) -> str | None:
        if v is None:
            return None
        v = _relative(v.strip("\\"), "executable")
        if not v.lower().endswith(".exe"):
            raise ValueError(f"executable {v!r} must name an .exe inside the release")
        return v

    @field_validator("arguments")
    @classmethod
    def _arguments(cls, v: str) -> str:
        if not ARGUMENTS.fullmatch(v):
            raise ValueError(
                "arguments may hold up to 200 ASCII letters, digits, spaces and . _ : = / \\ , + -"
            )
        return v.strip()


class Iis(_Strict):
    """The older shape: one site at the release root."""

    site: str
    app_pool: str
    pool_action: Literal["recycle", "stop"] = "stop"

    @field_validator("site", "app_pool")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, "IIS name")


class Worker(_Strict):
    """The older shape: one service, its binaries not switched."""

    service: str

    @field_validator("service")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, "service name")


@dataclass(frozen=True)
class Components:
    """The sites and services of an environment, in the configured order."""

    sites: tuple[Site, ...]
    services: tuple[Service, ...]

    @property
    def pools(self) -> tuple[str, ...]:
        """Each app pool once, in site order (two sites may share one)."""
        return tuple(dict.fromkeys(s.app_pool for s in self.sites))

    def pool_action(self, pool: str) -> str:
        return next(s.pool_action for s in self.sites if s.app_pool == pool)


def check_components(sites: list[Site], services: list[Service]) -> None:
    """Raise ValueError when the component list cannot be run safely."""
    if not sites and not services:
        raise ValueError("an environment needs at least one site or service to roll back")
    for what, names in (
        ("site", [s.name.casefold() for s in sites]),
        ("service", [s.name.casefold() for s in services]),
    ):
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate {what} name(s): {', '.join(dupes)}")
    actions: dict[str, str] = {}
    for site in sites:
        seen = actions.setdefault(site.app_pool.casefold(), site.pool_action)
        if seen != site.pool_action:
            raise ValueError(
                f"app pool {site.app_pool!r} is shared by sites with different pool_action: "
                "give them the same one"
            )
