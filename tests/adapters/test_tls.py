"""Outbound HTTPS trusts the OS certificate store (truststore), so an internal CA's site passes.

The server is a loopback HTTPS server whose certificate a private CA signed (like an AD CS
root: in no public list). On Linux, truststore verifies against OpenSSL's default store —
/etc/ssl/certs, or the file SSL_CERT_FILE names, which is how these tests put the CA "in
the OS store" without touching the machine's. Each test shows both sides: trusted when the
CA is in that store, refused when it is not, and refused by certifi's list (httpx's default)
even with the CA in the store — so it is truststore that makes the difference.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from aiohttp import web

from adapters.alert_sinks import SinkPolicy, post_json
from adapters.queue_depth import read_queue_depth
from adapters.smoke import NO_ANSWER, SmokeTarget, run_checks

if TYPE_CHECKING:
    from tests.tls_fixtures import PrivateCA

pytest_plugins = ["tests.tls_fixtures"]


@pytest.fixture
async def internal_site(private_ca: PrivateCA) -> AsyncIterator[str]:
    """https://127.0.0.1:PORT with /health, /worker/status and POST /alerts."""

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "Healthy", "worker": {"queue": 4}})

    async def alerts(request: web.Request) -> web.Response:
        return web.json_response({"ok": True}, status=202)

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_post("/alerts", alerts)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=private_ca.server_context())
    await site.start()
    try:
        yield f"https://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.fixture
def ca_in_os_store(private_ca: PrivateCA, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(private_ca.ca_pem))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


@pytest.fixture
def ca_not_in_os_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


def health_check(site: str) -> SmokeTarget:
    return SmokeTarget("Health", f"{site}/health", (200,), 5.0)


@pytest.mark.usefixtures("ca_in_os_store")
async def test_smoke_passes_a_site_signed_by_a_ca_in_the_os_store(internal_site: str) -> None:
    [result] = await run_checks([health_check(internal_site)])
    assert (result.status, result.error) == (200, None)


@pytest.mark.usefixtures("ca_not_in_os_store")
async def test_smoke_says_certificate_not_trusted_when_the_ca_is_not_in_the_store(
    internal_site: str,
) -> None:
    [result] = await run_checks([health_check(internal_site)])
    assert (result.status, result.error) == (NO_ANSWER, "certificate not trusted")


@pytest.mark.usefixtures("ca_in_os_store")
async def test_certifi_alone_would_refuse_the_internal_site(internal_site: str) -> None:
    """The control: httpx's default verification (certifi) ignores the OS store."""
    async with httpx.AsyncClient(trust_env=False) as client:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get(f"{internal_site}/health")


@pytest.mark.usefixtures("ca_in_os_store")
async def test_queue_depth_and_alert_webhooks_trust_the_os_store(internal_site: str) -> None:
    depth = await read_queue_depth(f"{internal_site}/health", "worker.queue", 5.0)
    assert (depth.value, depth.error) == (4.0, None)
    policy = SinkPolicy(attempts=1, timeout_s=5.0, backoff_s=0.01)
    delivery = await post_json(f"{internal_site}/alerts", {"x": 1}, {}, policy)
    assert (delivery.ok, delivery.status) == (True, 202)


@pytest.mark.usefixtures("ca_not_in_os_store")
async def test_queue_depth_and_alert_webhooks_refuse_an_untrusted_ca(internal_site: str) -> None:
    depth = await read_queue_depth(f"{internal_site}/health", "worker.queue", 5.0)
    assert depth.value is None
    policy = SinkPolicy(attempts=1, timeout_s=5.0, backoff_s=0.01)
    delivery = await post_json(f"{internal_site}/alerts", {"x": 1}, {}, policy)
    assert delivery.ok is False and delivery.status is None


CLIENT = """
import sys, requests
from adapters.tls import use_os_trust_store
if sys.argv[2] == "os-store":
    use_os_trust_store()
try:
    print(requests.get(sys.argv[1] + "/health", timeout=5).status_code)
except requests.exceptions.SSLError:
    print("ssl-error")
"""


@pytest.mark.usefixtures("ca_in_os_store")
@pytest.mark.parametrize(("mode", "expected"), [("os-store", "200"), ("default", "ssl-error")])
async def test_libraries_we_do_not_build_use_the_os_store_after_use_os_trust_store(
    internal_site: str, mode: str, expected: str, tmp_path: Path
) -> None:
    """The Bot Connector client, MSAL and pywinrm speak `requests`: after the bot's start-up
    call they verify against the OS store too (in a child process: it patches `ssl`)."""
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    done = await _run(sys.executable, str(script), internal_site, mode)
    assert done.stdout.strip() == expected, done.stderr


async def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    import asyncio

    return await asyncio.to_thread(
        subprocess.run, list(argv), capture_output=True, text=True, timeout=60, check=False
    )
