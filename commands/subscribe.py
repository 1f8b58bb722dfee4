"""`subscribe ENVIRONMENT` — this conversation gets the environment's alerts from now on.

In a channel the bot is addressed inside a thread (`<channel id>;messageid=<root>`), but an
alert should be a new post in the channel, not a reply buried in an old thread: the
subscription is stored for the channel itself, with a reference derived from the thread's
(same bot, tenant and service URL — the service URL is where Teams accepts posts for
that tenant). Personal and group chats are subscribed as they are.
"""

from __future__ import annotations

import json

from commands.context import Services, actor_fields
from commands.registry import Command, CommandCall
from commands.types import Invocation, Reply


def channel_root(conversation_id: str) -> str:
    """The channel of a channel thread id; any other id unchanged."""
    return conversation_id.split(";messageid=", 1)[0]


def channel_reference(ref_json: str, channel_id: str) -> str:
    """The thread's stored reference, retargeted at the channel (a new post, not a reply)."""
    ref = json.loads(ref_json)
    ref["conversation"] = {**(ref.get("conversation") or {}), "id": channel_id}
    ref.pop("activityId", None)
    return json.dumps(ref, sort_keys=True)


async def alert_target(services: Services, invocation: Invocation) -> str | Reply:
    """The conversation id alerts for this conversation go to, or a refusal."""
    stored = await services.store.get_conversation_ref(invocation.conversation_id)
    if stored is None:
        return Reply(
            "I have no reference for this conversation yet, so I could not post here later. "
            "Send me any message here (e.g. `help`), then subscribe again.",
            refused=True,
            extra={"reason": "no-reference"},
        )
    if stored.kind != "channel" and invocation.conversation_type != "channel":
        return invocation.conversation_id
    channel = channel_root(invocation.conversation_id)
    if channel != invocation.conversation_id:
        await services.store.save_conversation_ref(
            channel,
            channel_reference(stored.ref_json, channel),
            "channel",
            stored.service_url,
            stored.tenant_id,
        )
    return channel


def where(invocation: Invocation) -> str:
    if invocation.conversation_type == "channel":
        return "as new posts in this channel"
    if invocation.conversation_type == "personal":
        return "in this chat with me"
    return "in this chat"


async def run(call: CommandCall) -> Reply:
    services, inv, env = call.services, call.invocation, call.env()
    target = await alert_target(services, inv)
    if isinstance(target, Reply):
        return target
    added = await services.store.subscribe(env, target, inv.actor.name, services.now())
    await services.audit.append(
        "Subscribed",
        environment=env,
        actor=actor_fields(inv.actor.name, inv.actor.aad_object_id),
        status="subscribed" if added else "already",
        detail={"conversation_id": target, "correlation_id": inv.correlation_id},
    )
    watch = services.config.environments[env].watch
    if not added:
        return Reply(f"{env} alerts already come here {where(inv)}. Nothing changed.")
    schedule = (
        f"every {watch.interval_s:g} s; an alert after {watch.failure_threshold} failing runs "
        f"in a row, a reminder every {watch.reminder_minutes} min while it lasts"
        if watch.enabled
        else "the watcher is off for it in the config, so only Grafana alerts will come"
    )
    return Reply(
        f"Subscribed: {env} alerts will come {where(inv)} (smoke checks {schedule}). "
        f"`unsubscribe {env}` stops them."
    )


COMMAND = Command(
    name="subscribe",
    usage="ENVIRONMENT",
    summary="Send the environment's alerts (failing smoke, Grafana) to this chat or channel.",
    role="operator",
    env_arg="required",
    max_extra_args=0,
    run=run,
)
