"""How times are shown to people: in the configured zone, with its abbreviation."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo


def show(moment: datetime, tz: ZoneInfo) -> str:
    """`2026-11-27 17:50:12 KST` — stored times are UTC; people read their own zone."""
    local = moment.astimezone(tz)
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()}"


def ago(moment: datetime, now: datetime) -> str:
    delta = now - moment
    if delta < timedelta(seconds=0):
        return "just now"
    seconds = int(delta.total_seconds())
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min ago"
    return f"{seconds // 86400} d ago"
