"""Proactive sends to a Teams conversation: post a message, edit one in place.

`TeamsSender` is the botbuilder edge for messages the bot sends outside a turn (progress
cards, alerts, summaries): it continues a stored conversation reference through
`CloudAdapter.continue_conversation` and translates every failure, once, into:

    OutboundError                 this attempt did not reach the conversation
    ├── Throttled(retry_after)    HTTP 429; wait `retry_after` seconds (None: not given)
    ├── Transient(status)         412, 408, 5xx, a timeout or no connection: try again later
    └── Permanent(status, msg)    anything else (403 not installed, 404 gone, a bad
                                  reference...): retrying will not help

Messages are our own words plus, at most, the connector's error code: never `str()` of a
library error, so they are safe for logs and cards.

Invariant: an error inside the proactive turn is caught in the callback and raised to the
caller. Left to botbuilder it would reach the adapter's `on_turn_error`, which posts an
apology into the very conversation that just refused (or throttled) us.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

from botbuilder.core import MessageFactory, TurnContext
from botbuilder.integration.aiohttp import CloudAdapter
from botbuilder.schema import Attachment, ConversationReference

from bot.teams.activities import CARD_CONTENT_TYPE
from bot.teams.admission import Mode, service_url_problem

log = logging.getLogger(__name__)

# 408/412/5xx: the connector or Teams behind it had a moment (notes: retry 412/502/503/504).
TRANSIENT_STATUSES = frozenset({408, 412, 500, 502, 503, 504})
# The connector's own default is 100 s per request; a stalled attempt should free the
# conversation's queue long before that.
ATTEMPT_TIMEOUT_S = 30.0
_ERROR_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,63}")


class OutboundError(Exception):
    """One send attempt failed; `str()` is safe to log and to show."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return self.message


class Throttled(OutboundError):
    """HTTP 429: Teams asks us to slow down; `retry_after` in seconds, None if not given."""

    def __init__(self, retry_after: float | None) -> None:
        hint = "" if retry_after is None else f", retry after {retry_after:g} s"
        super().__init__(f"throttled by Teams (HTTP 429{hint})", 429)
        self.retry_after = retry_after


class Transient(OutboundError):
    """Worth another attempt after a backoff; `status` None means no HTTP answer at all."""

    def __init__(self, status: int | None, message: str = "") -> None:
        what = message or (f"HTTP {status}" if status else "no answer")
        super().__init__(f"temporary failure sending to Teams ({what})", status)


