"""OpsGenie through its Alerts API v2: create an alert when one is raised, close it by alias.

Create: `POST {base}/v2/alerts` with the alias (environment + incident: OpsGenie dedupes on
it, so a retried create never makes two alerts), message (≤130 chars), description,
priority, tags and details. Close: `POST {base}/v2/alerts/{alias}/close?identifierType=alias`.
Both authenticate with `Authorization: GenieKey <key>` and answer 202 once accepted.
The key is read by the caller at the moment of use; without one nothing is sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

import httpx

from adapters.alert_sinks import AlertNotice, Delivery, SinkPolicy, post_json

MESSAGE_LIMIT = 130
DESCRIPTION_LIMIT = 15000
SOURCE = "mcms-bot"


class OpsGenieSink:
    name = "opsgenie"

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        key_env: str,
        priority: str,
        tags: Sequence[str],
        policy: SinkPolicy,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._key = api_key
        self._key_env = key_env
        self._priority = priority
        self._tags = list(tags)
        self._policy = policy
        self._transport = transport

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"GenieKey {self._key}"}

    def _no_key(self) -> Delivery:
        return Delivery(False, 0, None, f"no API key: {self._key_env} is not set")

    async def raised(self, notice: AlertNotice) -> Delivery:
        if not self._key:
            return self._no_key()
        body = {
            "message": notice.message[:MESSAGE_LIMIT],
            "alias": notice.alias,
            "description": notice.description[:DESCRIPTION_LIMIT],
            "priority": notice.priority or self._priority,
            "tags": [*self._tags, notice.environment],
            "details": dict(notice.details),
            "entity": notice.environment,
            "source": SOURCE,
        }
        return await post_json(
            f"{self._base}/v2/alerts",
            body,
            self._headers(),
            self._policy,
            transport=self._transport,
        )

    async def resolved(self, notice: AlertNotice) -> Delivery:
        if not self._key:
            return self._no_key()
        url = f"{self._base}/v2/alerts/{quote(notice.alias, safe='')}/close?identifierType=alias"
        body = {"source": SOURCE, "user": SOURCE, "note": notice.message[:MESSAGE_LIMIT]}
        return await post_json(url, body, self._headers(), self._policy, transport=self._transport)
