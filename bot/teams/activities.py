"""The Teams edge: activities in, our own small types out, replies back as activities.

This is the one module that knows botbuilder's activity model (bot/teams/auth.py knows its
authentication). Commands see an `Invocation` and answer a `Reply`; card clicks reach an
optional `CardActionHandler` and come back as a `CardActionResult`. Replacing the archived
SDK (successor: Microsoft 365 Agents SDK) means rewriting this module, not the commands.

botbuilder 4.17.1 answers HTTP 500 for any `on_adaptive_card_invoke` override and for a
non-Execute card action, so `on_invoke_activity` handles `adaptiveCard/action` itself and
always answers HTTP 200 with a card or an error body.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from botbuilder.core import ActivityHandler, InvokeResponse, MessageFactory, TurnContext
from botbuilder.schema import (
    AdaptiveCardInvokeResponse,
    Attachment,
)

from bot.teams.admission import conversation_tenant
from commands.types import Actor, Dispatcher, Invocation, Reply

log = logging.getLogger(__name__)

CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
ERROR_CONTENT_TYPE = "application/vnd.microsoft.error"
CARD_ACTION_INVOKE = "adaptiveCard/action"


@dataclass(frozen=True)
class CardReply:
    """A card action succeeded: this card replaces the clicked one (for the clicker)."""

    card: dict[str, Any]


@dataclass(frozen=True)
class CardActionError:
    """A card action was refused; `message` is shown to the user and says what to do next."""

    code: str
    message: str
    status_code: int = 400


CardActionResult = CardReply | CardActionError


class CardActionHandler(Protocol):
    """Decides one card click (Action.Execute, or its Action.Submit fallback); never raises."""

    async def __call__(
        self,
        verb: str,
        data: dict[str, Any],
        actor: Actor,
        tenant_id: str | None,
        conversation_id: str,
        reply_to_id: str | None,
        correlation_id: str,
    ) -> CardActionResult: ...


class ConversationReferenceHook(Protocol):
    """Keeps the latest conversation reference (JSON) so the bot can post proactively."""

    async def __call__(
        self,
        conversation_id: str,
        reference_json: str,
        conversation_type: str,
        service_url: str,
        tenant_id: str | None,
    ) -> None: ...


def correlation_id_of(activity: Any) -> str:
    return str(activity.id) if activity.id else uuid.uuid4().hex[:12]


def apology(correlation_id: str) -> str:
    return f"Sorry, something went wrong on my side. Reference: {correlation_id}"


def _actor(activity: Any) -> Actor:
    sender = activity.from_property
    if sender is None:
        return Actor(name="unknown", aad_object_id=None)
    return Actor(name=sender.name or sender.id or "unknown", aad_object_id=sender.aad_object_id)


def _tenant_id(activity: Any) -> str | None:
    # conversation.tenantId, which Teams writes; channelData (which a Direct Line client
    # could write) was checked to agree with it before the turn (bot/teams/admission.py).
    return conversation_tenant(activity)


def _command_text(activity: Any) -> str:
    if not activity.text:
        return ""
    try:
        text = TurnContext.remove_recipient_mention(activity)
    except (KeyError, TypeError, AttributeError):
        # A mention entity without `mentioned` makes botbuilder raise: keep the raw text
        # and let the command parser refuse it rather than fail the turn.
        text = activity.text
    return str(text or "").strip()


def _card_attachment(card: dict[str, Any]) -> Any:
    return Attachment(content_type=CARD_CONTENT_TYPE, content=card)


def _reply_activity(reply: Reply) -> Any:
    # A card goes alone, with the text as its summary (what notifications and the chat list
    # show): text + card in one activity makes the Agents Playground split it in two and
    # answer without an id, so the card could never be edited (see bot/teams/proactive.py).
    if reply.card is None:
        return MessageFactory.text(reply.text)
    activity = MessageFactory.attachment(_card_attachment(reply.card))
    activity.summary = reply.text or None
    return activity


def invoke_body(result: CardActionResult) -> Any:
    # A model, not a dict: CloudAdapter.process passes the body to serializer_helper, which
    # only takes msrest models (a dict fails with "no attribute 'is_xml_model'": notes, bug 1).
    if isinstance(result, CardReply):
        return AdaptiveCardInvokeResponse(
            status_code=200, type=CARD_CONTENT_TYPE, value=result.card
        )
    return AdaptiveCardInvokeResponse(
        status_code=result.status_code,
        type=ERROR_CONTENT_TYPE,
        value={"code": result.code, "message": result.message},
    )


def _parse_card_action(value: Any) -> tuple[str, dict[str, Any]] | CardActionError:
    """(verb, data) from an invoke's `value`; an error for anything but Action.Execute."""
    action = value.get("action") if isinstance(value, dict) else None
    if not isinstance(action, dict):
        return CardActionError("BadRequest", "The card action carried no action.")
    if action.get("type") != "Action.Execute":
        return CardActionError(
            "NotSupported", f"Card action {action.get('type')!r} is not supported."
        )
    verb, data = action.get("verb"), action.get("data", {})
    if not isinstance(verb, str) or not verb or not isinstance(data, dict):
        return CardActionError("BadRequest", "The card action had no verb or malformed data.")
    return verb, data


