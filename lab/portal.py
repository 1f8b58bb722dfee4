"""One IIS site of a simulated host: the smoke endpoints and HTML pages it answers.

Health 200 and Swagger 200 like the real portal; Kerberos 401 with a Negotiate challenge,
because the probe carries no ticket. A login page and the releases list (lab.pages) give
the DR suites (lab/dr-suites) something a browser can sign in to and axe can scan. Each
site answers its own checks and pages (the demo's Portal answers Health and the pages, its
API Swagger and Kerberos) and reports the release it serves. The listener itself is opened
and closed by the lab to follow the site and its app pool (lab/runtime.py); this app only
applies per-check and per-page faults — an `error` fault with a `version` fails only while
the site serves that release (a broken build). Sessions live in the app, so a listener
reopened (site or pool restarted) forgets them, as an app pool recycle does.
"""

from __future__ import annotations

import asyncio
import json
from typing import Final

from aiohttp import web

from lab import pages
from lab.model import SimHost

_SWAGGER: Final = (
    "<!DOCTYPE html><html><head><title>Swagger UI</title></head>"
    '<body><div id="swagger-ui">MCMS API {version}</div></body></html>'
)


def make_portal_app(host: SimHost, site: str) -> web.Application:
    """A fresh app for one site's listener (one per open, see lab.listener)."""

    def release() -> str | None:
        return host.release_of(host.sites[site].physical_path)

    async def guarded(check: str, request: web.Request) -> web.Response | None:
        """Apply the host-wide ("http") then the per-check fault; None = answer normally."""
        host.http_requests += 1
        if check not in host.sites[site].checks:
            return web.Response(status=404, text=f"lab: site {site} does not serve {check}")
        if host.spec.portal_latency_s > 0:
            await asyncio.sleep(host.spec.portal_latency_s)
        for target in ("http", check):
            fault = host.faults.get(target)
            if fault is None or (fault.version is not None and fault.version != release()):
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
        body = {"status": "Healthy", "host": host.name, "site": site, "version": release()}
        return fault or web.Response(text=json.dumps(body), content_type="application/json")

    async def swagger(request: web.Request) -> web.Response:
        fault = await guarded("swagger", request)
        html = _SWAGGER.format(version=release() or "unknown")
        return fault or web.Response(text=html, content_type="text/html")

    async def kerberos(request: web.Request) -> web.Response:
        fault = await guarded("kerberos", request)
        challenge = web.Response(
            status=401, text="Unauthorized", headers={"WWW-Authenticate": "Negotiate"}
        )
        return fault or challenge

    sessions: set[str] = set()

    def signed_in(request: web.Request) -> bool:
        return request.cookies.get(pages.SESSION_COOKIE, "") in sessions

    def page(text: str, status: int = 200) -> web.Response:
        return web.Response(status=status, text=text, content_type="text/html")

    async def login_form(request: web.Request) -> web.Response:
        fault = await guarded("login", request)
        broken = host.fault_mode("login") == "a11y"
        return fault or page(pages.login_page(host.name, broken=broken))

    async def login(request: web.Request) -> web.Response:
        fault = await guarded("login", request)
        if fault is not None:
            return fault
        form = await request.post()
        user, password = str(form.get("username", "")), str(form.get("password", ""))
        if (user, password) != (pages.PORTAL_USER, pages.PORTAL_PASSWORD):
            broken = host.fault_mode("login") == "a11y"
            refused = pages.login_page(
                host.name, error="Wrong user name or password.", broken=broken
            )
            return page(refused, status=401)
        token = pages.new_session()
        sessions.add(token)
        response = _see_other("/releases")
        response.set_cookie(pages.SESSION_COOKIE, token, httponly=True, samesite="Strict")
        return response

    async def releases(request: web.Request) -> web.Response:
        fault = await guarded("releases", request)
        if fault is not None:
            return fault
        if not signed_in(request):
            return _see_other("/login")
        broken = host.fault_mode("releases") == "a11y"
        kept = sorted(host.release_dirs, key=_version_key)
        return page(pages.releases_page(host.name, kept, release(), broken=broken))

    async def root(_: web.Request) -> web.Response:
        return _see_other("/login")

    app = web.Application()
    app.router.add_get("/", root)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_get("/releases", releases)
    app.router.add_get("/health", health)
    app.router.add_get("/swagger/index.html", swagger)
    app.router.add_get("/api/auth/kerberos", kerberos)
    return app


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in version.split("-")[0].split("."))


def _see_other(location: str) -> web.Response:
    # A plain response: returning aiohttp's HTTPSeeOther instead of raising it is deprecated.
    return web.Response(status=303, headers={"Location": location})


def check_of(path: str) -> str | None:
    """The smoke check or page a request path belongs to: /health → health, /login → login."""
    paths = {
        "/health": "health",
        "/swagger/index.html": "swagger",
        "/api/auth/kerberos": "kerberos",
        "/login": "login",
        "/releases": "releases",
        "/": "login",
    }
    return paths.get(path.split("?", 1)[0])
