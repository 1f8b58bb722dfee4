"""The break-glass CLI's commands: open the shared runtime, act as the mapped person, and
turn what happened into an exit status.

Exit status: 0 succeeded (or answered), 1 the run failed or was cancelled (restored or not:
the card says which), or smoke failed; 2 usage or config error (nothing was asked); 3
refused (the environment is busy, a role or break-glass rule, the plan changed, declined);
130 interrupted by Ctrl-C before anything was started (a request made is withdrawn).

A change is the chat's flow with the terminal as its conversation: the request (the same
plan and approval card), a break-glass approval by this person with the reason given
(audited, in the timeline, kept as a notice for Teams), then the run on this process's
executor. Ctrl-C asks whether to cancel it (a cancel is the run's restore); SIGTERM or a
closed terminal cancels it; either way the process waits for the run's end, so no run is
ever left without its process.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from adapters.store.rows import Request
from bot.runs.leases import renew_loop
from bot.runs.recovery import recover
from bot.services import AuditKeyMissing, Runtime, open_runtime
from bot.terminal.display import Display, make_display
from bot.terminal.handover import settle_here
from bot.terminal.session import Terminal, cli_actor, os_login, setup_cli_logging
from commands.approvals import MIN_REASON, break_glass_notice, decide
from commands.cards.approval import action_data, frozen_words
from commands.cards.run import render_run_card
from commands.config import Config
from commands.plan import Plan
from commands.run_card import run_view
from commands.types import Reply

OK, FAILED, USAGE, REFUSED = 0, 1, 2, 3
# Ctrl-C before anything was started (128 + SIGINT, as shells report it).
INTERRUPTED = 130
# Refusal reasons that mean the command line was wrong, not that a rule said no.
USAGE_REASONS = frozenset(
    {
        "empty",
        "unknown-command",
        "unknown-environment",
        "missing-environment",
        "too-many-arguments",
        "usage",
        "missing-version",
        "missing-run",
        "unknown-run",
    }
)
FOLLOW_EVERY_S = 1.0
FORWARD_GRACE_S = 20.0
# The start of the executor's note when another process settled the request first.
SETTLED_ELSEWHERE = "the request was settled elsewhere"


@dataclass(frozen=True)
class ChangeOrder:
    """`rollback|deploy ENV [VERSION] [--exclude HOST]... --reason TEXT [--yes]`."""

    kind: str
    environment: str
    version: str | None
    exclude: tuple[str, ...]
    reason: str
    yes: bool

    def words(self) -> str:
        parts = [self.kind, self.environment, *([self.version] if self.version else [])]
        for host in self.exclude:
            parts += ["--exclude", host]
        return " ".join(parts)


def reply_status(reply: Reply) -> int:
    if reply.refused:
        return USAGE if reply.extra.get("reason") in USAGE_REASONS else REFUSED
    if reply.extra.get("passed") is False:
        return FAILED
    state = reply.extra.get("state")
    if state in ("failed", "cancelled", "interrupted"):
        return FAILED
    return OK


def err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class _Answer:
    """A line read from stdin on a daemon thread: the process never waits on it to exit."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.future: asyncio.Future[str] = loop.create_future()

        def read() -> None:
            try:
                line = sys.stdin.readline()
            except (OSError, ValueError):
                line = ""
            loop.call_soon_threadsafe(self._set, line)

        threading.Thread(target=read, name="cli-answer", daemon=True).start()

    def _set(self, line: str) -> None:
        if not self.future.done():
            self.future.set_result(line)


async def ask(question: str) -> str | None:
    """The answer typed to `question` (stderr), or None at end of input."""
    print(question, end=" ", file=sys.stderr, flush=True)
    line = await _Answer(asyncio.get_running_loop()).future
    return line.strip().lower() if line else None


