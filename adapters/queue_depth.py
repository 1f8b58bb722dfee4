"""Read the Worker's queue depth: an HTTP GET whose JSON answer holds a number.

Where the MCMS Worker exposes its backlog (a status endpoint, a small exporter), the
watcher reads it for the "Worker queue depth" panel (playbook §7). A missing endpoint, a
non-JSON answer or a missing or non-numeric field is a value with the reason, never a raise.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx

from adapters.tls import client_context


@dataclass(frozen=True)
class QueueDepth:
    value: float | None
    error: str | None = None


def _at(document: Any, json_path: str) -> Any:
    for key in json_path.split("."):
        if not isinstance(document, dict) or key not in document:
            return None
        document = document[key]
    return document


async def read_queue_depth(
    url: str,
    json_path: str,
    timeout_s: float,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> QueueDepth:
    try:
        async with (
            asyncio.timeout(timeout_s),
            httpx.AsyncClient(
                transport=transport, trust_env=False, verify=client_context()
            ) as client,
        ):
            response = await client.get(url, timeout=timeout_s)
    except (TimeoutError, httpx.TimeoutException):
        return QueueDepth(None, f"no answer within {timeout_s:g} s")
    except httpx.HTTPError as exc:
        return QueueDepth(None, f"cannot connect ({type(exc).__name__})")
    if response.status_code != 200:
        return QueueDepth(None, f"HTTP {response.status_code}")
    try:
        value = _at(response.json(), json_path)
    except ValueError:
        return QueueDepth(None, "the answer is not JSON")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return QueueDepth(None, f"no number at {json_path!r}")
    return QueueDepth(float(value))
