"""Where alerts go besides Teams: a small Protocol, and the retrying JSON POST they share.

Every outcome is a value (`Delivery`): a sink never raises for a refused, failing or hanging
endpoint — the caller logs and audits it and carries on. Retried: timeouts, connection
errors, 408, 429 (its Retry-After honoured, capped) and 5xx, with exponential backoff and
jitter, `attempts` times at most. Not retried: any other 4xx (a wrong key stays wrong).
Reasons are our own words plus the HTTP status, never a library's exception text.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from adapters.tls import client_context

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class SinkPolicy:
    """Bounds of one delivery: attempts, each with its own timeout, backoff between them."""

    attempts: int = 4
    timeout_s: float = 10.0
    backoff_s: float = 2.0
    backoff_cap_s: float = 60.0

    def delay(self, failures: int, rnd: float) -> float:
        ceiling = min(self.backoff_cap_s, self.backoff_s * 2.0 ** min(failures - 1, 16))
        return ceiling / 2 + ceiling / 2 * rnd


@dataclass(frozen=True)
class Delivery:
    """What happened to one event: delivered or not, after how many attempts, and why."""

    ok: bool
    attempts: int
    status: int | None = None
    reason: str = ""

    @property
    def worth_resending(self) -> bool:
        """Failed for a reason that may pass (no answer, 408/429/5xx), not a refusal."""
        return (
            not self.ok
            and self.attempts > 0
            and (self.status is None or self.status in RETRY_STATUSES)
        )


@dataclass(frozen=True)
class AlertNotice:
    """One alert event, as every sink gets it."""

    environment: str
    alias: str  # stable per incident: environment + alert id, the dedupe key
    message: str  # one line
    description: str = ""
    details: Mapping[str, str] = field(default_factory=dict)
    priority: str | None = None  # overrides the sink's configured priority (a failed run)


class AlertSink(Protocol):
    """An outside target of alerts; both methods return a Delivery, never raise."""

    name: str

    async def raised(self, notice: AlertNotice) -> Delivery:
        """Open the incident (OpsGenie: create; webhook: event "raised")."""
        ...

    async def resolved(self, notice: AlertNotice) -> Delivery:
        """Close the incident opened with the same alias."""
        ...


def _retry_after(response: httpx.Response, cap: float) -> float | None:
    try:
        return min(cap, max(0.0, float(response.headers.get("Retry-After", ""))))
    except ValueError:
        return None


async def post_json(
    url: str,
    payload: Mapping[str, Any],
    headers: Mapping[str, str],
    policy: SinkPolicy,
    *,
    sleep: Sleep = asyncio.sleep,
    rnd: Callable[[], float] = random.random,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Delivery:
    """POST `payload` until a 2xx, a non-retryable answer, or `policy.attempts` run out."""
    reason, status = "", None
    async with httpx.AsyncClient(
        transport=transport, follow_redirects=False, verify=client_context()
    ) as client:
        for attempt in range(1, policy.attempts + 1):
            wait: float | None = None
            try:
                # Bounds the whole exchange: a server that trickles bytes cannot stretch it.
                async with asyncio.timeout(policy.timeout_s):
                    response = await client.post(
                        url, json=dict(payload), headers=dict(headers), timeout=policy.timeout_s
                    )
            except (TimeoutError, httpx.TimeoutException):
                reason, status = f"no answer within {policy.timeout_s:g} s", None
            except httpx.HTTPError as exc:
                reason, status = f"cannot connect ({type(exc).__name__})", None
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return Delivery(True, attempt, status)
                reason = f"HTTP {status}"
                if status not in RETRY_STATUSES:
                    return Delivery(False, attempt, status, f"refused: {reason}")
                if status == 429:
                    wait = _retry_after(response, policy.backoff_cap_s)
            if attempt < policy.attempts:
                await sleep(wait if wait is not None else policy.delay(attempt, rnd()))
    return Delivery(
        False, policy.attempts, status, f"gave up after {policy.attempts} attempts: {reason}"
    )
