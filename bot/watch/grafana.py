"""POST /api/alerts: Grafana's alerting webhook in, a card in the environment's alert chat.

Only a request carrying `Authorization: Bearer <token>`, with the token from the environment
variable the config names (alerts.grafana.token_env), is read; anything else — no header,
another scheme, a wrong token, or no token configured at all — is 401 and nothing is
posted. The comparison is constant-time. A payload that is not Grafana's is 400; one whose
alerts name an unknown (or no) environment is 422 with a message saying which and what to
label them with, and nothing of it is posted. Accepted alerts are audited and their cards
queued on the outbound queue (202): Grafana is not kept waiting for Teams' pacing.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from aiohttp import web

from bot.watch.alerts import Alerter
from commands.config import secret
from commands.context import Services
from commands.grafana_alert import parse, render_grafana_card, route, summary_of

log = logging.getLogger(__name__)


def _problem(status: int, detail: str) -> web.Response:
    return web.json_response({"error": detail}, status=status)


class GrafanaWebhook:
    def __init__(self, services: Services, alerter: Alerter) -> None:
        self._services = services
        self._alerter = alerter

    def _authorized(self, header: str | None) -> bool:
        expected = secret(self._services.config.alerts.grafana.token_env)
        if expected is None:
            log.warning(
                "POST /api/alerts refused: %s is not set, so no Grafana token can match",
                self._services.config.alerts.grafana.token_env,
            )
            return False
        scheme, _, given = (header or "").partition(" ")
        # compare_digest on bytes: constant time whatever the given token holds.
        ok = hmac.compare_digest(given.strip().encode(), expected.encode())
        return scheme.lower() == "bearer" and ok

    async def handle(self, request: web.Request) -> web.Response:
        if not self._authorized(request.headers.get("Authorization")):
            return _problem(401, "a valid `Authorization: Bearer <token>` header is required")
        try:
            body: Any = await request.json()
        except (ValueError, UnicodeDecodeError):
            return _problem(400, "the body is not JSON")
        payload = parse(body)
        if isinstance(payload, str):
            return _problem(400, payload)
        batches = route(payload, self._services.config)
        if isinstance(batches, str):
            log.warning("Grafana alert refused: %s", batches)
            return _problem(422, batches)
        await self._services.audit.append(
            "GrafanaAlert",
            status=payload.status,
            detail={"alerts": dict(summary_of(batches)), "title": (payload.title or "")[:200]},
        )
        queued = []
        for batch in batches:
            text, card = render_grafana_card(batch, self._services.config.tz)
            targets = await self._alerter.conversations(batch.environment)
            if not targets:
                log.warning(
                    "Grafana alert for %s not posted: no conversation subscribed", batch.environment
                )
            for conversation_id in targets:
                task = await self._alerter.enqueue(conversation_id, text, card)
                if task is not None:
                    self._alerter.spawn(self._alerter.delivered(conversation_id, task), "grafana")
                    queued.append(
                        {"environment": batch.environment, "conversation": conversation_id}
                    )
        answer: dict[str, Any] = {"queued": queued}
        if not queued:
            envs = ", ".join(sorted({b.environment for b in batches}))
            answer["note"] = (
                f"accepted, but no conversation gets {envs} alerts: `subscribe ENVIRONMENT` in "
                "Teams or set alerts.default_conversation_id"
            )
        return web.json_response(answer, status=202)
