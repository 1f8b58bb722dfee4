"""Who may come in: the channel, the tenant and the serviceUrl of an inbound activity.

Checked after the token (bot/teams/auth.py) and before the turn, so a refused activity
reaches no command, stores no conversation reference and gets no reply:

- only `channelId == "msteams"`: an Azure Bot also has Web Chat and Direct Line on by
  default, whose tokens pass the same validation, and Direct Line lets its client write
  `channelData`;
- the tenant is `conversation.tenantId`; when `channelData.tenant.id` is there too it must
  be the same tenant, or the activity is refused (one of them was written by someone else);
- the serviceUrl — where the bot posts its replies, and later its proactive messages — is
  https in teams mode (botbuilder also checks it equals the token's `serviceurl` claim), and
  loopback in local mode (nobody else has a token-less connector to offer).

All pure: the caller decides what a refusal costs (bot/teams/endpoint.py: 403, audited).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from commands.config import is_loopback_host

Mode = Literal["teams", "local"]
TEAMS_CHANNEL = "msteams"
# Long enough for any GUID or channel name; anything longer is refused, not truncated.
_MAX_ID = 128


@dataclass(frozen=True)
class Refusal:
    """Why an activity is not let in: `code` for the audit, `message` for the HTTP answer."""

    code: Literal["channel", "tenant-missing", "tenant-mismatch", "service-url"]
    message: str


def service_url_problem(url: object, mode: Mode) -> str | None:
    """Why the bot must not post to `url` in `mode`, or None."""
    if not isinstance(url, str) or not url:
        return "the activity has no serviceUrl"
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return "the serviceUrl is not a URL"
    if parts.username is not None or parts.password is not None:
        return "the serviceUrl carries credentials"
    if mode == "teams":
        if parts.scheme != "https" or not host:
            return "in teams mode the serviceUrl must be https"
        return None
    if parts.scheme not in ("http", "https") or not is_loopback_host(host):
        return "in local mode the serviceUrl must be a loopback address (127.0.0.1, ::1, localhost)"
    return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _conversation_tenants(activity: Any) -> set[str]:
    # botbuilder 4.17.1 maps ConversationAccount.tenant_id to the key "tenantID", so the
    # "tenantId" Teams sends lands in additional_properties; either spelling is read, and
    # two different values are a mismatch, not a choice.
    conversation = getattr(activity, "conversation", None)
    extra = getattr(conversation, "additional_properties", None)
    values = {
        _text(getattr(conversation, "tenant_id", None)),
        _text(extra.get("tenantId")) if isinstance(extra, dict) else None,
    }
    return {v for v in values if v is not None}


def conversation_tenant(activity: Any) -> str | None:
    """The tenant Teams says the conversation belongs to (`conversation.tenantId`)."""
    tenants = _conversation_tenants(activity)
    return next(iter(tenants)) if len(tenants) == 1 else None


def channel_data_tenant(activity: Any) -> str | None:
    data = getattr(activity, "channel_data", None)
    tenant = data.get("tenant") if isinstance(data, dict) else None
    return _text(tenant.get("id")) if isinstance(tenant, dict) else None


def admission_refusal(activity: Any, mode: Mode) -> Refusal | None:
    """Why `activity` must not be let in, or None (see the module docstring)."""
    channel = getattr(activity, "channel_id", None)
    if channel != TEAMS_CHANNEL:
        shown = channel[:40] if isinstance(channel, str) else type(channel).__name__
        return Refusal("channel", f"only Microsoft Teams is served (channelId {shown!r})")
    tenants = _conversation_tenants(activity)
    if not tenants or any(len(t) > _MAX_ID for t in tenants):
        return Refusal("tenant-missing", "the activity names no conversation.tenantId")
    claimed = channel_data_tenant(activity)
    if len({t.lower() for t in tenants} | ({claimed.lower()} if claimed else set())) > 1:
        return Refusal(
            "tenant-mismatch",
            "conversation.tenantId and channelData.tenant.id name different tenants",
        )
    problem = service_url_problem(getattr(activity, "service_url", None), mode)
    if problem is not None:
        return Refusal("service-url", problem)
    return None
