"""The command registry: the one list that dispatch, `help` and the manifest read.

A command is declared once, with its usage, the role it needs and its runner, so the help
text and the Teams manifest's commandLists cannot drift from what the bot really does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from commands.config import Role
from commands.context import Services
from commands.types import Invocation, Reply

EnvArg = Literal["required", "optional", "none"]


@dataclass(frozen=True)
class CommandCall:
    """One authorized call of a command: the environment is already resolved and checked."""

    invocation: Invocation
    services: Services
    environment: str | None
    args: tuple[str, ...]
    registry: Registry

    def env(self) -> str:
        """The resolved environment of a command declared with env_arg="required"."""
        if self.environment is None:
            raise RuntimeError("dispatch let a command without its environment through")
        return self.environment


Runner = Callable[[CommandCall], Awaitable[Reply]]


@dataclass(frozen=True)
class Command:
    name: str
    usage: str  # what follows the name, e.g. "ENVIRONMENT"
    summary: str
    role: Role | None  # None: anyone from an allowed tenant
    env_arg: EnvArg
    max_extra_args: int
    run: Runner
    # Said after the role in help, e.g. that an approver must approve what this asks for.
    who_note: str = ""
    # Suggested by Teams (manifest commandLists, at most 10); help lists every command.
    suggested: bool = True

    @property
    def who(self) -> str:
        if self.role is None and self.who_note:
            return self.who_note  # the command decides who, against what it acts on
        who = "anyone in an allowed tenant" if self.role is None else f"{self.role}s"
        return f"{who}; {self.who_note}" if self.who_note else who


class Registry:
    """Commands by name; refuses at construction (startup), not at 3 a.m., if one is broken."""

    def __init__(self, commands: Sequence[Command]) -> None:
        self._by_name: dict[str, Command] = {}
        for command in commands:
            if not callable(command.run):
                raise TypeError(f"command {command.name!r} has no runner")
            if command.name in self._by_name or command.name != command.name.lower():
                raise ValueError(f"command name {command.name!r} is duplicated or not lower-case")
            self._by_name[command.name] = command

    def get(self, name: str) -> Command | None:
        return self._by_name.get(name.lower())

    def names(self) -> list[str]:
        return list(self._by_name)

    def commands(self) -> list[Command]:
        return list(self._by_name.values())


def default_registry() -> Registry:
    # Imported here so each command module can import this one for its types.
    from commands import (
        cancel,
        check,
        deploy,
        freeze,
        history,
        preview,
        rollback,
        run_card,
        smoke,
        status,
        subscribe,
        unsubscribe,
    )
    from commands import help as help_cmd
    from commands.bluegreen.chat import BLUEGREEN, SWITCHBACK

    return Registry(
        [
            help_cmd.COMMAND,
            status.COMMAND,
            smoke.COMMAND,
            check.COMMAND,
            preview.COMMAND,
            rollback.COMMAND,
            deploy.COMMAND,
            BLUEGREEN,
            SWITCHBACK,
            cancel.COMMAND,
            freeze.LOCK,
            freeze.UNLOCK,
            run_card.COMMAND,
            history.COMMAND,
            subscribe.COMMAND,
            unsubscribe.COMMAND,
        ]
    )
