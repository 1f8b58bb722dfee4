"""Failures of remote operations, translated once at the WinRM edge.

    RemoteError                  something between the bot and a Windows host went wrong
    ├── InvalidName              refused before any network call: unknown operation or a value
    │                            that is not a safe name / version / path (a bug upstream)
    ├── HostUnreachable          no TCP/TLS connection, or the host stopped answering
    ├── AuthenticationFailed     WinRM rejected the credentials (HTTP 401)
    ├── DeadlineExceeded         the operation did not finish before its deadline
    ├── BadReply                 the answer was not WS-Management we understand, or the
    │                            script printed no JSON result line
    ├── WinRMFault               the WinRM service refused the request (SOAP fault)
    └── RemoteScriptFailed       the script ran and reported an error (carries its message)
        └── StateNotReached      an IIS/service action ended in the wrong state

Every message names the host, says what happened and what to do next, and never carries a
secret: messages are built here from our own words, never from `str()` of a library error.
"""

from __future__ import annotations


class RemoteError(Exception):
    """Base of every failure talking to a host; `host` names it for logs and cards.

    The message is complete on its own (it names the host); `host` is for grouping.
    """

    def __init__(self, message: str, *, host: str = "") -> None:
        super().__init__(message)
        self.host = host
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidName(RemoteError, ValueError):
    """A value was refused before anything was sent; nothing reached the host."""


class HostUnreachable(RemoteError):
    """The WinRM endpoint could not be reached or stopped answering mid-call."""


class AuthenticationFailed(RemoteError):
    """WinRM answered 401: the configured account or transport is not accepted."""


class DeadlineExceeded(RemoteError):
    """The operation was still running when its deadline passed; the shell was abandoned."""

    def __init__(self, message: str, *, host: str = "", timeout_s: float) -> None:
        super().__init__(message, host=host)
        self.timeout_s = timeout_s


class BadReply(RemoteError):
    """The host answered, but not with anything this adapter understands."""


class WinRMFault(RemoteError):
    """The WinRM service answered with a SOAP fault (quota, shell gone, access denied...)."""


class RemoteScriptFailed(RemoteError):
    """The remote script ran and reported a failure; `remote_message` is its own words."""

    def __init__(
        self, message: str, *, host: str = "", op: str, remote_message: str, exit_code: int
    ) -> None:
        super().__init__(message, host=host)
        self.op = op
        self.remote_message = remote_message
        self.exit_code = exit_code


class StateNotReached(RemoteScriptFailed):
    """An action ran but IIS/SCM did not report the wanted state before the script's wait."""

    def __init__(self, *, host: str, op: str, target: str, wanted: str, actual: str) -> None:
        message = (
            f"{target} on {host} is {actual!r}, not {wanted!r}, after waiting for it. "
            f"Look at the host's event log (IIS/Service Control Manager) before retrying."
        )
        super().__init__(message, host=host, op=op, remote_message=message, exit_code=0)
        self.target = target
        self.wanted = wanted
        self.actual = actual
