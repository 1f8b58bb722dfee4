"""A generic JSON webhook as an alert target: the same events OpsGenie gets, as plain JSON.

Body: {"event": "raised" | "resolved", "alias", "environment", "message", "description",
"details"}; `Authorization: Bearer <token>` when a token is configured. Any 2xx counts.
"""

from __future__ import annotations

import httpx

from adapters.alert_sinks import AlertNotice, Delivery, SinkPolicy, post_json


class WebhookSink:
    name = "webhook"

    def __init__(
        self,
        url: str,
        token: str | None,
        policy: SinkPolicy,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._url = url
        self._token = token
        self._policy = policy
        self._transport = transport

    async def _send(self, event: str, notice: AlertNotice) -> Delivery:
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        body = {
            "event": event,
            "alias": notice.alias,
            "environment": notice.environment,
            "message": notice.message,
            "description": notice.description,
            "details": dict(notice.details),
        }
        return await post_json(self._url, body, headers, self._policy, transport=self._transport)

    async def raised(self, notice: AlertNotice) -> Delivery:
        return await self._send("raised", notice)

    async def resolved(self, notice: AlertNotice) -> Delivery:
        return await self._send("resolved", notice)
