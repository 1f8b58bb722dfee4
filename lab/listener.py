"""An aiohttp app on one loopback port that can be closed and reopened on the same port.

Closing the listening socket (rather than answering 503) is what makes a client see
"connection refused" — exactly what the playbook's smoke run reports for a stopped site.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from aiohttp import web

# In-flight handlers (a stalled Receive) must not hold a close up for aiohttp's default 60 s.
_SHUTDOWN_TIMEOUT_S = 0.5


class Listener:
    """Serves a fresh app from `make_app` each time it opens; the port stays the same."""

    def __init__(self, make_app: Callable[[], web.Application], bind: str, port: int = 0) -> None:
        self._make_app = make_app
        self._bind = bind
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def is_open(self) -> bool:
        return self._runner is not None

    async def open(self) -> None:
        if self._runner is not None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self._bind, self.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        runner = web.AppRunner(
            self._make_app(),
            handle_signals=False,
            access_log=None,
            shutdown_timeout=_SHUTDOWN_TIMEOUT_S,
        )
        await runner.setup()
        await web.SockSite(runner, sock).start()
        self._runner = runner

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def set_open(self, want_open: bool) -> None:
        if want_open:
            await self.open()
        else:
            await self.close()
