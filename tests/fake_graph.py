"""A fake Microsoft Entra token endpoint and Microsoft Graph on loopback.

`POST /{tenant}/oauth2/v2.0/token` (client credentials) hands out numbered tokens for the
one known client; `POST /v1.0/directoryObjects/{id}/checkMemberGroups` answers which of the
asked groups the user is in, for a valid current token. Every request is recorded, and
`fail_next(status)` makes the next Graph call answer that status.

Use: `pytest_plugins = ["tests.fake_graph"]`, then the `fake_graph` fixture.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

CLIENT_ID = "11111111-2222-3333-4444-555555555555"
CLIENT_SECRET = "graph-test-secret"
TENANT = "00000000-0000-0000-0000-000000000001"


@dataclass
class FakeGraph:
    members: dict[str, set[str]] = field(default_factory=dict)  # group id → user ids
    token_requests: int = 0
    graph_requests: list[tuple[str, list[str], str]] = field(default_factory=list)
    url: str = ""
    valid_tokens: set[str] = field(default_factory=set)
    _failures: list[int] = field(default_factory=list)
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _runner: web.AppRunner | None = None

    def fail_next(self, status: int, count: int = 1) -> None:
        self._failures += [status] * count

    def revoke_tokens(self) -> None:
        self.valid_tokens.clear()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        app.router.add_post("/v1.0/directoryObjects/{user}/checkMemberGroups", self._check)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        form = await request.post()
        ok = (
            request.match_info["tenant"] == TENANT
            and form.get("grant_type") == "client_credentials"
            and form.get("client_id") == CLIENT_ID
            and form.get("client_secret") == CLIENT_SECRET
            and str(form.get("scope", "")).endswith("/.default")
        )
        if not ok:
            return web.json_response({"error": "invalid_client"}, status=401)
        token = f"graph-token-{next(self._numbers)}"
        self.valid_tokens.add(token)
        return web.json_response({"access_token": token, "expires_in": 3599})

    async def _check(self, request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        body = await request.json()
        user = request.match_info["user"].lower()
        self.graph_requests.append((user, list(body.get("groupIds", [])), token))
        if self._failures:
            return web.json_response({"error": {"code": "x"}}, status=self._failures.pop(0))
        if token not in self.valid_tokens:
            return web.json_response({"error": {"code": "InvalidAuthenticationToken"}}, status=401)
        if user.startswith("ffffffff"):
            return web.json_response({"error": {"code": "Request_ResourceNotFound"}}, status=404)
        found = [g for g in body["groupIds"] if user in self.members.get(g.lower(), set())]
        return web.json_response({"value": found})


@pytest.fixture
async def fake_graph() -> AsyncIterator[FakeGraph]:
    graph = FakeGraph()
    await graph.start()
    try:
        yield graph
    finally:
        await graph.close()
