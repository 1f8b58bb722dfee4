"""The bot as its own process (`mcms-bot run`), talked to over loopback HTTP like Teams would.

For what only a real process shows: the installed console script, its start-up (logging,
the OS trust store), its files. Replies go to a FakeConnector in the test's own event loop.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from tests.teams_factory import make_message

if TYPE_CHECKING:
    from tests.fake_connector import ConnectorCall, FakeConnector

START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class BotProcess:
    process: subprocess.Popen[bytes]
    port: int
    output: Path  # the process's stdout and stderr

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def say(self, text: str, connector: FakeConnector) -> ConnectorCall:
        """Send a personal-chat message; return the bot's one reply at the connector."""
        activity = make_message(text, service_url=connector.url)
        async with httpx.AsyncClient(trust_env=False) as client:
            response = await client.post(f"{self.url}/api/messages", json=activity, timeout=30)
        assert response.status_code < 300, response.text
        deadline = asyncio.get_running_loop().time() + 30
        while asyncio.get_running_loop().time() < deadline:
            replies = [c for c in connector.activities if c.activity_id == activity["id"]]
            if replies:
                return replies[0]
            await asyncio.sleep(0.05)
        raise AssertionError(f"no reply to {text!r}; bot output:\n{self.output.read_text()}")

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise


async def start_bot(
    argv: list[str], *, port: int, cwd: Path, env: dict[str, str] | None = None
) -> BotProcess:
    """Start `argv` (an `mcms-bot run ...`) and wait until /healthz answers."""
    output = cwd / "bot-process.out"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env if env is not None else dict(os.environ),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    bot = BotProcess(process, port, output)
    deadline = asyncio.get_running_loop().time() + START_TIMEOUT_S
    async with httpx.AsyncClient(trust_env=False) as client:
        while asyncio.get_running_loop().time() < deadline:
            if process.poll() is not None:
                raise AssertionError(
                    f"the bot exited with {process.returncode}:\n{output.read_text()}"
                )
            try:
                if (await client.get(f"{bot.url}/healthz", timeout=2)).status_code == 200:
                    return bot
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    bot.stop()
    raise AssertionError(f"the bot did not answer /healthz:\n{output.read_text()}")
