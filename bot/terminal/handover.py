"""Settling, from the break-glass CLI, a run whose process died: its messages kept for Teams.

The CLI has no Teams connection. What settling a dead process's run says in its
conversation — the card's final state, the "interrupted" message — is shown here and kept
in the store as final states (`keep_final`), owned by this process: once it exits, the
bot (at its start, or an instance's lease loop) claims and delivers them. The alert
conversations get a notice too.
"""

from __future__ import annotations

import json
from typing import Any

from adapters.store import Store
from bot.runs.recovery import Recovered
from bot.terminal.display import Display
from commands.context import OnSent, Services


class KeptForTeams:
    """A Reporter that shows each message here and keeps it for the bot to deliver."""

    def __init__(self, store: Store, display: Display) -> None:
        self._store = store
        self._display = display

    async def post(
        self,
        conversation_id: str,
        text: str,
        card: dict[str, Any] | None,
        *,
        on_sent: OnSent | None = None,
    ) -> str | None:
        self._display.message(text)
        await self._store.keep_final(
            conversation_id, None, text, json.dumps(card) if card is not None else None
        )
        return None

    async def update(
        self,
        conversation_id: str,
        message: str,
        text: str,
        card: dict[str, Any],
        *,
        final: bool = False,
    ) -> None:
        # Progress edits would be stale long before the bot delivers them: only the end.
        if final:
            await self._store.keep_final(conversation_id, message, text, json.dumps(card))


async def settle_here(services: Services, display: Display, recovered: Recovered) -> None:
    """Settle the runs a dead process left as the bot would (restore per on_failure, the
    outcome recorded, the lock released), keeping what Teams must be told."""
    await recovered.tell(services, KeptForTeams(services.store, display))
    for interrupted in recovered.runs:
        run = await services.store.get_run(interrupted.run_id)
        restore = (run.restore if run else None) or "not recorded"
        display.message(
            f"⚠️ {interrupted.run_id} ({interrupted.environment}) was left running by a "
            f"process that died: interrupted and settled here (restore: {restore}). "
            f"`run {interrupted.run_id}` shows where it stopped."
        )
        await services.store.add_notice(
            interrupted.environment,
            "interrupted",
            f"⚠️ {interrupted.run_id} ({interrupted.environment}) was left running by a bot "
            f"process that died; settled from the break-glass CLI: restore {restore}. "
            f"`run {interrupted.run_id}` shows where it stopped.",
        )
