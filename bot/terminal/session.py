"""The terminal edge: who is typing, and the same dispatcher, executor and store as chat.

Like bot/teams/activities.py turns an activity into an `Invocation`, this turns a command
line into one — the actor is the person the config maps this OS login to
(`[[people]] os_user`), the conversation is `cli:LOGIN@HOST` — and hands it to the one
CommandDispatcher. A change runs on this process's Executor with a TerminalReporter: the
run's card is drawn here, its records go to the shared store, audit and timeline, and what
Teams must hear (a break-glass approval, a failed run) is kept in the store as a notice the
bot delivers to the environment's alert conversations once Teams answers; a failed run also
raises its run alert, forwarded to OpsGenie from this process.
"""

from __future__ import annotations

import getpass
import logging
import os
import secrets
import socket
from pathlib import Path

from bot.forwarder import Forwarder
from bot.logs import ContextFilter, JsonFormatter
from bot.ports import RunFailure
from bot.run_alert_record import record_run_alert
from bot.runs.executor import Executor
from bot.services import Runtime, redactor_for
from bot.terminal.display import Display
from bot.terminal.reporter import TerminalReporter
from commands.config import Config
from commands.dispatch import CommandDispatcher
from commands.registry import default_registry
from commands.types import Actor, Invocation, Reply

CLI_LOG_FILE = "cli.jsonl"


def os_login() -> str:
    """The login of whoever runs this process (not $USER: that is the caller's to set)."""
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return getpass.getuser()


def cli_actor(config: Config, login: str) -> Actor | str:
    """The person this login acts as, or why there is none (in words)."""
    person = config.person_for_login(login)
    if person is None:
        return (
            f'the OS user {login!r} is not mapped to a person: add `os_user = "{login}"` to '
            "their [[people]] entry in the config (the break-glass CLI acts as that person, "
            "with that person's roles)"
        )
    return Actor(person.name, person.aad_object_id)


def setup_cli_logging(config: Config) -> None:
    """The CLI's log lines go to logs/app/cli.jsonl (never over the live display)."""
    directory = Path(config.paths.app_logs_dir)
    directory.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(directory / CLI_LOG_FILE, encoding="utf-8")
    handler.setFormatter(JsonFormatter(redactor_for(config)))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)


class NoticeAlarm:
    """A run of the CLI that ends badly raises the same run alert as in chat: the alert
    row, audit and timeline (bot/run_alert_record.py), forwarded to OpsGenie and the webhook
    from this process (Teams may be down; the command waits for the forward before it
    exits, and a create not taken yet is sent again by the bot at its next start), and a
    notice the bot posts to the alert conversations once Teams answers. The bot's next
    successful run of the environment resolves it, as any run alert."""

    def __init__(self, runtime: Runtime, where: str, forwarder: Forwarder) -> None:
        self._services = runtime.services
        self._where = where
        self._forwarder = forwarder

    async def run_failed(self, failure: RunFailure) -> None:
        services = self._services
        subscribed = await services.store.subscribers(failure.environment)
        default = services.config.alerts.default_conversation_id
        alert = await record_run_alert(
            services, failure, subscribed or ([default] if default else [])
        )
        self._forwarder.forward("raised", alert)
        hosts = f" Hosts now: {' | '.join(failure.hosts)}" if failure.hosts else ""
        note = failure.note or f"see `run {failure.run_id}`"
        await services.store.add_notice(
            failure.environment,
            "run-failed",
            f"🔴 {failure.priority}: {failure.kind} {failure.environment} → "
            f"{failure.target_version} {failure.state} ({failure.run_id}, started from the "
            f"break-glass CLI {self._where}): {note} "
            f"— {failure.outcome}. Alert {alert.id}.{hosts}",
        )

    async def run_succeeded(self, environment: str, run_id: str) -> None:
        """Nothing to resolve from here: the bot's watcher sees the smoke pass."""


class Terminal:
    """One CLI session: the actor, its conversation, the dispatcher and an executor."""

    def __init__(self, runtime: Runtime, actor: Actor, login: str, display: Display) -> None:
        self.runtime = runtime
        self.services = runtime.services
        self.actor = actor
        self.login = login
        self.display = display
        self.where = f"{login}@{socket.gethostname()}"
        self.conversation_id = f"cli:{self.where}"
        self.tenant_id = self.services.config.teams.allowed_tenants[0]
        self.reporter = TerminalReporter(display, self.conversation_id)
        self.dispatcher = CommandDispatcher(self.services, default_registry())
        self.forwarder = Forwarder(self.services)
        self.executor = Executor(
            self.services,
            self.reporter,
            NoticeAlarm(runtime, self.where, self.forwarder),
        )

    async def say(self, text: str, *, break_glass: bool = False) -> Reply:
        """One command line through the chat's dispatcher (parse, roles, audit);
        `break_glass`: what it requests is approved by break glass only (a freeze lets the
        request through; the approval still checks the role, the reason and the policy)."""
        invocation = Invocation(
            text=text,
            actor=self.actor,
            tenant_id=self.tenant_id,
            conversation_id=self.conversation_id,
            conversation_type="personal",
            correlation_id=f"cli-{secrets.token_hex(6)}",
            break_glass=break_glass,
        )
        return await self.dispatcher.handle(invocation)
