"""Blue/green versus a single-node rollback, as users see them: failed requests and the gap.

A steady load (bench/load.py: 50 req/s, bounded, loopback) goes to the pair's public URL —
the lab's ARR router — while, in one run, side by side:

  (a) the pair's traffic is switched to the standby slot and back, through the ARR adapter
      (online → drain → wait → offline, each step read back; commands.switch), and
  (b) the live slot itself is rolled back by the bot's own rollback flow (the chat command,
      an approval, the executor's 18 steps), behind the same router.

Prints requests sent, failed (5xx / refused / reset), the longest time without a
successful answer, and how long each change took. The goal: (a) 0 failed and no gap over
1 s, against the downtime (b) really costs.

    .venv/bin/python -m bench.switch_under_load [--count 1000] [--rate 50]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import tempfile
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.load import LoadResult, run_load
from bot.demo import DEMO_AUDIT_KEY
from bot.ports import OnSent
from bot.runs.executor import Executor
from bot.services import open_runtime
from commands.config import Config
from commands.context import Services
from commands.dispatch import CommandDispatcher
from commands.registry import default_registry
from commands.slots import SwitchPlan, plan_switch, view_pair
from commands.switch import run_switch
from commands.types import Actor, Invocation
from lab.core import Lab
from lab.demo import DEMO_PASSWORD, DEMO_USERNAME, demo_lab
from tests.browser_stack import bot_config

PAIR = "prod"
# How long the new slot serves before the switch back: traffic really runs on it.
_DWELL_S = 1.0


async def switch_and_back(services: Services, pair_name: str) -> None:
    """Case (a): traffic to the standby slot, a moment there, then back; raises on failure."""
    pair = services.config.pairs[pair_name]
    router = services.routers(pair.router)
    timeout = pair.router.step_timeout_s
    first = view_pair(pair_name, pair, await router.read_farm(timeout_s=timeout))
    if first.live is None or first.standby is None:
        raise RuntimeError(f"pair {pair_name} has no clear live slot: {first.problems}")
    for index, target in enumerate((first.standby, first.live)):
        if index:
            await asyncio.sleep(_DWELL_S)
        farm = await router.read_farm(timeout_s=timeout)
        plan = plan_switch(view_pair(pair_name, pair, farm), target)
        if not isinstance(plan, SwitchPlan):
            raise RuntimeError(plan.reason)
        outcome = await run_switch(
            router,
            plan,
            farm,
            drain_deadline_s=pair.router.drain_deadline_s,
            step_timeout_s=timeout,
        )
        if not outcome.ok:
            stopped = outcome.stopped_at
            raise RuntimeError(f"switch to {target} stopped: {stopped and stopped.problems}")


class _Quiet:
    """A Reporter that posts nowhere: the bench measures the hosts, not the chat."""

    async def post(
        self,
        conversation_id: str,
        text: str,
        card: dict[str, Any] | None,
        *,
        on_sent: OnSent | None = None,
    ) -> str | None:
        return None

    async def update(
        self,
        conversation_id: str,
        message: str,
        text: str,
        card: dict[str, Any],
        *,
        final: bool = False,
    ) -> None:
        return None


async def rollback_live_slot(services: Services, environment: str) -> None:
    """Case (b): `rollback ENVIRONMENT` as an operator types it, approved, run by the executor."""
    config = services.config
    person = next(p for p in config.people if {"operator", "approver"} <= set(p.roles))
    actor = Actor(person.name, person.aad_object_id)
    invocation = Invocation(
        f"rollback {environment}",
        actor,
        config.teams.allowed_tenants[0],
        "bench",
        "personal",
        "bench-rollback",
    )
    reply = await CommandDispatcher(services, default_registry()).handle(invocation)
    request_id = reply.extra.get("request_id")
    if not isinstance(request_id, str):
        raise RuntimeError(f"rollback was not requested: {reply.text}")
    # The approval card's click is not what is measured: approve in the store directly.
    await services.store.transition_request(
        request_id,
        ["pending"],
        "approved",
        decided_by_name=person.name,
        decided_by_id=person.aad_object_id,
        decided_at=services.now(),
    )
    request = await services.store.get_request(request_id)
    assert request is not None
    executor = Executor(services, _Quiet())
    executor.submit(request)
    await executor.drain()
    done = await services.store.get_request(request_id)
    if done is None or done.state != "succeeded":
        raise RuntimeError(f"rollback {request_id} ended {done and done.state}")


def bench_config(lab: Lab, root: Path) -> Config:
    """The demo config, pointed at this lab's ports and at files under `root`."""
    return Config.model_validate(tomllib.loads(bot_config(lab, root, port=0)))


def table(results: Sequence[tuple[str, LoadResult]]) -> str:
    """The figures side by side, one column per case."""

    def row(label: str, cells: Sequence[str]) -> str:
        return f"{label:<34}" + "".join(f"{c:>34}" for c in cells)

    rs = [r for _, r in results]
    lines = [
        row("", [name for name, _ in results]),
        row("requests sent", [str(r.sent) for r in rs]),
        row(
            "failed (5xx / refused / reset)",
            [f"{r.failed} ({r.errors_5xx} / {r.refused} / {r.reset + r.timed_out})" for r in rs],
        ),
        row("longest gap without a success", [f"{r.longest_gap_s:.3f} s" for r in rs]),
        row(
            "the change took",
            [
                f"{r.change_s:.2f} s" + ("" if r.change_within_load else " (outlasted the load!)")
                if r.change_s is not None
                else "-"
                for r in rs
            ],
        ),
        row(
            "answered by",
            [", ".join(f"{k} {v}" for k, v in sorted(r.served_by.items())) for r in rs],
        ),
        row("most requests in flight", [str(r.max_in_flight) for r in rs]),
    ]
    return "\n".join(lines)


async def measure(lab: Lab, root: Path, count: int, rate: float) -> list[tuple[str, LoadResult]]:
    runtime = await open_runtime(bench_config(lab, root))
    try:
        services = runtime.services
        pair = services.config.pairs[PAIR]
        url = lab.public_url(lab.router_for(PAIR)) + "/health"
        switched = await run_load(
            url, rate=rate, count=count, started=lambda: switch_and_back(services, PAIR)
        )
        live = view_pair(
            PAIR,
            pair,
            await services.routers(pair.router).read_farm(timeout_s=pair.router.step_timeout_s),
        ).live
        assert live is not None
        rolled = await run_load(
            url, rate=rate, count=count, started=lambda: rollback_live_slot(services, live)
        )
    finally:
        await runtime.close()
    return [("(a) blue/green switch + back", switched), ("(b) rollback of the live slot", rolled)]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.switch_under_load")
    parser.add_argument("--count", type=int, default=1000, help="requests per case")
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("MCMS_LAB_WINRM_USER", DEMO_USERNAME)
    os.environ.setdefault("MCMS_LAB_WINRM_PASSWORD", DEMO_PASSWORD)
    os.environ.setdefault("MCMS_AUDIT_KEY", DEMO_AUDIT_KEY)  # the audit chain is keyed
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with demo_lab(root / "lab") as lab:
            results = asyncio.run(measure(lab, root, args.count, args.rate))
    print(
        f"{args.count} GET /health per case at {args.rate:g} req/s to the pair's public URL "
        "(lab ARR router, portals answer in ~5 ms):"
    )
    print(table(results))


if __name__ == "__main__":
    main()
