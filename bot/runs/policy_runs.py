"""Runs that need no approval: a reply naming `start_run` has its request's run started.

`approval.required = false` (Lab-like environments) makes `rollback ENVIRONMENT` approved by
policy in the command itself (audited as such, commands/change.py); this wrapper around the
dispatcher hands that request to the executor, exactly as an Approve click would.
"""

from __future__ import annotations

import logging

from bot.ports import RunSubmitter
from commands.context import Services
from commands.types import Dispatcher, Invocation, Reply

log = logging.getLogger(__name__)


class PolicyApprovedRuns:
    """A Dispatcher that starts the run of a request a command approved by policy."""

    def __init__(self, inner: Dispatcher, services: Services, submit: RunSubmitter) -> None:
        self._inner = inner
        self._services = services
        self._submit = submit

    async def handle(self, invocation: Invocation) -> Reply:
        reply = await self._inner.handle(invocation)
        if reply.start_run is None:
            return reply
        request = await self._services.store.get_request(reply.start_run)
        if request is None or request.state != "approved":
            log.error("request %s approved by policy is gone or moved on", reply.start_run)
        elif not self._submit(request):
            return Reply(
                f"{reply.text} The bot is shutting down: {request.id} is approved but will not "
                "run now. Ask again after the restart.",
                card=reply.card,
                refused=True,
                on_sent=reply.on_sent,
            )
        return reply
