"""A WinRM endpoint for one simulated host: WS-Man SOAP 1.2 over HTTP at /wsman, basic auth.

Handles the shell resource's Create, Command, Send, Receive, Signal and Delete, enough for
pywinrm (replies modelled on pywinrm's own winrm/tests/conftest.py). A command runs when
its stdin ends; Receive waits for it up to the request's OperationTimeout and then answers
the WS-Man timeout fault, as real WinRM does. Faults (lab.model.FAULT_MODES["winrm"]) make
it hang, stall, refuse credentials or answer garbage; Signal and Delete always work, so a
test can watch the client clean up.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final
from xml.sax.saxutils import escape

from aiohttp import web

from lab.model import Fault, ScriptCall, SimHost
from lab.powershell import ScriptRun, apply_op, check_command_line, failed, parse_script

NS: Final = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
}
SHELL_NS: Final = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
TIMED_OUT: Final = 2150858793  # pywinrm turns this code into WinRMOperationTimeoutError
SHELL_NOT_FOUND: Final = 2150858843
UNSUPPORTED: Final = 2150858778
_DURATION: Final = re.compile(r"^PT([0-9]+(?:\.[0-9]+)?)S$")
_ENVELOPE: Final = (
    '<?xml version="1.0" ?>\n<s:Envelope xml:lang="en-US" xmlns:s="{s}" xmlns:a="{a}" '
    'xmlns:w="{w}" xmlns:rsp="{rsp}" xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer">'
    "<s:Header><a:Action>{{action}}</a:Action><a:MessageID>uuid:{{mid}}</a:MessageID>"
    "<a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>"
    "<a:RelatesTo>{{relates}}</a:RelatesTo></s:Header><s:Body>{{body}}</s:Body></s:Envelope>"
).format(**NS)


@dataclass
class _Command:
    command_line: tuple[str, str]
    stdin: bytearray = field(default_factory=bytearray)
    task: asyncio.Task[ScriptRun] | None = None


@dataclass
class _Shell:
    commands: dict[str, _Command] = field(default_factory=dict)


class _Request:
    """The parts of one WS-Man request the simulation needs."""

    def __init__(self, root: ET.Element) -> None:
        header = root.find("s:Header", NS)
        self.body = root.find("s:Body", NS)
        if header is None or self.body is None:
            raise ValueError("not a SOAP envelope")
        self.action = (header.findtext("a:Action", "", NS) or "").rsplit("/", 1)[-1]
        self.message_id = header.findtext("a:MessageID", "", NS) or ""
        self.shell_id = next(
            (s.text or "" for s in header.iterfind("w:SelectorSet/w:Selector", NS)), ""
        )
        match = _DURATION.match(header.findtext("w:OperationTimeout", "", NS) or "")
        self.operation_timeout_s = float(match.group(1)) if match else 60.0


class WinRMEndpoint:
    """The WinRM side of one SimHost; `on_change` runs after a script changed the state."""

    def __init__(self, host: SimHost, on_change: Callable[[], Awaitable[None]]) -> None:
        self.host = host
        self._on_change = on_change
        self.shells: dict[str, _Shell] = {}

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/wsman", self.handle)
        return app

    async def aclose(self) -> None:
        for shell in self.shells.values():
            for command in shell.commands.values():
                if command.task is not None:
                    command.task.cancel()
        self.shells.clear()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        host = self.host
        host.winrm_requests += 1
        fault = host.faults.get("winrm")
        if (fault is not None and fault.mode == "auth") or not self._authorised(request):
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="WSMAN"'})
        if fault is not None and fault.mode == "garbage":
            return web.Response(status=200, text="<html><body>Welcome to nginx!", charset="utf-8")
        try:
            # Loopback only, from our own tests and demo: defusedxml is not worth a dependency.
            req = _Request(ET.fromstring(await request.read()))  # noqa: S314
        except (ET.ParseError, ValueError):
            return web.Response(status=400, text="lab: not a SOAP envelope")
        host.winrm_actions.append(req.action)
        handler = {
            "Create": self._create,
            "Command": self._command,
            "Send": self._send,
            "Receive": self._receive,
            "Signal": self._signal,
            "Delete": self._delete,
        }.get(req.action)
        if handler is None:
            return self._fault(
                req, UNSUPPORTED, "The WS-Management service does not support the request."
            )
        if req.action != "Create" and req.shell_id not in self.shells:
            message = f"The shell {req.shell_id} was not found on the server."
            return self._fault(req, SHELL_NOT_FOUND, message)
        return await handler(req, request)

    def _authorised(self, request: web.Request) -> bool:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return (user, password) == (self.host.spec.username, self.host.spec.password)

    async def _create(self, req: _Request, _: web.Request) -> web.Response:
        shell_id = str(uuid.uuid4()).upper()
        self.shells[shell_id] = _Shell()
        body = (
            "<x:ResourceCreated><a:Address>http://127.0.0.1/wsman</a:Address><a:ReferenceParameters>"
            "<w:ResourceURI>http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd</w:ResourceURI>"
            f'<w:SelectorSet><w:Selector Name="ShellId">{shell_id}</w:Selector></w:SelectorSet>'
            "</a:ReferenceParameters></x:ResourceCreated>"
        )
        return self._reply(
            req, "http://schemas.xmlsoap.org/ws/2004/09/transfer/CreateResponse", body
        )

    async def _command(self, req: _Request, _: web.Request) -> web.Response:
        assert req.body is not None
        line = req.body.find("rsp:CommandLine", NS)
        command = line.findtext("rsp:Command", "", NS) if line is not None else ""
        arguments = line.findtext("rsp:Arguments", "", NS) if line is not None else ""
        command_id = str(uuid.uuid4()).upper()
        self.shells[req.shell_id].commands[command_id] = _Command((command or "", arguments or ""))
        body = (
            f"<rsp:CommandResponse><rsp:CommandId>{command_id}</rsp:CommandId>"
            "</rsp:CommandResponse>"
        )
        return self._reply(req, f"{SHELL_NS}/CommandResponse", body)

    async def _send(self, req: _Request, _: web.Request) -> web.Response:
        assert req.body is not None
        stream = req.body.find("rsp:Send/rsp:Stream", NS)
        command = self._find_command(req, stream)
        if stream is None or command is None:
            return self._fault(req, SHELL_NOT_FOUND, "The command was not found.")
        command.stdin += base64.b64decode(stream.text or "")
        if stream.get("End", "false").lower() == "true" and command.task is None:
            command.task = asyncio.ensure_future(self._execute(command))
        return self._reply(req, f"{SHELL_NS}/SendResponse", "<rsp:SendResponse/>")

    async def _execute(self, command: _Command) -> ScriptRun:
        hang = self.host.faults.get("winrm")
        if hang is not None and hang.mode in ("hang", "stall"):
            await asyncio.Event().wait()  # the script never finishes; Signal cancels it
        refusal = check_command_line(*command.command_line)
        if refusal is not None:
            return ScriptRun(b"", refusal.encode("utf-8"), 1)
        call = parse_script(self.host, bytes(command.stdin))
        if isinstance(call, ScriptRun):
            return call
        await self._hold(call)
        if self.host.spec.script_latency_s > 0:
            await asyncio.sleep(self.host.spec.script_latency_s)
        op_fault = self.host.faults.get("op")
        if op_fault is not None and op_fault.mode == "fail" and matches(op_fault, call):
            self.host.fault("op", "fail", op_fault.name)  # uses up one of its `times`
            return failed(f"{describe(call)} failed on {self.host.name}: lab-injected failure")
        run = apply_op(self.host, call.op, call.params)
        if run.later is not None:
            run = await run.later()
        await self._on_change()
        if run.duration_s > 0:
            await asyncio.sleep(run.duration_s)
        return run

    async def _hold(self, call: ScriptCall) -> None:
        """Wait while an "op" hold matches this call (a test's barrier): the script has
        started on the host and goes on once the hold is cleared, whatever the client did."""
        host = self.host
        while (
            (fault := host.faults.get("op")) is not None
            and fault.mode == "hold"
            and matches(fault, call)
        ):
            if host.released is None or host.released.is_set():
                host.released = asyncio.Event()
            waiting = host.released
            label = describe(call)
            host.held.append(label)
            try:
                await waiting.wait()
            finally:
                host.held.remove(label)

    async def _receive(self, req: _Request, request: web.Request) -> web.StreamResponse:
        assert req.body is not None
        command = self._find_command(req, req.body.find("rsp:Receive/rsp:DesiredStream", NS))
        if command is None or command.task is None:
            return self._fault(req, SHELL_NOT_FOUND, "The command was not found or has no input.")
        fault = self.host.faults.get("winrm")
        if fault is not None and fault.mode == "hang":
            await asyncio.sleep(req.operation_timeout_s)
            return self._timed_out(req)
        if fault is not None and fault.mode == "stall":
            # Never answer, until the client gives up and closes the connection.
            # aiohttp has no event for "client went away" while a handler runs: poll.
            while request.transport is not None and not request.transport.is_closing():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            return web.Response(status=204)
        done, _ = await asyncio.wait({command.task}, timeout=req.operation_timeout_s)
        if not done:
            return self._timed_out(req)
        if command.task.cancelled():
            return self._fault(req, SHELL_NOT_FOUND, "The command was terminated by a signal.")
        run = command.task.result()
        cid = next(k for k, v in self.shells[req.shell_id].commands.items() if v is command)
        streams = "".join(
            f'<rsp:Stream Name="{name}" CommandId="{cid}">{base64.b64encode(data).decode()}'
            "</rsp:Stream>"
            for name, data in (("stdout", run.stdout), ("stderr", run.stderr))
            if data
        )
        body = (
            f"<rsp:ReceiveResponse>{streams}"
            f'<rsp:Stream Name="stdout" CommandId="{cid}" End="true"/>'
            f'<rsp:Stream Name="stderr" CommandId="{cid}" End="true"/>'
            f'<rsp:CommandState CommandId="{cid}" State="{SHELL_NS}/CommandState/Done">'
            f"<rsp:ExitCode>{run.exit_code}</rsp:ExitCode></rsp:CommandState></rsp:ReceiveResponse>"
        )
        return self._reply(req, f"{SHELL_NS}/ReceiveResponse", body)

    async def _signal(self, req: _Request, _: web.Request) -> web.Response:
        assert req.body is not None
        signal = req.body.find("rsp:Signal", NS)
        command_id = signal.get("CommandId", "") if signal is not None else ""
        command = self.shells[req.shell_id].commands.pop(command_id, None)
        if command is not None and command.task is not None:
            command.task.cancel()
        return self._reply(req, f"{SHELL_NS}/SignalResponse", "<rsp:SignalResponse/>")

    async def _delete(self, req: _Request, _: web.Request) -> web.Response:
        shell = self.shells.pop(req.shell_id)
        for command in shell.commands.values():
            if command.task is not None:
                command.task.cancel()
        return self._reply(req, "http://schemas.xmlsoap.org/ws/2004/09/transfer/DeleteResponse", "")

    def _timed_out(self, req: _Request) -> web.Response:
        message = (
            "The WS-Management service cannot complete the operation within the time "
            "specified in OperationTimeout."
        )
        return self._fault(req, TIMED_OUT, message, subcode="w:TimedOut")

    def _find_command(self, req: _Request, node: ET.Element | None) -> _Command | None:
        command_id = node.get("CommandId", "") if node is not None else ""
        return self.shells[req.shell_id].commands.get(command_id)

    def _reply(self, req: _Request, action: str, body: str) -> web.Response:
        # Signal and Delete replies must echo the MessageID: pywinrm asserts on RelatesTo.
        text = _ENVELOPE.format(
            action=action, mid=uuid.uuid4(), relates=escape(req.message_id), body=body
        )
        return web.Response(text=text, content_type="application/soap+xml", charset="utf-8")

    def _fault(
        self, req: _Request, code: int, message: str, subcode: str = "w:InternalError"
    ) -> web.Response:
        body = (
            f"<s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>{subcode}"
            f'</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang="en-US">{escape(message)}'
            "</s:Text></s:Reason><s:Detail>"
            f'<f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault" '
            f'Code="{code}" Machine="{escape(self.host.name)}"><f:Message>{escape(message)}'
            "</f:Message></f:WSManFault></s:Detail></s:Fault>"
        )
        text = _ENVELOPE.format(
            action="http://schemas.dmtf.org/wbem/wsman/1/wsman/fault",
            mid=uuid.uuid4(),
            relates=escape(req.message_id),
            body=body,
        )
        return web.Response(
            status=500, text=text, content_type="application/soap+xml", charset="utf-8"
        )


def matches(fault: Fault, call: ScriptCall) -> bool:
    """Whether an "op" fault applies to this call: same op, its action, every `match` pair."""
    if (fault.name or "").casefold() != call.op.casefold():
        return False
    params = {k.casefold(): v for k, v in call.params.items()}
    if fault.action is not None and str(params.get("action", "")).casefold() != (
        fault.action.casefold()
    ):
        return False
    return all(str(params.get(k.casefold(), "")).casefold() == v.casefold() for k, v in fault.match)


def describe(call: ScriptCall) -> str:
    """`site-control MCMS.Api Stop` — a held call, as the state snapshot lists it."""
    words = [call.op]
    for key in ("Site", "AppPool", "Service", "Action", "Version"):
        if key in call.params:
            words.append(str(call.params[key]))
    return " ".join(words)
