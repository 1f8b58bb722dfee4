"""A fake OpsGenie (and generic webhook receiver) on loopback: records every request.

`mode` decides the answer: "ok" → 202 as OpsGenie answers, "error" → 500, "hang" → no
answer for `hang_s` seconds (then 202), "unauthorized" → 401. Tests read `calls`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
from aiohttp import web

Mode = Literal["ok", "error", "hang", "unauthorized"]


@dataclass(frozen=True)
class SinkCall:
    method: str
    path: str  # as sent, percent-encoded
    query: dict[str, str]
    authorization: str | None
    body: dict[str, Any]


@dataclass
class FakeOpsGenie:
    mode: Mode = "ok"
    hang_s: float = 3.0
    calls: list[SinkCall] = field(default_factory=list)
    url: str = ""
    _changed: asyncio.Condition | None = None
    _runner: web.AppRunner | None = None

    def creates(self) -> list[SinkCall]:
        return [c for c in self.calls if c.path == "/v2/alerts"]

    def closes(self) -> list[SinkCall]:
        return [c for c in self.calls if c.path.endswith("/close")]

    async def wait_for(self, done: Callable[[list[SinkCall]], bool], timeout: float = 5.0) -> None:
        assert self._changed is not None
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: done(self.calls))

    async def start(self) -> None:
        self._changed = asyncio.Condition()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        call = SinkCall(
            request.method,
            request.raw_path.split("?", 1)[0],
            dict(request.query),
            request.headers.get("Authorization"),
            json.loads(raw) if raw else {},
        )
        assert self._changed is not None
        async with self._changed:
            self.calls.append(call)
            self._changed.notify_all()
        if self.mode == "error":
            return web.json_response({"message": "Internal Server Error"}, status=500)
        if self.mode == "unauthorized":
            return web.json_response({"message": "Key format is not valid!"}, status=401)
        if self.mode == "hang":
            await asyncio.sleep(self.hang_s)
        return web.json_response(
            {"result": "Request will be processed", "took": 0.01, "requestId": "fake"}, status=202
        )


@pytest.fixture
async def fake_opsgenie() -> AsyncIterator[FakeOpsGenie]:
    server = FakeOpsGenie()
    await server.start()
    try:
        yield server
    finally:
        await server.close()
