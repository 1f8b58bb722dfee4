"""The installed package's version, read from its metadata: for `mcms-bot --version`, the
Teams app package and the `mcms_build_info` series."""

from __future__ import annotations

from importlib import metadata

DISTRIBUTION = "mcms-bot"


def installed_version() -> str | None:
    """The version pip installed, or None when running from a tree that was never installed."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None