class TeamsBot(ActivityHandler):  # type: ignore[misc]
    """Routes messages to the dispatcher and card clicks to the card action handler."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        card_action: CardActionHandler | None = None,
        on_conversation_reference: ConversationReferenceHook | None = None,
    ) -> None:
        super().__init__()
        self._dispatcher = dispatcher
        self._card_action = card_action
        self._on_reference = on_conversation_reference

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        activity = turn_context.activity
        await self._remember(activity)
        if isinstance(activity.value, dict) and not (activity.text or "").strip():
            await self._on_submit_fallback(turn_context)
            return
        conversation = activity.conversation
        invocation = Invocation(
            text=_command_text(activity),
            actor=_actor(activity),
            tenant_id=_tenant_id(activity),
            conversation_id=conversation.id,
            conversation_type=conversation.conversation_type or "unknown",
            correlation_id=correlation_id_of(activity),
        )
        reply = await self._dispatcher.handle(invocation)
        response = await turn_context.send_activity(_reply_activity(reply))
        if reply.on_sent is not None and response is not None and response.id:
            await reply.on_sent(response.id)

    async def on_invoke_activity(self, turn_context: TurnContext) -> Any:
        activity = turn_context.activity
        if activity.name != CARD_ACTION_INVOKE:
            # botbuilder answers 501 for every other invoke (sign-in, search, task modules,
            # any made-up name): a 5xx invites the channel to resend. We serve none of them.
            error = CardActionError("NotSupported", "This bot only handles card buttons.")
            return InvokeResponse(status=400, body=invoke_body(error))
        # The raw dict, not botbuilder's AdaptiveCardInvokeValue: that model drops `trigger`
        # and its validation is what answers 500 for non-Execute actions (notes, bug 2).
        # A refresh ("automatic" trigger) is told apart by its own verb.
        parsed = _parse_card_action(activity.value)
        if isinstance(parsed, CardActionError):
            result: CardActionResult = parsed
        else:
            result = await self._run_card_action(*parsed, activity)
        return InvokeResponse(status=200, body=invoke_body(result))

    async def on_installation_update(self, turn_context: TurnContext) -> None:
        activity = turn_context.activity
        await self._remember(activity)
        # Teams sends installationUpdate *and* conversationUpdate on install: greet only here.
        if activity.action == "add":
            if activity.conversation.conversation_type == "personal":
                how = "Send `help`"
            else:
                how = "@mention me with `help`"
            await turn_context.send_activity(
                f"Hi, I'm the MCMS ops bot. {how} to see what I can do."
            )

    async def on_conversation_update_activity(self, turn_context: TurnContext) -> None:
        activity = turn_context.activity
        bot_id = activity.recipient.id if activity.recipient else None
        if any(m.id == bot_id for m in activity.members_added or []):
            await self._remember(activity)

    async def _on_submit_fallback(self, turn_context: TurnContext) -> None:
        """An Action.Submit (old clients) posts `value` = its data, which carries the verb."""
        activity = turn_context.activity
        data = dict(activity.value)
        verb = data.pop("verb", None)
        if not isinstance(verb, str) or not verb:
            result: CardActionResult = CardActionError("BadRequest", "That button has no action.")
        else:
            result = await self._run_card_action(verb, data, activity)
        if isinstance(result, CardActionError):
            await turn_context.send_activity(result.message)
        elif activity.reply_to_id:
            # No invoke response to carry the card: replace the card message for everyone.
            update = MessageFactory.attachment(_card_attachment(result.card))
            update.id = activity.reply_to_id
            await turn_context.update_activity(update)
        else:
            await turn_context.send_activity(
                MessageFactory.attachment(_card_attachment(result.card))
            )

    async def _run_card_action(
        self, verb: str, data: dict[str, Any], activity: Any
    ) -> CardActionResult:
        correlation_id = correlation_id_of(activity)
        if self._card_action is None:
            return CardActionError("NotSupported", f"The action {verb!r} is not available here.")
        try:
            return await self._card_action(
                verb=verb,
                data=data,
                actor=_actor(activity),
                tenant_id=_tenant_id(activity),
                conversation_id=activity.conversation.id,
                reply_to_id=activity.reply_to_id,
                correlation_id=correlation_id,
            )
        except Exception:
            log.exception("card action %r failed", verb, extra={"correlation_id": correlation_id})
            return CardActionError("InternalError", apology(correlation_id), status_code=500)

    async def _remember(self, activity: Any) -> None:
        if self._on_reference is None:
            return
        reference = TurnContext.get_conversation_reference(activity)
        try:
            await self._on_reference(
                conversation_id=activity.conversation.id,
                reference_json=json.dumps(reference.serialize(), sort_keys=True),
                conversation_type=activity.conversation.conversation_type or "unknown",
                service_url=activity.service_url,
                tenant_id=_tenant_id(activity),
            )
        except Exception:
            # Losing a reference only costs proactive posts there; it must not cost the
            # user the answer to the command they just sent.
            log.exception(
                "storing the conversation reference failed",
                extra={"correlation_id": correlation_id_of(activity)},
            )
