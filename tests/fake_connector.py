"""An in-process fake Bot Connector: what Teams' serviceUrl would be, on loopback.

The bot's replies, edits and proactive posts land here and are recorded in arrival order,
so tests assert on the wire (method, path, JSON body) instead of mocking botbuilder.
`fail_next()` makes the next N activity calls answer 429 (with Retry-After) or 5xx, and
`fail_for()` makes every activity call fail for a while (Teams throttling or down for 30 s),
which is how the outbound retry logic is proven. Every Adaptive Card the bot sends is
checked against the Adaptive Card 1.5 schema (tests/card_schema.py) once the test is over
(not while the bot waits for an answer); the fixture fails the test that made the bot send
an invalid one.

Use: `pytest_plugins = ["tests.fake_connector"]` in a test module, then take the
`fake_connector` fixture and point activities' serviceUrl at `fake_connector.url`.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import ssl
import warnings
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web

from tests.card_schema import card_problems

if TYPE_CHECKING:
    from tests.tls_fixtures import PrivateCA

ADAPTIVE = "application/vnd.microsoft.card.adaptive"


@dataclass(frozen=True)
class ConnectorCall:
    """One request the bot made to the connector, and what the fake answered."""

    method: str
    path: str  # as sent (percent-encoded), e.g. /v3/conversations/a%3Bb/activities/1
    conversation_id: str | None  # decoded
    activity_id: str | None  # decoded; the replyToId for replies, the edited id for PUT
    body: dict[str, Any]
    authorization: str | None
    status: int  # what the fake answered
    assigned_id: str | None = None  # the id the fake answered with (a new message's id)
    peer: str | None = None  # the client's address and port: one per connection

    @property
    def text(self) -> str:
        """What a person reads first: the text, or a card message's summary."""
        return str(self.body.get("text") or self.body.get("summary") or "")


@dataclass
class _Fault:
    remaining: int
    status: int
    retry_after: str | None


