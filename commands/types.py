"""Small domain types that cross from the Teams edge (bot/) into the commands.

Nothing here knows botbuilder: bot/teams/activities.py turns an activity into an `Invocation` and a
`Reply` back into an activity, so the SDK can be replaced by touching bot/ alone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Actor:
    """Who sent a command; `aad_object_id` is the Entra object id used for roles."""

    name: str
    aad_object_id: str | None


@dataclass(frozen=True)
class Invocation:
    """One inbound chat command, @mention already stripped."""

    text: str
    actor: Actor
    tenant_id: str | None
    conversation_id: str
    conversation_type: str  # personal | channel | groupChat
    correlation_id: str  # the inbound activity id: quoted in errors so logs can be found
    # The break-glass CLI: whatever this requests is approved by break glass or not at all,
    # so a freeze (commands/freeze.py) does not stop the request itself.
    break_glass: bool = False


@dataclass(frozen=True)
class Reply:
    """What the bot answers: a plain text, optionally with one Adaptive Card (JSON)."""

    text: str
    card: dict[str, Any] | None = None
    # True when the bot refused to act (unknown command, role, tenant...): tests and audit
    # distinguish a refusal from an answer without parsing the text.
    refused: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    # Called with the id Teams gave the posted reply: an approval card must be edited later
    # (decided, expired) for everyone, and that needs the id of the message that holds it.
    on_sent: Callable[[str], Awaitable[None]] | None = None
    # A request approved by policy (approval.required = false): the bot starts its run.
    start_run: str | None = None


class Dispatcher(Protocol):
    """Turns one invocation into one reply; never raises for bad input."""

    async def handle(self, invocation: Invocation) -> Reply:
        """Parse, authorize and run the command; the reply explains any refusal."""
        ...