class RunWatch:
    """Waits for the run of `request_id` to end; Ctrl-C asks to cancel, SIGTERM/SIGHUP
    cancel. The cancel goes through the `cancel` command, as in chat."""

    def __init__(self, terminal: Terminal, request_id: str) -> None:
        self._terminal = terminal
        self._request_id = request_id
        self._asking = False
        self._cancelled = False
        self._tasks: set[asyncio.Task[None]] = set()

    def _spawn(self, work: Callable[[], Any]) -> None:
        task = asyncio.get_running_loop().create_task(work())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_id(self) -> str | None:
        # The run exists once the executor has re-planned; a signal before that waits for it.
        for _ in range(600):
            run = await self._terminal.services.store.run_for_request(self._request_id)
            if run is not None:
                return run.id
            request = await self._terminal.services.store.get_request(self._request_id)
            if request is None or request.state not in ("approved", "running"):
                return None
            await asyncio.sleep(0.1)
        return None

    async def _cancel(self, why: str) -> None:
        if self._cancelled:
            return
        run_id = await self._run_id()
        if run_id is None:
            self._terminal.display.message("There is no run to cancel (it did not start).")
            return
        self._cancelled = True
        reply = await self._terminal.say(f"cancel {run_id}")
        self._terminal.display.message(f"{why}: {reply.text}")

    async def _interrupted(self) -> None:
        display = self._terminal.display
        if self._cancelled:
            display.message(
                "Cancel already requested: waiting for the run to stop and restore "
                "(the run is never left without this process)."
            )
            return
        if self._asking:
            return
        self._asking = True
        display.pause()
        try:
            answer = await ask(
                "\nCancel the run? It stops after the step in flight and puts back what it "
                "changed. [y/N]"
            )
            if answer is None or answer.startswith("y"):
                await self._cancel("Ctrl-C" if answer else "Ctrl-C (no answer possible)")
            else:
                display.message("Not cancelled: the run goes on.")
        finally:
            self._asking = False
            display.resume()

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, self._spawn, self._interrupted)
        for sig, name in ((signal.SIGTERM, "SIGTERM"), (signal.SIGHUP, "terminal closed")):
            loop.add_signal_handler(sig, self._spawn, lambda n=name: self._cancel(n))
        try:
            await self._terminal.executor.drain()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            for task in list(self._tasks):
                task.cancel()


class BeforeTheRun:
    """Ctrl-C before the run exists: nothing was started, so there is nothing to cancel.
    The command stops at the next safe point — a host read or a record being written
    finishes first, an unanswered question is dropped — withdraws the request it made, if
    any, and exits with INTERRUPTED. Once the run is submitted, RunWatch takes Ctrl-C over."""

    def __init__(self, display: Display) -> None:
        self._display = display
        self.requested = False
        self._question: asyncio.Task[str | None] | None = None

    def install(self) -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self._interrupt)

    def uninstall(self) -> None:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)

    def _interrupt(self) -> None:
        if not self.requested:
            self._display.message(
                "\nCtrl-C: stopping before the run starts (nothing has been started, so there "
                "is nothing to cancel; a host read in flight finishes first)."
            )
        self.requested = True
        if self._question is not None:
            self._question.cancel()

    async def ask(self, question: str) -> str | None:
        """`ask`, given up at Ctrl-C (None, as at end of input)."""
        self._question = asyncio.ensure_future(ask(question))
        try:
            return await self._question
        except asyncio.CancelledError:
            if not self.requested:
                raise
            return None
        finally:
            self._question = None


async def run_change(terminal: Terminal, order: ChangeOrder) -> int:
    if len(order.reason.strip()) < MIN_REASON:
        err(
            f"mcms-bot: --reason must say why in at least {MIN_REASON} characters (it is "
            "audited and announced in the alert channel). Nothing was asked."
        )
        return USAGE
    stop = BeforeTheRun(terminal.display)
    stop.install()
    submitted = False
    try:
        request_id = await _request_and_approve(terminal, order, stop)
        if isinstance(request_id, int):
            return request_id
        approved = await terminal.services.store.get_request(request_id)
        assert approved is not None
        if stop.requested:
            terminal.display.message(
                f"Ctrl-C came while {request_id} was being approved: it is approved, so the run "
                "starts now — press Ctrl-C again to cancel it (a cancel restores what it changed)."
            )
        if not terminal.executor.submit(approved):
            return REFUSED
        submitted = True
    finally:
        if not submitted:
            stop.uninstall()
    # RunWatch installs its own Ctrl-C handler before its first await: no gap after submit.
    await RunWatch(terminal, request_id).wait()
    return await _outcome(terminal, request_id)


async def _interrupted(terminal: Terminal, request: Request | None) -> int:
    """Ctrl-C came before the approval: withdraw what was asked, start nothing."""
    if request is not None:
        await _withdraw(terminal, request, "interrupted at the terminal (Ctrl-C)")
    withdrawn = f"; {request.id} withdrawn" if request is not None else ""
    terminal.display.message(f"Interrupted before the run started: nothing ran{withdrawn}.")
    terminal.display.result({"interrupted": True, "request_id": request.id if request else None})
    return INTERRUPTED