class Permanent(OutboundError):
    """Retrying cannot help: the bot is not in the conversation, the message is gone..."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message, status)


class ChatSender(Protocol):
    """Sends to one conversation, named by its stored reference (JSON); one attempt per call.

    Every failure is an OutboundError; retrying is the caller's business (OutboundQueue).
    """

    async def post(self, ref_json: str, text: str, card: dict[str, Any] | None) -> str:
        """Post a new message; returns the activity id Teams assigned (to edit it later)."""
        ...

    async def update(
        self, ref_json: str, activity_id: str, text: str, card: dict[str, Any] | None
    ) -> None:
        """Replace message `activity_id` (text and card) for everyone, in place."""
        ...


def conversation_id_of(ref_json: str) -> str:
    """The conversation id inside a stored reference; ValueError if it has none."""
    try:
        conversation_id = json.loads(ref_json)["conversation"]["id"]
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError("not a stored conversation reference (no conversation.id)") from exc
    if not isinstance(conversation_id, str) or not conversation_id:
        raise ValueError("not a stored conversation reference (no conversation.id)")
    return conversation_id


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date); None if unusable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds) if seconds == seconds else None  # NaN is unusable


def error_code(payload: object) -> str | None:
    """The connector's error code from its JSON answer, if it is a short identifier.

    The body is {"error": {"code": "ConversationNotFound", "message": ...}}; only the code
    is kept, never the free-text message.
    """
    error = payload.get("error") if isinstance(payload, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) and _ERROR_CODE.fullmatch(code) else None


def translate(exc: BaseException) -> OutboundError:
    """Our OutboundError for whatever failed around a send.

    The connector client (bot/teams/connector.py) raises OutboundErrors itself; anything
    else comes from botbuilder around it.
    """
    if isinstance(exc, OutboundError):
        return exc
    if isinstance(exc, ConnectionError | TimeoutError):
        return Transient(None, f"cannot reach the connector: {type(exc).__name__}")
    # A bug or a misconfiguration (e.g. botbuilder's "Invalid app_id"): retrying won't fix it.
    return Permanent(None, f"could not send to Teams ({type(exc).__name__})")


def _message(text: str, card: dict[str, Any] | None) -> Any:
    """A text message, or a card alone with `text` as its summary.

    Not text + card in one activity, which Teams would take: the Agents Playground splits
    that into two messages and answers 202 without an id (so the card cannot be edited),
    and refuses a PUT of it (400). A card alone works in both.
    """
    if card is None:
        return MessageFactory.text(text)
    activity = MessageFactory.attachment(Attachment(content_type=CARD_CONTENT_TYPE, content=card))
    activity.summary = text or None  # shown where the card cannot be
    return activity


class TeamsSender:
    """ChatSender over botbuilder's CloudAdapter (the one TeamsEndpoint serves).

    `app_id` is the bot's app id, None in local mode: CloudAdapter then sends without a
    token (the Agents Playground and the fake connector take that); with an app id set it
    must be the real one, or botbuilder refuses with "Invalid app_id". A stored reference
    whose serviceUrl `mode` does not allow (written by an older release, or by hand) is
    never posted to: the bot would hand its token, and the message, to that host.
    """

    def __init__(
        self,
        adapter: CloudAdapter,
        app_id: str | None,
        *,
        mode: Mode,
        attempt_timeout_s: float = ATTEMPT_TIMEOUT_S,
    ) -> None:
        self._adapter = adapter
        self._app_id = app_id or ""
        self._mode = mode
        self._timeout = attempt_timeout_s

    async def post(self, ref_json: str, text: str, card: dict[str, Any] | None) -> str:
        activity = _message(text, card)
        response = await self._in_turn(ref_json, lambda turn: turn.send_activity(activity))
        activity_id = getattr(response, "id", None)
        if not isinstance(activity_id, str) or not activity_id:
            # Posted, but it cannot be edited later; not retried, as that would post twice.
            raise Permanent(None, "Teams accepted the message but returned no activity id")
        return activity_id

    async def update(
        self, ref_json: str, activity_id: str, text: str, card: dict[str, Any] | None
    ) -> None:
        activity = _message(text, card)
        activity.id = activity_id
        await self._in_turn(ref_json, lambda turn: turn.update_activity(activity))

    async def _in_turn(
        self, ref_json: str, operation: Callable[[TurnContext], Awaitable[Any]]
    ) -> Any:
        """Run `operation` in a proactive turn; its result, or a translated OutboundError."""
        try:
            reference = ConversationReference().deserialize(json.loads(ref_json))
        except (ValueError, TypeError, AttributeError) as exc:
            raise Permanent(None, "the stored conversation reference is not valid") from exc
        problem = service_url_problem(reference.service_url, self._mode)
        if problem is not None:
            raise Permanent(None, f"not sent: the stored conversation's {problem}")
        results: list[Any] = []
        errors: list[Exception] = []

        async def callback(turn_context: TurnContext) -> None:
            try:
                results.append(await operation(turn_context))
            except Exception as exc:  # see the module docstring: on_turn_error would apologise
                errors.append(exc)

        try:
            # A backstop only: each request times out itself (bot/teams/connector.py).
            await asyncio.wait_for(
                self._adapter.continue_conversation(reference, callback, self._app_id),
                self._timeout + 5,
            )
        except TimeoutError as exc:
            raise Transient(None, f"no answer within {self._timeout:g} s") from exc
        except Exception as exc:
            raise translate(exc) from exc
        if errors:
            raise translate(errors[0]) from errors[0]
        return results[0] if results else None
