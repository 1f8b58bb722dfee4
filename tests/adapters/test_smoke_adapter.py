"""HTTP smoke probes against real loopback servers: statuses, -1 for no answer, own timeouts."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web

from adapters.smoke import NO_ANSWER, SmokeTarget, run_checks
from adapters.smoke_log import write_smoke_log


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def denied(_: web.Request) -> web.Response:
        return web.Response(status=401)

    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="late")

    app = web.Application()
    app.add_routes([web.get("/ok", ok), web.get("/401", denied), web.get("/slow", slow)])
    runner = web.AppRunner(app, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture
async def garbage_server() -> AsyncIterator[str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"\x00\x01 this is not HTTP\r\n\r\n")
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    srv.close()
    await srv.wait_closed()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_checks_report_status_latency_and_pass_fail(server: str, garbage_server: str) -> None:
    refused = f"http://127.0.0.1:{_free_port()}/health"
    results = await run_checks(
        [
            SmokeTarget("Health", f"{server}/ok", (200,), 2),
            SmokeTarget("Kerberos", f"{server}/401", (200, 401), 2),
            SmokeTarget("Swagger", f"{server}/missing", (200,), 2),
            SmokeTarget("Refused", refused, (200,), 2),
            SmokeTarget("Garbage", f"{garbage_server}/x", (200,), 2),
        ]
    )
    by_name = {r.name: r for r in results}
    assert [r.name for r in results] == ["Health", "Kerberos", "Swagger", "Refused", "Garbage"]
    assert (by_name["Health"].status, by_name["Health"].passed) == (200, True)
    assert (by_name["Kerberos"].status, by_name["Kerberos"].passed) == (401, True)
    assert (by_name["Swagger"].status, by_name["Swagger"].passed) == (404, False)
    assert (by_name["Refused"].status, by_name["Refused"].error) == (
        NO_ANSWER,
        "connection refused",
    )
    assert by_name["Garbage"].status == NO_ANSWER and not by_name["Garbage"].passed
    assert all(r.latency_ms >= 0 for r in results)


async def test_each_check_has_its_own_timeout_and_they_run_concurrently(server: str) -> None:
    started = time.perf_counter()
    results = await run_checks(
        [
            SmokeTarget("Slow1", f"{server}/slow", (200,), 0.5),
            SmokeTarget("Slow2", f"{server}/slow", (200,), 1.0),
            SmokeTarget("Fast", f"{server}/ok", (200,), 1.0),
        ]
    )
    elapsed = time.perf_counter() - started
    assert [(r.status, r.error) for r in results[:2]] == [(NO_ANSWER, "timeout")] * 2
    assert results[2].passed
    assert 400 <= results[0].latency_ms < 900
    assert 900 <= results[1].latency_ms < 1500
    assert elapsed < 1.8, "checks must run concurrently, not one after another"


async def test_smoke_log_is_named_in_the_configured_zone_and_never_overwritten(
    tmp_path: Path, server: str
) -> None:
    results = await run_checks([SmokeTarget("Health", f"{server}/ok", (200,), 2)])
    at = datetime(2025, 9, 29, 2, 45, 25, tzinfo=UTC)  # 11:45:25 KST, as in the playbook
    first = write_smoke_log(tmp_path, "Lab", results, at, ZoneInfo("Asia/Seoul"))
    second = write_smoke_log(tmp_path, "Lab", results, at, ZoneInfo("Asia/Seoul"))
    assert first.name == "smoke_20250929_114525.log"
    assert second.name == "smoke_20250929_114525_2.log"
    text = first.read_text()
    assert "Health" in text and "status=200" in text and "RESULT PASS 1/1" in text