async def _request_and_approve(
    terminal: Terminal, order: ChangeOrder, stop: BeforeTheRun
) -> str | int:
    """The request, approved by break glass: its id, or the exit status."""
    services, display = terminal.services, terminal.display
    # A run whose process died is settled here as the bot would settle it — its hosts
    # restored per on_failure before its lock is freed, its card and conversation told
    # (kept for the bot to deliver) — never merely unlocked: a bare unlock left hosts
    # half-changed and a card saying "running" that no instance would ever settle.
    await settle_here(services, display, await recover(services, settle_approved=False))
    if stop.requested:
        return await _interrupted(terminal, None)
    reply = await terminal.say(order.words(), break_glass=True)
    display.card(reply.card, reply.text, final=False)
    if reply.refused:
        display.result({"refused": True, "reason": reply.extra.get("reason"), "text": reply.text})
        return reply_status(reply)
    request_id = str(reply.extra["request_id"])
    await services.store.set_request_origin(request_id, terminal.conversation_id)
    request = await services.store.get_request(request_id)
    assert request is not None
    if reply.start_run is None:
        refused = await _break_glass(terminal, request, order, stop)
        if refused is not None:
            return refused
    elif stop.requested:
        # Approved by policy already (approval.required = false): it runs, and says so.
        display.message("The request was approved by policy before Ctrl-C: the run starts.")
    return request_id


async def _break_glass(
    terminal: Terminal, request: Request, order: ChangeOrder, stop: BeforeTheRun
) -> int | None:
    """Approve `request` by break glass; None when approved, else the exit status (and the
    request is withdrawn, so nothing is left pending)."""
    services, display = terminal.services, terminal.display
    if stop.requested:
        return await _interrupted(terminal, request)
    if not order.yes and sys.stdin.isatty():
        answer = await stop.ask(
            f"Break glass: approve {request.id} alone as {terminal.actor.name} and run it now? "
            "It is audited and announced in the alert channel. [y/N]"
        )
        if stop.requested:
            return await _interrupted(terminal, request)
        if not answer or not answer.startswith("y"):
            await _withdraw(terminal, request, "declined at the terminal")
            display.message(f"Not run: {request.id} withdrawn.")
            return REFUSED
    data = click_data(request, "break_glass", order.reason)
    decision = await decide(services, "break_glass", data, terminal.actor, terminal.tenant_id)
    if decision.outcome != "approved" or decision.request is None:
        why = decision.message or f"the request is {decision.outcome}"
        await _withdraw(terminal, request, f"break glass refused: {decision.code}")
        display.message(f"Refused: {why} ({request.id} withdrawn; nothing ran.)")
        display.result({"refused": True, "reason": decision.code, "text": why})
        return REFUSED
    freeze = await services.store.freeze_of(request.environment)
    overrides = (
        f" It overrides the freeze: {request.environment} is "
        f"{frozen_words(freeze, services.config.tz)}."
        if freeze
        else ""
    )
    text = (
        break_glass_notice(decision.request)
        + f" — from the break-glass CLI ({terminal.where}).{overrides}"
    )
    await services.store.add_notice(request.environment, "break-glass", text)
    display.message(
        f"🚨 BREAK GLASS: {request.id} approved by {terminal.actor.name} ({order.reason}). "
        f"Audited; the alert conversations are told as soon as the bot reaches Teams.{overrides}"
    )
    return None


def click_data(request: Request, verb: str, reason: str) -> dict[str, Any]:
    """What the card's button would send, with the reason typed: the same checks apply."""
    return {**action_data(request, Plan.from_json(request.plan_json), verb), "reason": reason}


async def _withdraw(terminal: Terminal, request: Request, reason: str) -> None:
    data = click_data(request, "reject", reason)
    await decide(terminal.services, "reject", data, terminal.actor, terminal.tenant_id)


async def _outcome(terminal: Terminal, request_id: str) -> int:
    store = terminal.services.store
    request = await store.get_request(request_id)
    run = await store.run_for_request(request_id)
    state = run.state if run else (request.state if request else "unknown")
    data: dict[str, Any] = {
        "request_id": request_id,
        "run_id": run.id if run else None,
        "state": state,
        "restore": run.restore if run else None,
        "note": run.error if run else (request.reason if request else None),
    }
    note = run.error or "" if run else ""
    if run is None or " is busy with " in note or note.startswith(SETTLED_ELSEWHERE):
        data["exit"] = REFUSED
    else:
        data["exit"] = OK if state == "succeeded" else FAILED
    terminal.display.result(data)
    return int(data["exit"])


