"""`deploy ENVIRONMENT VERSION` — the rollback flow forward, to a version from the package store."""

from __future__ import annotations

from commands.change import MAX_CHANGE_ARGS, request_change
from commands.registry import Command, CommandCall
from commands.types import Reply


async def run(call: CommandCall) -> Reply:
    return await request_change(call, "deploy", call.args)


COMMAND = Command(
    name="deploy",
    usage="ENVIRONMENT VERSION [--exclude HOST]",
    summary="Deploy a version from the package store after approval.",
    role="operator",
    env_arg="required",
    max_extra_args=MAX_CHANGE_ARGS,
    run=run,
    who_note="an approver approves",
)
