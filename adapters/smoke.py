"""HTTP smoke probes, as the playbook's run-smoke.ps1 runs them.

All checks of one run go out concurrently, each with its own timeout. A probe never raises:
a refused connection, a timeout or a broken reply is a result with status -1 (the playbook's
convention for "no HTTP answer"), so "all checks refused" can be read as "service stopped".
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from adapters.tls import client_context

NO_ANSWER = -1


@dataclass(frozen=True)
class SmokeTarget:
    """One check to probe: a GET of `url` that passes when the status is in `expect`."""

    name: str
    url: str
    expect: tuple[int, ...]
    timeout_s: float


@dataclass(frozen=True)
class CheckResult:
    name: str
    url: str
    status: int  # HTTP status, or NO_ANSWER (-1)
    expect: tuple[int, ...]
    latency_ms: int
    error: str | None = None  # short cause when status is NO_ANSWER: refused, timeout, ...

    @property
    def passed(self) -> bool:
        return self.status in self.expect


def _cause(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if _untrusted_certificate(exc):
        return "certificate not trusted"
    if isinstance(exc, httpx.ConnectError):
        return "connection refused"
    if isinstance(exc, httpx.RemoteProtocolError | httpx.DecodingError):
        return "malformed HTTP reply"
    return exc.__class__.__name__


def _untrusted_certificate(exc: BaseException) -> bool:
    """Whether the TLS handshake failed on the certificate (httpx wraps it in ConnectError)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


async def _probe(client: httpx.AsyncClient, target: SmokeTarget) -> CheckResult:
    started = time.perf_counter()
    status, error = NO_ANSWER, None
    try:
        # The timeout bounds the whole exchange, not each socket phase: a server that
        # trickles bytes must not stretch one check past its budget.
        async with asyncio.timeout(target.timeout_s):
            response = await client.get(target.url, timeout=target.timeout_s)
        status = response.status_code
    except TimeoutError:
        error = "timeout"
    except httpx.HTTPError as exc:
        error = _cause(exc)
    latency = int((time.perf_counter() - started) * 1000)
    return CheckResult(target.name, target.url, status, target.expect, latency, error)


async def run_checks(targets: Sequence[SmokeTarget]) -> list[CheckResult]:
    """Probe every target concurrently; results come back in the targets' order."""
    # Smoke must see what a client sees: no redirects followed, no proxy from the environment,
    # and the certificates the OS trusts (an internal CA's site passes, as in a browser).
    async with httpx.AsyncClient(
        follow_redirects=False, trust_env=False, verify=client_context()
    ) as client:
        return list(await asyncio.gather(*(_probe(client, t) for t in targets)))
