"""A lab router host: IIS + ARR in front of a slot pair, as a real HTTP reverse proxy.

The host speaks WinRM like every lab host (the bot drives its farm with the ARR scripts,
lab.arr) and serves the pair's public URL. Each request to the public URL goes to the next
farm server that takes new requests (enabled and Available), forwarded to that lab host's
portal; a server put into Drain or Unavailable gets no new request, but the requests it
already has run to their end. Per server the router counts requests in flight, in total and
failed — 5xx answers and connection failures (refused, reset) apart. No server available:
503, counted as `unrouted`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
from aiohttp import web

from lab.farm import SimFarm
from lab.listener import Listener
from lab.model import LabHostSpec, LabService, LabSite
from lab.runtime import HostRuntime

# Hop-by-hop headers and those the client session already undid (it decompresses bodies).
_DROP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "content-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "host",
    }
)
# ARR's default proxy time-out is 120 s; the lab's portals answer in milliseconds.
_UPSTREAM_TIMEOUT_S: Final = 120.0


@dataclass(frozen=True)
class LabRouterSpec:
    """One router host: its farm's servers (lab host names) and which are online at start."""

    name: str
    servers: tuple[str, ...]
    online: tuple[str, ...]
    farm: str = "MCMS"
    pair: str = ""  # the slot pair it fronts, for descriptions only
    username: str = "lab-admin"
    password: str = "lab-password"  # noqa: S105  # demo credentials, never a real secret
    winrm_port: int = 0  # 0 = an ephemeral port
    public_port: int = 0

    def host_spec(self) -> LabHostSpec:
        """The Windows side of the router host: IIS with its default site, no MCMS release."""
        return LabHostSpec(
            self.name,
            environment="",
            releases=(),
            sites=(LabSite("Default Web Site", "DefaultAppPool", http_port=self.public_port),),
            services=(LabService("W3SVC"),),
            releases_root="C:\\inetpub\\wwwroot",
            username=self.username,
            password=self.password,
            winrm_port=self.winrm_port,
        )


PortResolver = Callable[[str, str], int | None]  # (server address, path) → port


class RouterRuntime(HostRuntime):
    """A router host on the lab's loop: WinRM as any host, the public URL as a proxy."""

    def __init__(self, spec: LabRouterSpec, bind: str, resolve: PortResolver) -> None:
        super().__init__(spec.host_spec(), bind)
        self.router_spec = spec
        self.sim.farm = SimFarm.create(spec.farm, spec.servers, spec.online)
        self._bind = bind
        self._resolve = resolve
        self._client: aiohttp.ClientSession | None = None
        # The public URL replaces the front site; it follows that site like a portal.
        front = next(iter(self.portals))
        self.portals[front] = Listener(self._make_proxy_app, bind, spec.public_port)

    @property
    def farm(self) -> SimFarm:
        assert self.sim.farm is not None  # set in __init__, never cleared
        return self.sim.farm

    async def start(self) -> None:
        # One connection per request: a pooled connection to a portal that closed since
        # would fail the next request for a reason the real ARR would not have.
        connector = aiohttp.TCPConnector(force_close=True, limit=0)
        self._client = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=_UPSTREAM_TIMEOUT_S),
            auto_decompress=True,
        )
        await super().start()

    async def stop(self) -> None:
        await super().stop()
        if self._client is not None:
            await self._client.close()
            self._client = None

    def snapshot(self) -> dict[str, Any]:
        state = super().snapshot()
        state["farm"] = self.farm.snapshot()
        state["public_url"] = f"http://{self._bind}:{next(iter(self.portals.values())).port}"
        state["pair"] = self.router_spec.pair
        return state

    def _make_proxy_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        return app

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        self.sim.http_requests += 1
        fault = self.sim.faults.get("http")
        if fault is not None and fault.mode == "slow":
            await asyncio.sleep(fault.delay_s)
        elif fault is not None and fault.mode == "error":
            return web.Response(status=500, text="lab ARR: injected 500")
        farm = self.farm
        server = farm.pick()
        if server is None:
            farm.unrouted += 1
            return web.Response(
                status=503,
                text=f"lab ARR: 503 Service Unavailable: no server of farm {farm.name} is "
                "available",
            )
        server.current_requests += 1
        server.total_requests += 1
        try:
            status, headers, body = await self._upstream(request, server.address)
        except (aiohttp.ClientError, OSError, TimeoutError):
            server.failed_requests += 1
            server.connection_failures += 1
            return web.Response(
                status=502,
                text=f"lab ARR: 502.3 Bad Gateway: {server.address} did not answer",
                headers={"X-Served-By": server.address},
            )
        finally:
            server.current_requests -= 1
        if status >= 500:
            server.failed_requests += 1
            server.errors_5xx += 1
        headers["X-Served-By"] = server.address
        return web.Response(status=status, body=body, headers=headers)

    async def _upstream(
        self, request: web.Request, address: str
    ) -> tuple[int, dict[str, str], bytes]:
        port = self._resolve(address, request.path)
        if port is None or self._client is None:
            raise aiohttp.ClientConnectionError(f"{address} does not resolve")
        url = f"http://{self._bind}:{port}{request.rel_url}"
        forwarded = {k: v for k, v in request.headers.items() if k.lower() not in _DROP}
        forwarded["X-Forwarded-For"] = request.remote or ""
        body = await request.read()
        async with self._client.request(
            request.method, url, headers=forwarded, data=body or None, allow_redirects=False
        ) as upstream:
            data = await upstream.read()
            headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _DROP}
            return upstream.status, headers, data