async def follow_run(terminal: Terminal, run_id: str) -> int:
    """`run RUN-ID`: the card once; while the run goes on, redrawn until it ends."""
    reply = await terminal.say(f"run {run_id}")
    terminal.display.card(reply.card, reply.text, final=reply.extra.get("state") != "running")
    if reply.refused or reply.extra.get("state") != "running":
        terminal.display.result({k: v for k, v in reply.extra.items() if k != "steps"})
        return reply_status(reply)
    store, services = terminal.services.store, terminal.services
    while True:
        await asyncio.sleep(FOLLOW_EVERY_S)
        run = await store.get_run(reply.extra["run_id"])
        request = await store.get_request(run.request_id) if run else None
        if run is None or request is None:
            return FAILED
        view = await run_view(services, run, request)
        done = run.state != "running"
        terminal.display.card(
            render_run_card(view, services.config.tz), f"{run.id}: {run.state}", final=done
        )
        if done:
            terminal.display.result({"run_id": run.id, "state": run.state, "restore": run.restore})
            return OK if run.state == "succeeded" else FAILED


async def session(config: Config, json_output: bool, act: Callable[[Terminal], Any]) -> int:
    """Open the shared runtime as the mapped person, run `act`, close everything."""
    login = os_login()
    actor = cli_actor(config, login)
    if isinstance(actor, str):
        err(f"mcms-bot: refused: {actor}")
        return REFUSED
    try:
        runtime: Runtime = await open_runtime(config)
    except AuditKeyMissing as exc:
        err(f"mcms-bot: {exc}")
        return USAGE
    display: Display = make_display(json_output)
    terminal = Terminal(runtime, actor, login, display)
    # Beside bot instances on PostgreSQL, this process's runs and locks stay its own only
    # while it renews their leases.
    renewing = (
        asyncio.create_task(renew_loop(runtime.store))
        if runtime.store.dialect == "postgresql"
        else None
    )
    try:
        status: int = await act(terminal)
        return status
    finally:
        if renewing is not None:
            renewing.cancel()
        display.close()
        # A failed run's alert is on its way to OpsGenie: give it time to be taken (what is
        # not, the bot sends again at its next start).
        await terminal.forwarder.close(grace_s=FORWARD_GRACE_S)
        await runtime.close()


async def one_shot(terminal: Terminal, text: str) -> int:
    reply = await terminal.say(text)
    terminal.display.card(reply.card, reply.text, final=True)
    terminal.display.result({"text": reply.text, "refused": reply.refused, **reply.extra})
    return reply_status(reply)


def main_operator(config: Config, args: Any) -> int:
    """The entry from bot/cli.py for every operator command."""
    setup_cli_logging(config)
    command = args.command

    async def act(terminal: Terminal) -> int:
        if command in ("rollback", "deploy"):
            order = ChangeOrder(
                command,
                args.environment,
                args.version,
                tuple(args.exclude or ()),
                args.reason,
                args.yes,
            )
            return await run_change(terminal, order)
        if command == "run":
            return await follow_run(terminal, args.run_id)
        return await one_shot(terminal, " ".join(operator_words(args)))

    try:
        return asyncio.run(session(config, args.json, act))
    except KeyboardInterrupt:
        # A one-shot command (status, smoke, plan, history, lock...) or following a run:
        # nothing of a run is started or cancelled by leaving it.
        err("mcms-bot: interrupted (Ctrl-C); no run was started or cancelled by this command.")
        return INTERRUPTED


def operator_words(args: Any) -> list[str]:
    """The chat command line of a one-shot CLI command."""
    command = args.command
    if command == "status":
        return ["status", *([args.environment] if args.environment else [])]
    if command == "smoke":
        return ["smoke", args.environment]
    if command == "plan":
        words = ["plan", args.kind, args.environment, *([args.version] if args.version else [])]
        for host in args.exclude or ():
            words += ["--exclude", host]
        return words
    if command == "history":
        count = [] if args.count is None else [str(args.count)]
        return ["history", args.environment, *count]
    if command == "cancel":
        return ["cancel", args.run_id]
    if command == "lock":
        return ["lock", args.environment, *args.reason.split()]
    if command == "unlock":
        return ["unlock", args.environment]
    raise ValueError(f"not an operator command: {command}")
