"""Remote PowerShell over WinRM (pywinrm) with a real deadline, for asyncio callers.

pywinrm is blocking and its own `get_command_output` retries operation timeouts forever
(docs/windows-hosts.md), so each run drives the protocol by hand in one worker thread:
open shell → command (constant bootstrap) → stdin (composed script) → receive until done or
the deadline → signal + delete in `finally`. The async caller gets control back at the
deadline even if one HTTP call hangs; the thread then sees the cancel flag, stops polling
and cleans up on its own. Library exceptions are translated here, once, into
adapters.errors; nothing above this module sees pywinrm or requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

import requests
from winrm.exceptions import (
    AuthenticationError,
    WinRMError,
    WinRMOperationTimeoutError,
    WinRMTransportError,
    WSManFaultError,
)
from winrm.protocol import Protocol

from adapters.errors import (
    AuthenticationFailed,
    BadReply,
    DeadlineExceeded,
    HostUnreachable,
    RemoteError,
    WinRMFault,
)
from adapters.winrm import scripts as ps_scripts
from adapters.winrm.scripts import ScriptOutput, parse_result

# How long the async side waits past the deadline for the worker's own (more precise) error.
_GRACE_S = 0.25
# Bound on each cleanup call: the shell must be deleted, but not at any price.
_CLEANUP_OPERATION_S = 1
_CLEANUP_READ_S = 2


# What pywinrm imports for a transport beyond its own dependencies, and the extra of this
# package (pyproject.toml) that installs it.
_TRANSPORT_EXTRAS = {
    "kerberos": ("winrm.vendor.requests_kerberos", "kerberos"),
    "credssp": ("requests_credssp", "credssp"),
}


def missing_extra(transport: str) -> str | None:
    """The package extra that `transport` needs and this Python lacks ("kerberos",
    "credssp"), or None. pywinrm itself only says so at the first call to a host."""
    needed = _TRANSPORT_EXTRAS.get(transport)
    if needed is None:
        return None
    module, extra = needed
    try:
        importlib.import_module(module)
    except ImportError:
        return extra
    return None


class _Cancelled(Exception):
    """The async caller gave up; the worker stops polling and cleans up."""


class WinRMShell:
    """Runs the constant script of one operation on one host; one pywinrm Protocol per run."""

    def __init__(
        self,
        url: str,
        transport: str,
        username: str,
        password: str,
        *,
        operation_timeout_s: float = 10,
        server_cert_validation: Literal["validate", "ignore"] = "validate",
        ca_trust_path: str | None = None,
        host: str | None = None,
    ) -> None:
        parts = urlsplit(url)
        # hostname:port only: a URL with user:password@ must never reach a message.
        self.host = host or f"{parts.hostname}:{parts.port or ''}".rstrip(":")
        self._url = url
        self._transport = transport
        self._username = username
        self._password = password
        self._operation_timeout_s = max(1, int(operation_timeout_s))
        self._server_cert_validation = server_cert_validation
        self._ca_trust_path = ca_trust_path

    def __repr__(self) -> str:
        return f"WinRMShell(host={self.host!r}, transport={self._transport!r})"

    async def run(
        self, op: str, params: Mapping[str, ps_scripts.JsonValue], *, timeout_s: float
    ) -> dict[str, Any]:
        """Run `op` with `params`; returns the JSON object the script printed last.

        Raises a RemoteError subclass; InvalidName is raised before any network call, and
        DeadlineExceeded no later than about `timeout_s` (+0.25 s) after the call. When the
        caller gives up (deadline or cancellation) the worker thread notices within one
        operation timeout, then signals the command and deletes the shell.
        """
        script = ps_scripts.compose(self.host, op, params)
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        deadline = time.monotonic() + timeout_s
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ScriptOutput | RemoteError] = loop.create_future()
        cancel = threading.Event()

        def work() -> None:
            outcome: ScriptOutput | BaseException
            try:
                outcome = self._run_blocking(op, script, deadline, timeout_s, cancel)
            except BaseException as exc:  # a bug: hand it to the caller, not to the thread
                outcome = exc
            with contextlib.suppress(RuntimeError):  # the loop may be closed by now
                loop.call_soon_threadsafe(_deliver, future, outcome)

        threading.Thread(target=work, name=f"winrm-{self.host}", daemon=True).start()
        try:
            done, _ = await asyncio.wait({future}, timeout=timeout_s + _GRACE_S)
        finally:
            cancel.set()  # no-op when the worker finished; stops it otherwise
        if not done:
            raise self._deadline(op, timeout_s)
        outcome = future.result()
        if isinstance(outcome, RemoteError):
            raise outcome
        return parse_result(self.host, op, outcome)

    def _deadline(self, op: str, timeout_s: float) -> DeadlineExceeded:
        return DeadlineExceeded(
            f"{op} on {self.host} did not finish within {timeout_s:g} s; the remote shell was "
            "abandoned and is being closed. Check the host (is IIS or the service hanging?) "
            "and read its state again before retrying.",
            host=self.host,
            timeout_s=timeout_s,
        )

    def _protocol(self) -> Protocol:
        return Protocol(
            endpoint=self._url,
            transport=self._transport,  # type: ignore[arg-type]  # validated by config
            username=self._username,
            password=self._password,
            server_cert_validation=self._server_cert_validation,
            # Explicit, so pywinrm does not fall back to REQUESTS_CA_BUNDLE (deprecated there);
            # the host's `ca_trust_path`, else None = the CA bundle of requests (certifi), plus
            # the OS store once the bot called adapters.tls.use_os_trust_store().
            ca_trust_path=self._ca_trust_path,  # type: ignore[arg-type]  # None is documented
            operation_timeout_sec=self._operation_timeout_s,
            read_timeout_sec=self._operation_timeout_s + 1,
            # WinRM targets are internal hosts: an HTTP(S)_PROXY meant for the internet must
            # not capture them.
            proxy=None,
        )

    def _run_blocking(
        self, op: str, script: str, deadline: float, timeout_s: float, cancel: threading.Event
    ) -> ScriptOutput | RemoteError:
        def check() -> None:
            if cancel.is_set() or time.monotonic() >= deadline:
                raise _Cancelled

        def bounded(protocol: Protocol, call: Callable[[], Any]) -> Any:
            # Each call may block for at most the time left (min 1 s: pywinrm's floor).
            check()
            left = deadline - time.monotonic()
            operation = max(1, min(self._operation_timeout_s, int(left)))
            protocol.operation_timeout_sec = operation
            protocol.transport.read_timeout_sec = operation + 1
            return call()

        protocol: Protocol | None = None
        shell_id: str | None = None
        command_id: str | None = None
        try:
            protocol = p = self._protocol()
            # Code page 65001 (UTF-8) as Ansible does; stdin is ASCII anyway (ps_scripts).
            shell_id = bounded(p, lambda: p.open_shell(codepage=65001))
            command_id = bounded(
                p,
                lambda: p.run_command(
                    shell_id,
                    ps_scripts.POWERSHELL,
                    [
                        *ps_scripts.POWERSHELL_ARGS,
                        "-EncodedCommand",
                        ps_scripts.encoded_bootstrap(),
                    ],
                    console_mode_stdin=False,
                ),
            )
            bounded(
                p,
                lambda: p.send_command_input(
                    shell_id, command_id, script.encode("ascii"), end=True
                ),
            )
            stdout: list[bytes] = []
            stderr: list[bytes] = []
            while True:
                try:
                    out, err, code, done = bounded(
                        p, lambda: p.get_command_output_raw(shell_id, command_id)
                    )
                except WinRMOperationTimeoutError:
                    continue  # the normal "still running" answer of WinRM
                stdout.append(out)
                stderr.append(err)
                if done:
                    return ScriptOutput(b"".join(stdout), b"".join(stderr), code)
        except _Cancelled:
            return self._deadline(op, timeout_s)
        except Exception as exc:
            translated = self._translate(exc, op, deadline, timeout_s)
            if translated is None:
                raise
            return translated
        finally:
            if protocol is not None:
                _cleanup(protocol, shell_id, command_id)

    def _translate(
        self, exc: Exception, op: str, deadline: float, timeout_s: float
    ) -> RemoteError | None:
        """Map a pywinrm/requests exception to our hierarchy; None for a bug (re-raised)."""
        host = self.host
        kind: type[RemoteError]
        if isinstance(exc, AuthenticationError):
            kind = AuthenticationFailed
            message = (
                f"WinRM on {host} rejected the credentials of user {self._username!r} "
                f"(HTTP 401, transport {self._transport}). Check the user/password environment "
                "variables, that the account may use WinRM on the host, and that the transport "
                "is enabled in the host's WinRM service configuration."
            )
        elif isinstance(exc, requests.exceptions.ReadTimeout):
            if time.monotonic() >= deadline:
                return self._deadline(op, timeout_s)
            kind = HostUnreachable
            message = f"WinRM on {host} stopped answering mid-call. Check the host and retry."
        elif isinstance(exc, requests.exceptions.SSLError):
            kind = HostUnreachable
            message = (
                f"the TLS handshake with WinRM on {host} failed (certificate not trusted or "
                "wrong name?). Fix the certificate or the CA bundle, then retry."
            )
        elif isinstance(exc, requests.exceptions.RequestException):
            kind = HostUnreachable
            message = (
                f"cannot connect to WinRM on {host} (connection refused, dropped or timed "
                "out). Check that the host is up, the WinRM listener runs and the firewall "
                "allows the port."
            )
        elif isinstance(exc, WSManFaultError):
            kind = WinRMFault
            reason = " ".join(str(exc.reason).split())[:300]
            message = (
                f"WinRM on {host} refused the request: {reason} Check the host's WinRM "
                "service and its event log."
            )
        elif isinstance(exc, WinRMTransportError):
            kind = BadReply
            message = (
                f"WinRM on {host} answered HTTP {exc.code}, not a WS-Management reply. Is the "
                "configured URL the host's /wsman endpoint?"
            )
        elif isinstance(exc, ET.ParseError | StopIteration | KeyError | ValueError):
            kind = BadReply
            message = (
                f"WinRM on {host} answered something that is not a WS-Management reply. Is the "
                "configured URL the host's /wsman endpoint (and not a proxy or web page)?"
            )
        elif isinstance(exc, WinRMError):
            # pywinrm's own configuration errors (unknown transport, missing extra): no secrets.
            kind = RemoteError
            message = f"cannot use WinRM transport {self._transport!r} for {host}: {exc}"
        else:
            return None
        translated = kind(message, host=host)
        translated.__cause__ = exc
        return translated


def _cleanup(protocol: Protocol, shell_id: str | None, command_id: str | None) -> None:
    """Best effort, bounded: a leaked shell counts against the host's per-user shell quota."""
    protocol.operation_timeout_sec = _CLEANUP_OPERATION_S
    protocol.transport.read_timeout_sec = _CLEANUP_READ_S
    if shell_id is not None and command_id is not None:
        with contextlib.suppress(Exception):
            protocol.cleanup_command(shell_id, command_id)
    if shell_id is not None:
        with contextlib.suppress(Exception):
            protocol.close_shell(shell_id)
    with contextlib.suppress(Exception):
        protocol.transport.close_session()


def _deliver(
    future: asyncio.Future[ScriptOutput | RemoteError], outcome: ScriptOutput | BaseException
) -> None:
    if future.done():
        return
    if isinstance(outcome, RemoteError | ScriptOutput):
        future.set_result(outcome)
    else:
        future.set_exception(outcome)
