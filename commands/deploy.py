"""`deploy ENVIRONMENT VERSION` — the rollback flow forward, to a version from the package store."""

from __future__ import annotations

from commands.change import request_change
from commands.registry import Command, CommandCall
from commands.types import Reply


async def run(call: CommandCall) -> Reply:
    if not call.args:
        env = call.env()
        return Reply(
            f"`deploy` needs a version: `deploy {env} VERSION` (see the package store). "
            "Nothing was requested.",
            refused=True,
            extra={"reason": "missing-version"},
        )
    return await request_change(call, "deploy", call.args[0])


COMMAND = Command(
    name="deploy",
    usage="ENVIRONMENT VERSION",
    summary="Deploy a version from the package store after approval.",
    role="operator",
    env_arg="required",
    max_extra_args=1,
    run=run,
    who_note="an approver approves",
)
