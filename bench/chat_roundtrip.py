"""The chat path: a bare botbuilder echo bot versus this bot's `help`, side by side in one run.

Both bots run as processes of their own on loopback (the echo bot: botbuilder 4.17.1's
CloudAdapter and an ActivityHandler that echoes the text, nothing else; this bot:
`mcms-bot run` with the demo config against a lab), and both reply to the same fake Bot
Connector, which runs in this process and timestamps every reply as it arrives.

The load is closed-loop, like people typing: `--conversations` personal chats at once, each
sending its next message once the previous one was answered (its reply at the connector and
its HTTP answer both in). A message's round trip is the time from sending it to its reply
reaching the connector. Rounds alternate echo, bot, echo, bot... so a machine that gets
busier or quieter during the run touches both alike; each bot is warmed up first.

Prints p50/p99 round trip and messages/s of each, and the ratios against the goals:
this bot's p50 and p99 at most 1.25x the echo bot's, its throughput at least 0.8x.

    .venv/bin/python -m bench.chat_roundtrip [--messages 300] [--rounds 3] [--conversations 8]
        [--profile bot.prof]   # this bot's process under cProfile (then: python -m pstats)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.load import check_loopback
from bot.demo import DEMO_AUDIT_KEY
from lab.core import Lab
from lab.demo import DEMO_PASSWORD, DEMO_USERNAME, demo_lab
from tests.bot_process import BotProcess, free_port, start_bot
from tests.fake_connector import ConnectorCall, FakeConnector
from tests.lab_fixtures import write_lab_config
from tests.teams_factory import make_message

# The goals of the issue: at most this many times the echo bot's latency, at least this
# share of its throughput.
LATENCY_GOAL = 1.25
THROUGHPUT_GOAL = 0.8
WARMUP_MESSAGES = 40
REPO = Path(__file__).resolve().parents[1]  # for the echo bot's `-m bench.chat_roundtrip`
REPLY_TIMEOUT_S = 30.0


# -- the echo bot (its own process: `python -m bench.chat_roundtrip --echo-bot PORT`) ------


def serve_echo_bot(port: int) -> None:
    """botbuilder's own floor: CloudAdapter, no authentication (local), echo the text."""
    from aiohttp import web
    from botbuilder.core import ActivityHandler, MessageFactory, TurnContext
    from botbuilder.integration.aiohttp import (
        CloudAdapter,
        ConfigurationBotFrameworkAuthentication,
    )

    class Settings:
        APP_ID = ""
        APP_PASSWORD = ""
        APP_TYPE = "MultiTenant"
        APP_TENANTID = ""

    class EchoBot(ActivityHandler):  # type: ignore[misc]
        async def on_message_activity(self, turn_context: TurnContext) -> None:
            await turn_context.send_activity(MessageFactory.text(turn_context.activity.text))

    adapter = CloudAdapter(ConfigurationBotFrameworkAuthentication(Settings()))
    bot = EchoBot()

    async def messages(request: web.Request) -> web.StreamResponse:
        response: web.StreamResponse = await adapter.process(request, bot)
        return response

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/api/messages", messages)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


# -- the load --------------------------------------------------------------------------------


@dataclass
class Round:
    """One bot's figures from one round."""

    latencies_s: list[float] = field(default_factory=list)
    duration_s: float = 0.0


class Replies:
    """Futures for the replies the connector has yet to see, by the message they answer."""

    def __init__(self, connector: FakeConnector) -> None:
        self._waiting: dict[str, asyncio.Future[float]] = {}
        connector.listeners.append(self._seen)

    def expect(self, activity_id: str) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiting[activity_id] = future
        return future

    def _seen(self, call: ConnectorCall) -> None:
        # A reply POSTs to .../activities/{replyToId}: the id of the message it answers.
        future = self._waiting.pop(call.activity_id or "", None)
        if future is not None and not future.done():
            if call.method == "POST" and call.status < 300:
                future.set_result(time.perf_counter())
            else:
                future.set_exception(AssertionError(f"unexpected reply {call}"))


async def _conversation(
    session: aiohttp.ClientSession,
    bot_url: str,
    connector: FakeConnector,
    replies: Replies,
    conversation_id: str,
    text: str,
    count: int,
    latencies: list[float],
) -> None:
    for _ in range(count):
        activity = make_message(text, service_url=connector.url, conversation_id=conversation_id)
        reply = replies.expect(activity["id"])
        sent = time.perf_counter()
        async with session.post(f"{bot_url}/api/messages", json=activity) as response:
            if response.status >= 300:
                raise AssertionError(f"{bot_url} answered {response.status}")
        arrived = await asyncio.wait_for(reply, REPLY_TIMEOUT_S)
        latencies.append(arrived - sent)


async def run_round(
    bot_url: str,
    connector: FakeConnector,
    replies: Replies,
    *,
    text: str,
    messages: int,
    conversations: int,
    tag: str,
) -> Round:
    """`messages` messages over `conversations` chats at once; every reply awaited."""
    check_loopback(bot_url)
    result = Round()
    shares = [
        messages // conversations + (n < messages % conversations) for n in range(conversations)
    ]
    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        await asyncio.gather(
            *(
                _conversation(
                    session,
                    bot_url,
                    connector,
                    replies,
                    f"bench-{tag}-{n}",
                    text,
                    share,
                    result.latencies_s,
                )
                for n, share in enumerate(shares)
            )
        )
        result.duration_s = time.perf_counter() - started
    return result


