"""The interfaces the rooms of bot/ talk through; bot/server.py passes the implementations in.

The Teams edge (bot/teams/) never imports the runs (bot/runs/) and the runs never import
the Teams edge: a run reports through a `Reporter` (implemented over the outbound queue by
bot/teams/reporter.py), and a card click starts a run through a `RunSubmitter` (the
executor's `submit`).
"""

from __future__ import annotations

from typing import Any, Protocol

from adapters.store.rows import Request


class Reporter(Protocol):
    """Where a run's card and messages go: the conversation the request came from."""

    async def post(
        self, conversation_id: str, text: str, card: dict[str, Any] | None
    ) -> str | None:
        """Post a new message; its activity id, or None when it could not be delivered."""
        ...

    async def update(
        self,
        conversation_id: str,
        activity_id: str,
        text: str,
        card: dict[str, Any],
        *,
        final: bool = False,
    ) -> None:
        """Edit a message in place; coalesced unless final (a final edit always arrives)."""
        ...


class RunSubmitter(Protocol):
    """Starts the run of an approved request in the background; False when shutting down."""

    def __call__(self, request: Request) -> bool: ...
