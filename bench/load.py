"""A steady HTTP load on one loopback URL: what users would have seen during a change.

Open loop, like real users: request i leaves at start + i / rate whether or not the earlier
ones were answered, so an outage shows up as failures and a gap, not as a slower client.
Bounded by `count`; loopback only (tests and benchmarks never touch another address).
Every request is a new connection, so a closed port is seen at once as "refused".

    result = await run_load("http://127.0.0.1:18080/health", rate=50, count=500)
    result.failed, result.longest_gap_s, result.served_by
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Final
from urllib.parse import urlsplit

import aiohttp

_LOOPBACK_NAMES: Final = frozenset({"localhost"})


@dataclass
class LoadResult:
    """What the load saw; a request counts as ok on a 2xx answer only."""

    sent: int = 0
    ok: int = 0
    errors_5xx: int = 0
    other_status: int = 0  # answered, but neither 2xx nor 5xx
    refused: int = 0  # connection refused: nothing listened
    reset: int = 0  # connection reset or closed without an answer
    timed_out: int = 0
    longest_gap_s: float = 0.0  # longest time without a successful answer
    duration_s: float = 0.0
    served_by: Counter[str] = field(default_factory=Counter)  # the router's X-Served-By
    max_in_flight: int = 0
    # The change run under load (`started`): how long it took, and whether the load still
    # ran when it ended (else the figures do not cover all of it).
    change_s: float | None = None
    change_within_load: bool = True

    @property
    def failed(self) -> int:
        return self.errors_5xx + self.other_status + self.refused + self.reset + self.timed_out


def check_loopback(url: str) -> None:
    """Refuse any URL that is not on this machine: a load test must never leave it."""
    host = urlsplit(url).hostname or ""
    if host in _LOOPBACK_NAMES:
        return
    try:
        if ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ValueError(f"load is only sent to loopback (127.0.0.1, ::1), not to {host!r}")


async def run_load(
    url: str,
    *,
    rate: float = 50.0,
    count: int,
    timeout_s: float = 5.0,
    started: Callable[[], Awaitable[None]] | None = None,
) -> LoadResult:
    """Send `count` GETs to `url` at `rate` per second; `started` is awaited after the first
    `rate` requests (one second of steady load), so a change begins under load."""
    check_loopback(url)
    if rate <= 0 or count <= 0:
        raise ValueError("rate and count must be positive")
    result = LoadResult()
    successes: list[float] = []
    in_flight = 0
    change_ended = 0.0

    async def change() -> None:
        nonlocal change_ended
        begun = time.monotonic()
        assert started is not None
        await started()
        change_ended = time.monotonic()
        result.change_s = change_ended - begun

    async def one(session: aiohttp.ClientSession) -> None:
        nonlocal in_flight
        in_flight += 1
        result.max_in_flight = max(result.max_in_flight, in_flight)
        try:
            async with session.get(url) as response:
                await response.read()
                served = response.headers.get("X-Served-By")
                if served:
                    result.served_by[served] += 1
                if 200 <= response.status < 300:
                    result.ok += 1
                    successes.append(time.monotonic())
                elif response.status >= 500:
                    result.errors_5xx += 1
                else:
                    result.other_status += 1
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, ConnectionRefusedError):
                result.refused += 1
            else:
                result.reset += 1
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError):
            result.reset += 1
        except TimeoutError:
            result.timed_out += 1
        finally:
            in_flight -= 1

    connector = aiohttp.TCPConnector(force_close=True, limit=0)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        begin = time.monotonic()
        tasks: list[asyncio.Task[None]] = []
        changing: asyncio.Task[None] | None = None
        for i in range(count):
            delay = begin + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session)))
            result.sent += 1
            if started is not None and i + 1 == min(count, int(rate)):
                changing = asyncio.create_task(change())
        await asyncio.gather(*tasks)
        end = time.monotonic()
        if changing is not None:
            await changing
            result.change_within_load = change_ended <= end
    result.duration_s = end - begin
    marks = [begin, *successes, end]
    result.longest_gap_s = max(b - a for a, b in itertools.pairwise(marks))
    return result