@dataclass
class FakeConnector:
    """Records every call; answers {"id": ...} unless told to fail the next ones."""

    calls: list[ConnectorCall] = field(default_factory=list)
    url: str = ""
    # (path, card) of every Adaptive Card sent, for `invalid_cards()`.
    sent_cards: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    # Called with each call as it is recorded (bench/chat_roundtrip.py times replies so).
    listeners: list[Callable[[ConnectorCall], None]] = field(default_factory=list)
    _faults: list[_Fault] = field(default_factory=list)
    _outage: tuple[float, tuple[int, ...], str | None] | None = None  # until, statuses, Retry-After
    _outage_calls: int = 0
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _changed: asyncio.Condition | None = None
    _runner: web.AppRunner | None = None

    # -- what tests use -------------------------------------------------------------------

    @property
    def activities(self) -> list[ConnectorCall]:
        """Successful POST/PUT of activities (what the user would see), in order."""
        return [
            c
            for c in self.calls
            if c.method in ("POST", "PUT") and "/activities" in c.path and c.status < 300
        ]

    def invalid_cards(self) -> list[tuple[str, list[str]]]:
        """(path, why) for each card sent that the Adaptive Card 1.5 schema refuses."""
        seen: dict[str, list[str]] = {}
        out = []
        for path, card in self.sent_cards:
            key = json.dumps(card, sort_keys=True)
            if key not in seen:
                seen[key] = card_problems(card)
            if seen[key]:
                out.append((path, seen[key]))
        return out

    def fail_next(self, count: int, *, status: int = 429, retry_after: float | None = None) -> None:
        """Answer the next `count` activity calls with `status` (429 + Retry-After, 5xx...)."""
        header = None if retry_after is None else f"{retry_after:g}"
        self._faults.append(_Fault(count, status, header))

    def fail_for(
        self,
        seconds: float,
        statuses: tuple[int, ...] = (429, 503),
        retry_after: float | None = None,
    ) -> None:
        """Answer every activity call with `statuses` in turn for the next `seconds`."""
        until = asyncio.get_running_loop().time() + seconds
        header = None if retry_after is None else f"{retry_after:g}"
        self._outage = (until, statuses, header)

    @property
    def in_outage(self) -> bool:
        return self._outage is not None and asyncio.get_running_loop().time() < self._outage[0]

    async def wait_for_calls(self, count: int, timeout: float = 5.0) -> list[ConnectorCall]:
        """Wait until at least `count` calls were recorded (for work done after a turn)."""
        assert self._changed is not None, "connector not started"
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(self.calls) >= count), timeout
            )
        return list(self.calls)

    # -- server ---------------------------------------------------------------------------

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> None:
        """Listen on a free loopback port; over HTTPS with `ssl_context` (a server context)."""
        self._changed = asyncio.Condition()
        app = web.Application()
        if ssl_context is not None:
            app.on_response_prepare.append(_close_after)
        base = "/v3/conversations"
        app.router.add_post(base, self._create_conversation)
        app.router.add_post(base + "/{conversation_id}/activities", self._activity)
        app.router.add_post(base + "/{conversation_id}/activities/{activity_id}", self._activity)
        app.router.add_put(base + "/{conversation_id}/activities/{activity_id}", self._activity)
        app.router.add_delete(base + "/{conversation_id}/activities/{activity_id}", self._activity)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}/"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _next_fault(self) -> _Fault | None:
        if self.in_outage and self._outage is not None:
            _, statuses, header = self._outage
            self._outage_calls += 1
            return _Fault(1, statuses[self._outage_calls % len(statuses)], header)
        while self._faults and self._faults[0].remaining <= 0:
            self._faults.pop(0)
        if not self._faults:
            return None
        fault = self._faults[0]
        fault.remaining -= 1
        return fault

    async def _record(
        self, request: web.Request, status: int, assigned_id: str | None = None
    ) -> None:
        body: dict[str, Any] = {}
        if request.can_read_body:
            body = await request.json()
        for attachment in body.get("attachments") or []:
            if attachment.get("contentType") == ADAPTIVE:
                self.sent_cards.append((request.raw_path, attachment.get("content") or {}))
        assert self._changed is not None
        async with self._changed:
            call = ConnectorCall(
                method=request.method,
                path=request.raw_path,
                conversation_id=request.match_info.get("conversation_id"),
                activity_id=request.match_info.get("activity_id"),
                body=body,
                authorization=request.headers.get("Authorization"),
                status=status,
                assigned_id=assigned_id,
                peer=str(request.transport.get_extra_info("peername"))
                if request.transport
                else None,
            )
            self.calls.append(call)
            for listener in self.listeners:
                listener(call)
            self._changed.notify_all()

    async def _activity(self, request: web.Request) -> web.Response:
        fault = self._next_fault()
        if fault is not None:
            await self._record(request, fault.status)
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            error = {"error": {"code": "Throttled" if fault.status == 429 else "ServiceError"}}
            return web.json_response(error, status=fault.status, headers=headers)
        if request.method == "DELETE":
            await self._record(request, 200)
            return web.Response(status=200)
        # An edit keeps its id; a new message gets a fresh one, as the real connector does.
        new_id = request.match_info["activity_id"] if request.method == "PUT" else None
        assigned = new_id or f"fake-{next(self._ids)}"
        await self._record(request, 200, assigned)
        return web.json_response({"id": assigned})

    async def _create_conversation(self, request: web.Request) -> web.Response:
        await self._record(request, 200)
        n = next(self._ids)
        return web.json_response({"id": f"conv-{n}", "activityId": f"fake-{n}"})


async def _close_after(request: web.Request, response: web.StreamResponse) -> None:
    # botbuilder's requests sessions are never closed: with keep-alive their TLS sockets
    # linger until some later test's garbage collection warns about them. "Connection:
    # close" makes the client close each socket when its answer is read.
    response.force_close()
    response.headers["Connection"] = "close"


@pytest.fixture
async def tls_fake_connector(
    private_ca: PrivateCA, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[FakeConnector]:
    """The fake connector on https://127.0.0.1 (teams mode posts to https only), signed by
    the tests' private CA, which botbuilder's HTTP client (requests) is told to trust —
    REQUESTS_CA_BUNDLE, and SSL_CERT_FILE for when the OS store is injected."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(private_ca.ca_pem))
    monkeypatch.setenv("SSL_CERT_FILE", str(private_ca.ca_pem))
    connector = FakeConnector()
    await connector.start(private_ca.server_context())
    try:
        yield connector
    finally:
        await connector.close()
        # botbuilder's HTTP client (requests, one session per send) never closes its TLS
        # sockets; collect them here, so their ResourceWarning does not land in the next test.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


@pytest.fixture
async def fake_connector() -> AsyncIterator[FakeConnector]:
    """A started fake connector on 127.0.0.1 (random port), stopped after the test."""
    connector = FakeConnector()
    await connector.start()
    try:
        yield connector
    finally:
        await connector.close()
    assert connector.invalid_cards() == [], "the bot sent cards the Adaptive Card schema refuses"
