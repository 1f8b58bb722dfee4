"""`unsubscribe ENVIRONMENT` — this conversation stops getting the environment's alerts."""

from __future__ import annotations

from commands.context import actor_fields
from commands.registry import Command, CommandCall
from commands.subscribe import alert_target
from commands.types import Reply


async def run(call: CommandCall) -> Reply:
    services, inv, env = call.services, call.invocation, call.env()
    target = await alert_target(services, inv)
    if isinstance(target, Reply):
        return target
    removed = await services.store.unsubscribe(env, target)
    await services.audit.append(
        "Unsubscribed",
        environment=env,
        actor=actor_fields(inv.actor.name, inv.actor.aad_object_id),
        status="unsubscribed" if removed else "not-subscribed",
        detail={"conversation_id": target, "correlation_id": inv.correlation_id},
    )
    if not removed:
        return Reply(f"This conversation was not subscribed to {env} alerts. Nothing changed.")
    left = len(await services.store.subscribers(env))
    fallback = services.config.alerts.default_conversation_id
    if left:
        rest = f"{left} other conversation(s) still get them."
    elif fallback:
        rest = "They go to the default alert conversation of the config now."
    else:
        rest = (
            f"No conversation gets them now; `subscribe {env}` somewhere, or OpsGenie alone "
            "will hear of failures."
        )
    return Reply(f"Unsubscribed: {env} alerts no longer come here. {rest}")


COMMAND = Command(
    name="unsubscribe",
    usage="ENVIRONMENT",
    summary="Stop sending the environment's alerts to this chat or channel.",
    role="operator",
    env_arg="required",
    max_extra_args=0,
    run=run,
    suggested=False,  # subscribe is the one people look for; help lists both
)
