"""Helpers for tests of a lab router (not a pytest plugin): point a raw demo config's
`[pairs.*]` at a running lab; keep a request in flight through the router."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from lab.core import Lab


def point_pairs_at_lab(raw: dict[str, Any], lab: Lab) -> None:
    """Point the `[pairs.*]` of a raw demo config at this lab's router (ephemeral ports)."""
    for name, pair in raw.get("pairs", {}).items():
        router = lab.router_for(name)
        pair["router"]["host"]["name"] = router
        pair["router"]["host"]["winrm_url"] = lab.winrm_url(router)
        pair["router"]["public_url"] = lab.public_url(router)
        # Short deadlines keep failure tests fast; the lab answers in milliseconds.
        pair["router"]["step_timeout_s"] = 5
        pair["router"]["drain_deadline_s"] = 5


@asynccontextmanager
async def request_in_flight(
    lab: Lab, router: str, server: str, path: str = "/health"
) -> AsyncIterator[asyncio.Task[int]]:
    """A GET through the router, yielded once the router counts it in flight to `server`
    (give that server's check a `slow` fault first); the task ends with the status."""

    async def get(session: aiohttp.ClientSession) -> int:
        async with session.get(lab.public_url(router) + path) as response:
            await response.read()
            return response.status

    def in_flight() -> int:
        servers = {s["address"]: s for s in lab.farm(router)["servers"]}
        return int(servers[server]["current_requests"])

    async with aiohttp.ClientSession() as session:
        task = asyncio.create_task(get(session))
        deadline = time.monotonic() + 5
        while not in_flight():
            if time.monotonic() > deadline:
                raise AssertionError(f"no request reached {server} through {router}")
            await asyncio.sleep(0.01)
        try:
            yield task
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
