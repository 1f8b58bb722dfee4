"""`rollback ENVIRONMENT [VERSION]` — playbook §6: back to the previous stable version."""

from __future__ import annotations

from commands.change import request_change
from commands.registry import Command, CommandCall
from commands.types import Reply


async def run(call: CommandCall) -> Reply:
    return await request_change(call, "rollback", call.args[0] if call.args else None)


COMMAND = Command(
    name="rollback",
    usage="ENVIRONMENT [VERSION]",
    summary="Roll back to the previous stable version (or the one named) after approval.",
    role="operator",
    env_arg="required",
    max_extra_args=1,
    run=run,
    who_note="an approver approves",
)
