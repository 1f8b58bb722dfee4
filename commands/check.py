"""`check ENVIRONMENT [smoke|axe|e2e|zap|all]` — the playbook's DR test matrix (§8) from chat.

Answers at once with the check's card; the tests run in the background (commands/dr/),
one after another, and the card shows which one runs and for how long, then a row per test:
result, counts, duration, the worst findings by name. `cancel RUN-ID` stops it.

Refused, with nothing run: an unknown test name; a test the environment has no runner
for, when named explicitly (`all` runs what is configured and lists the rest as not run);
a second check of the same environment; an environment a rollback or deploy is changing
right now (its results would describe a half-switched site).
"""

from __future__ import annotations

import time

from commands.cards.dr import render_check_card
from commands.dr.checks import ActiveCheck
from commands.dr.engine import not_configured
from commands.dr.matrix import CHOICES, SMOKE, select
from commands.registry import Command, CommandCall
from commands.timefmt import ago
from commands.types import Reply


def _refuse(reason: str, message: str) -> Reply:
    return Reply(message, refused=True, extra={"reason": reason})


def busy_message(check: ActiveCheck, now_text: str) -> str:
    doing = f", now {check.running.id}" if check.running else ""
    return (
        f"A DR check of {check.environment} is already running ({check.run_id}, started by "
        f"{check.actor.name} {now_text}{doing}). Wait for its card to finish, or "
        f"`cancel {check.run_id}`. Nothing new was started."
    )


async def run(call: CommandCall) -> Reply:
    services, inv, environment = call.services, call.invocation, call.env()
    tests = select(call.args)
    if isinstance(tests, str):
        return _refuse("unknown-test", f"{tests}. Nothing was run.")
    env = services.config.environments[environment]
    named = [w.lower() for w in call.args]
    if named and "all" not in named:
        missing = [
            t for t in tests if t is not SMOKE and (env.dr is None or env.dr.runner(t.key) is None)
        ]
        if missing:
            why = "; ".join(f"{t.id} is {not_configured(environment, t)}" for t in missing)
            return _refuse("not-configured", f"{why}. Nothing was run.")
    lock = await services.store.lock_holder(environment)
    if lock is not None and lock.holder_run_id:
        return _refuse(
            "environment-busy",
            f"{environment} is being changed by {lock.holder_run_id} ({lock.holder_name}): a DR "
            "check now would test a half-switched site. Run it when that run has ended. "
            "Nothing was run.",
        )
    checks = services.checks
    if not checks.accepting:
        return _refuse("shutting-down", "The bot is shutting down; try again after its restart.")
    # No await from here to start(): nothing can claim the environment in between.
    changing = checks.changing(environment)
    if changing is not None:
        return _refuse(
            "environment-busy",
            f"{environment} is being changed by {changing}: a DR check now would test a "
            "half-switched site. Run it when that run has ended. Nothing was run.",
        )
    running = checks.active(environment)
    if running is not None:
        return _refuse(
            "check-running", busy_message(running, ago(running.started_at, services.now()))
        )
    check = checks.start(services, environment, tests, inv.actor, inv.conversation_id)
    card = render_check_card(check.view(time.monotonic()), services.config.tz)

    async def attach(activity_id: str) -> None:
        await checks.attach_card(check, activity_id)

    return Reply(
        f"DR check {environment} started ({check.run_id}): {', '.join(t.id for t in tests)}",
        card=card,
        extra={"run_id": check.run_id},
        on_sent=attach,
    )


COMMAND = Command(
    name="check",
    usage=f"ENVIRONMENT [{CHOICES}]",
    summary="Run the DR test matrix (smoke, axe, e2e, ZAP) on an environment; all by default.",
    role="operator",
    env_arg="required",
    max_extra_args=4,
    run=run,
)