# -- figures ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    p50_ms: float
    p99_ms: float
    per_s: float
    messages: int


def figures(rounds: Sequence[Round]) -> Figures:
    latencies = sorted(s for r in rounds for s in r.latencies_s)
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return Figures(
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=cuts[98] * 1000,
        per_s=len(latencies) / sum(r.duration_s for r in rounds),
        messages=len(latencies),
    )


def report(echo: Figures, bot: Figures) -> str:
    """The table and the ratios against the goals."""
    p50, p99, rate = bot.p50_ms / echo.p50_ms, bot.p99_ms / echo.p99_ms, bot.per_s / echo.per_s

    def verdict(ok: bool) -> str:
        return "meets the goal" if ok else "MISSES the goal"

    def row(label: str, side: Figures) -> str:
        return f"{label:24}{side.p50_ms:8.1f}ms{side.p99_ms:8.1f}ms{side.per_s:12.1f}"

    return "\n".join(
        [
            f"{'':24}{'p50':>10}{'p99':>10}{'messages/s':>12}",
            row("echo bot (botbuilder)", echo),
            row("this bot, help", bot),
            f"{'ratio':24}{p50:9.2f}x{p99:9.2f}x{rate:11.2f}x",
            f"p50 {p50:.2f}x echo (goal <= {LATENCY_GOAL}x): {verdict(p50 <= LATENCY_GOAL)}",
            f"p99 {p99:.2f}x echo (goal <= {LATENCY_GOAL}x): {verdict(p99 <= LATENCY_GOAL)}",
            f"throughput {rate:.2f}x echo (goal >= {THROUGHPUT_GOAL}x): "
            f"{verdict(rate >= THROUGHPUT_GOAL)}",
        ]
    )


# -- the run ---------------------------------------------------------------------------------


async def measure(
    lab: Lab,
    root: Path,
    *,
    messages: int,
    rounds: int,
    conversations: int,
    profile: str | None = None,
) -> tuple[Figures, Figures]:
    """(echo bot, this bot): both started here, warmed up, then measured round after round."""
    connector = FakeConnector()
    await connector.start()
    replies = Replies(connector)
    env = {
        **os.environ,
        "MCMS_LAB_WINRM_USER": DEMO_USERNAME,
        "MCMS_LAB_WINRM_PASSWORD": DEMO_PASSWORD,
        "MCMS_AUDIT_KEY": DEMO_AUDIT_KEY,
    }
    bots: list[BotProcess] = []
    try:
        echo_port, bot_port = free_port(), free_port()
        echo_dir, bot_dir = root / "echo", root / "bot"
        echo_dir.mkdir()
        echo = await start_bot(
            [sys.executable, "-m", "bench.chat_roundtrip", "--echo-bot", str(echo_port)],
            port=echo_port,
            cwd=echo_dir,
            env={**env, "PYTHONPATH": str(REPO)},
        )
        bots.append(echo)
        config = write_lab_config(
            lab, bot_dir, port=bot_port, extra='\n[logging]\nlevel = "WARNING"\n'
        )
        argv = [str(Path(sys.executable).parent / "mcms-bot"), "run", "--config", str(config)]
        if profile:
            # cProfile sees the event loop's thread only: time spent on worker threads
            # (botbuilder's HTTP client, token checks) shows as time waited for them.
            profiled = [sys.executable, "-m", "cProfile", "-o", profile]
            argv = [*profiled, "-m", "bot.cli", *argv[1:]]
        bot = await start_bot(argv, port=bot_port, cwd=bot_dir, env=env)
        bots.append(bot)
        sides = {"echo": (echo.url, "hello"), "bot": (bot.url, "help")}
        for tag, (url, text) in sides.items():
            await run_round(
                url,
                connector,
                replies,
                text=text,
                messages=WARMUP_MESSAGES,
                conversations=conversations,
                tag=f"warm-{tag}",
            )
        measured: dict[str, list[Round]] = {"echo": [], "bot": []}
        for n in range(rounds):
            for tag, (url, text) in sides.items():
                measured[tag].append(
                    await run_round(
                        url,
                        connector,
                        replies,
                        text=text,
                        messages=messages,
                        conversations=conversations,
                        tag=f"{tag}{n}",
                    )
                )
        return figures(measured["echo"]), figures(measured["bot"])
    finally:
        for process in bots:
            process.stop()
        await connector.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.chat_roundtrip")
    parser.add_argument("--messages", type=int, default=300, help="messages per bot per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--conversations", type=int, default=8, help="chats at once")
    parser.add_argument("--profile", metavar="FILE", help="cProfile this bot's process into FILE")
    parser.add_argument("--echo-bot", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.echo_bot is not None:
        serve_echo_bot(args.echo_bot)
        return
    if args.profile:
        args.profile = str(Path(args.profile).resolve())  # the bot runs in another directory
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with demo_lab(root / "lab") as lab:
            echo, bot = asyncio.run(
                measure(
                    lab,
                    root,
                    messages=args.messages,
                    rounds=args.rounds,
                    conversations=args.conversations,
                    profile=args.profile,
                )
            )
    print(
        f"{args.conversations} conversations at once, {args.messages} messages per bot per "
        f"round, {args.rounds} rounds alternating (echo, bot); {os.cpu_count()} CPUs; "
        "round trip = message sent -> reply at the fake connector"
    )
    print(report(echo, bot))


if __name__ == "__main__":
    main()
