"""The lab's control API on loopback (JSON over HTTP): read state, set scenes, inject faults.

    GET    /state                      every host's state
    GET    /state/{host}               one host's state
    POST   /apply/{host}               {"op": "site-control", "params": {...}} → what the
                                       script prints (sets a scene, no WinRM: Lab.apply)
    PUT    /faults/{host}/{target}     {"mode": "...", "delay_s": 2, "name": ..., "action": ...,
                                       "version": ..., "match": {...}, "times": 1}
                                       → the host's state
    DELETE /faults/{host}/{target}     clear one fault (an "op" hold lets its calls go on)
    DELETE /faults/{host}              clear a host's faults
    DELETE /faults                     clear every fault
    PUT    /farm/{router}/{server}     {"enabled": false, "state": "Drain"} → the router's state
Errors answer 400/404 with {"error": "..."}; lab/README.md lists the targets and modes.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from lab.model import Fault
from lab.runtime import LabRuntime


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status, text=json.dumps(data, indent=2), content_type="application/json"
    )


def make_control_app(runtime: LabRuntime) -> web.Application:
    def known(request: web.Request) -> str:
        host = request.match_info["host"]
        if host not in runtime.hosts:
            raise web.HTTPNotFound(
                text=json.dumps({"error": f"no lab host {host!r}", "hosts": list(runtime.hosts)}),
                content_type="application/json",
            )
        return host

    async def all_state(_: web.Request) -> web.Response:
        return _json(runtime.snapshot())

    async def host_state(request: web.Request) -> web.Response:
        return _json(runtime.host(known(request)).snapshot())

    async def put_fault(request: web.Request) -> web.Response:
        host = known(request)
        try:
            body = await request.json() if request.can_read_body else {}
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            fault = fault_from(request.match_info["target"], body)
        except (ValueError, TypeError) as exc:
            return _json({"error": str(exc)}, status=400)
        await runtime.set_fault(host, fault)
        return _json(runtime.host(host).snapshot())

    async def apply(request: web.Request) -> web.Response:
        host = known(request)
        try:
            body = await request.json() if request.can_read_body else {}
            if not isinstance(body, dict) or not isinstance(body.get("op"), str):
                raise ValueError('the body must be {"op": "<script op>", "params": {...}}')
            params = body.get("params") or {}
            if not isinstance(params, dict):
                raise ValueError('"params" must be a JSON object')
        except ValueError as exc:
            return _json({"error": str(exc)}, status=400)
        return _json(await runtime.apply(host, body["op"], params))

    async def delete_fault(request: web.Request) -> web.Response:
        host = known(request)
        await runtime.clear_faults(host, request.match_info["target"])
        return _json(runtime.host(host).snapshot())

    async def delete_host_faults(request: web.Request) -> web.Response:
        host = known(request)
        await runtime.clear_faults(host)
        return _json(runtime.host(host).snapshot())

    async def delete_all_faults(_: web.Request) -> web.Response:
        await runtime.clear_faults()
        return _json(runtime.snapshot())

    async def put_farm_server(request: web.Request) -> web.Response:
        """A change behind the bot's back, as a click in IIS Manager would make it."""
        host = known(request)
        try:
            body = await request.json() if request.can_read_body else {}
            if not isinstance(body, dict) or not set(body) <= {"enabled", "state"} or not body:
                raise ValueError('the body must be {"enabled": true|false, "state": "..."}')
            enabled = body.get("enabled")
            if enabled is not None and not isinstance(enabled, bool):
                raise ValueError("enabled must be true or false")
            state = body.get("state")
            await runtime.set_farm_server(
                host, request.match_info["server"], enabled, None if state is None else str(state)
            )
        except KeyError as exc:
            return _json({"error": str(exc.args[0])}, status=404)
        except (ValueError, TypeError) as exc:
            return _json({"error": str(exc)}, status=400)
        return _json(runtime.host(host).snapshot())

    app = web.Application()
    app.router.add_get("/state", all_state)
    app.router.add_get("/state/{host}", host_state)
    app.router.add_post("/apply/{host}", apply)
    app.router.add_put("/faults/{host}/{target}", put_fault)
    app.router.add_delete("/faults/{host}/{target}", delete_fault)
    app.router.add_delete("/faults/{host}", delete_host_faults)
    app.router.add_delete("/faults", delete_all_faults)
    app.router.add_put("/farm/{host}/{server}", put_farm_server)
    return app


def fault_from(target: str, body: dict[str, Any]) -> Fault:
    """A Fault from the JSON body of PUT /faults/{host}/{target}; ValueError if it is wrong."""
    known = {"mode", "delay_s", "name", "action", "version", "match", "times"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    match = body.get("match")
    if match is not None and not isinstance(match, dict):
        raise ValueError('"match" must be a JSON object of parameter names and values')
    times = body.get("times")
    return Fault.parse(
        target,
        str(body.get("mode", "")),
        float(body.get("delay_s", 0.0)),
        name=None if body.get("name") is None else str(body["name"]),
        action=None if body.get("action") is None else str(body["action"]),
        version=None if body.get("version") is None else str(body["version"]),
        match=match,
        times=None if times is None else int(times),
    )
