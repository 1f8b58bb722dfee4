"""`rollback ENVIRONMENT [VERSION] [--exclude HOST]` — playbook §6: the whole release back
to the previous stable version."""

from __future__ import annotations

from commands.change import MAX_CHANGE_ARGS, request_change
from commands.registry import Command, CommandCall
from commands.types import Reply


async def run(call: CommandCall) -> Reply:
    return await request_change(call, "rollback", call.args)


COMMAND = Command(
    name="rollback",
    usage="ENVIRONMENT [VERSION] [--exclude HOST]",
    summary="Roll the whole release back to the previous stable version (or the one named).",
    role="operator",
    env_arg="required",
    max_extra_args=MAX_CHANGE_ARGS,
    run=run,
    who_note="an approver approves",
)
