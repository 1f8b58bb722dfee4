"""`cancel RUN-ID` — stop a run at its next step boundary (a step in flight is not cut),
or a DR check (`dr-…`) at once: its running suite's process tree is killed.

Cancelling a run is a restore: once the run stops, whatever it changed is put back as it
was (unless the environment says `on_failure = "stop"`). So only the requester of the run
or an approver of its environment may cancel it — an operator who may ask for a rollback
may not take someone else's down halfway. A run already restoring cannot be cancelled.
"""

from __future__ import annotations

import re

from adapters.dr.artifacts import RUN_ID_PATTERN as CHECK_ID
from commands.context import actor_fields
from commands.registry import Command, CommandCall
from commands.types import Reply

RUN_ID = re.compile(r"^run-[0-9a-f]{8}$")


async def cancel_check(call: CommandCall, check_id: str) -> Reply:
    services, inv = call.services, call.invocation
    check = services.checks.find(check_id)
    if check is None:
        return Reply(
            f"No DR check `{check_id}` is running (it may have ended: its card has the results).",
            refused=True,
            extra={"reason": "unknown-run"},
        )
    if not services.config.has_role(inv.actor.aad_object_id, "operator", check.environment):
        return Reply(
            f"Cancelling `{check_id}` needs the **operator** role for {check.environment}.",
            refused=True,
            extra={"reason": "role"},
        )
    running = check.running.id if check.running else None
    if services.checks.cancel(check_id, inv.actor.name) is None:
        return Reply(
            f"DR check `{check_id}` is already being cancelled.",
            refused=True,
            extra={"reason": "already-cancelling"},
        )
    await services.audit.append(
        "CancelRequested",
        environment=check.environment,
        run_id=check_id,
        actor=actor_fields(inv.actor.name, inv.actor.aad_object_id),
        step=running,
    )
    doing = (
        f"{running} is being stopped now (its process tree is killed)"
        if running
        else ("it stops before its next test")
    )
    return Reply(
        f"Cancelling DR check `{check_id}` ({check.environment}): {doing}; the tests after it "
        "will not run. The card will say where it stopped."
    )


async def run(call: CommandCall) -> Reply:
    services, inv = call.services, call.invocation
    if not call.args:
        return Reply(
            "`cancel` needs a run id: `cancel run-…` or `cancel dr-…` (see the progress card).",
            refused=True,
            extra={"reason": "missing-run"},
        )
    run_id = call.args[0].lower()
    if CHECK_ID.fullmatch(run_id):
        return await cancel_check(call, run_id)
    found = await services.store.get_run(run_id) if RUN_ID.fullmatch(run_id) else None
    if found is None:
        return Reply(
            f"There is no run `{call.args[0]}`. The id is on the progress card (run-… for a "
            "rollback or deploy, dr-… for a DR check).",
            refused=True,
            extra={"reason": "unknown-run"},
        )
    request = await services.store.get_request(found.request_id)
    who = (inv.actor.aad_object_id or "").casefold()
    requester = request is not None and bool(who) and who == (request.requester_id or "").casefold()
    if not requester and not services.config.has_role(
        inv.actor.aad_object_id, "approver", found.environment
    ):
        by = f" ({request.requester_name})" if request is not None else ""
        return Reply(
            f"Only the requester of `{run_id}`{by} or an approver of {found.environment} may "
            "cancel it: a cancel puts the hosts back as they were before the run. Nothing "
            "was changed.",
            refused=True,
            extra={"reason": "role"},
        )
    if found.state != "running":
        return Reply(
            f"Run `{run_id}` is not running (it {found.state}); nothing to cancel.",
            refused=True,
            extra={"reason": "not-running"},
        )
    if (found.current_step or "").startswith("restore"):
        return Reply(
            f"Run `{run_id}` is already restoring the pre-run state; a restore is not "
            "cancelled. The progress card says what each host is left in.",
            refused=True,
            extra={"reason": "restoring"},
        )
    flagged = await services.store.request_cancel(run_id, inv.actor.name, services.now())
    if not flagged:
        return Reply(
            f"Run `{run_id}` is already being cancelled, or has just ended.",
            refused=True,
            extra={"reason": "already-cancelling"},
        )
    await services.audit.append(
        "CancelRequested",
        environment=found.environment,
        request_id=found.request_id,
        run_id=run_id,
        actor=actor_fields(inv.actor.name, inv.actor.aad_object_id),
        step=found.current_step,
    )
    step = found.current_step or "its first step"
    env = services.config.environments.get(found.environment)
    after = (
        "then puts back whatever it changed, as it was before the run"
        if env is None or env.on_failure == "restore"
        else 'and leaves the hosts as they are (on_failure = "stop")'
    )
    return Reply(
        f"Cancel requested for `{run_id}` ({found.environment}). It stops after *{step}* "
        f"finishes — a step in flight is not cut — {after}. The progress card will say "
        "where it stopped and what each host is left in."
    )


COMMAND = Command(
    name="cancel",
    usage="RUN-ID",
    summary="Stop a rollback/deploy at its next step boundary and restore it, or a DR check now.",
    # Checked by the command against what it cancels (a run: its requester or an approver of
    # its environment; a DR check: the environment's operators).
    role=None,
    env_arg="none",
    max_extra_args=1,
    run=run,
    who_note="a run's requester or an approver of its environment; a DR check's operators",
    suggested=False,  # typed with the run id its card shows; Teams suggests at most 10
)
