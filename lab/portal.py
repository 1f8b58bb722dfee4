"""The MCMS portal of one simulated host: the three endpoints the playbook's smoke run probes.

Health 200 and Swagger 200 like the real portal; Kerberos 401 with a Negotiate challenge,
because the probe carries no ticket. The listener itself is opened and closed by the lab to
follow the site and app pool (lab.core); this app only applies per-check faults.
"""

from __future__ import annotations

import asyncio
import json
from typing import Final

from aiohttp import web

from lab.model import SimHost

_SWAGGER: Final = (
    "<!DOCTYPE html><html><head><title>Swagger UI</title></head>"
    '<body><div id="swagger-ui">MCMS API {version}</div></body></html>'
)


def make_portal_app(host: SimHost) -> web.Application:
    """A fresh app for the host's portal listener (one per open, see lab.listener)."""

    async def guarded(check: str, request: web.Request) -> web.Response | None:
        """Apply the host-wide ("http") then the per-check fault; None = answer normally."""
        host.http_requests += 1
        if host.spec.portal_latency_s > 0:
            await asyncio.sleep(host.spec.portal_latency_s)
        for target in ("http", check):
            fault = host.faults.get(target)
            if fault is None:
                continue
            if fault.mode == "slow":
                await asyncio.sleep(fault.delay_s)
            elif fault.mode == "error":
                return web.Response(status=500, text="lab: injected 500")
            elif fault.mode == "down" and request.transport is not None:
                # One check "down" on a shared port: drop the connection without an answer
                # (the client sees a disconnect). A host-wide "down" closes the port instead.
                request.transport.abort()
                raise asyncio.CancelledError
        return None

    async def health(request: web.Request) -> web.Response:
        fault = await guarded("health", request)
        body = {"status": "Healthy", "host": host.name, "version": host.current_release}
        return fault or web.Response(text=json.dumps(body), content_type="application/json")

    async def swagger(request: web.Request) -> web.Response:
        fault = await guarded("swagger", request)
        html = _SWAGGER.format(version=host.current_release or "unknown")
        return fault or web.Response(text=html, content_type="text/html")

    async def kerberos(request: web.Request) -> web.Response:
        fault = await guarded("kerberos", request)
        challenge = web.Response(
            status=401, text="Unauthorized", headers={"WWW-Authenticate": "Negotiate"}
        )
        return fault or challenge

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/swagger/index.html", swagger)
    app.router.add_get("/api/auth/kerberos", kerberos)
    return app
