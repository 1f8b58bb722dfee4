"""The bot's state database: `Store` (core.py) and the rows it hands out (rows.py,
watch_rows.py).

`Store` and its errors are loaded on first use (PEP 562), so importing the row types —
which commands/ does — never loads aiosqlite.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from adapters.store.rows import (
    ConversationRef,
    Deployment,
    Freeze,
    HostSwitch,
    InterruptedRun,
    LockResult,
    Request,
    Run,
    SmokeRecord,
)
from adapters.store.watch_rows import Alert, AlertCard, WatchState

if TYPE_CHECKING:
    from adapters.store.core import Store
    from adapters.store.schema import StoreError, StoreVersionError

__all__ = [
    "Alert",
    "AlertCard",
    "ConversationRef",
    "Deployment",
    "Freeze",
    "HostSwitch",
    "InterruptedRun",
    "LockResult",
    "Request",
    "Run",
    "SmokeRecord",
    "Store",
    "StoreError",
    "StoreVersionError",
    "WatchState",
]


def __getattr__(name: str) -> Any:
    if name == "Store":
        from adapters.store.core import Store

        return Store
    if name in ("StoreError", "StoreVersionError"):
        from adapters.store import schema

        return getattr(schema, name)
    raise AttributeError(f"module 'adapters.store' has no attribute {name!r}")
