"""From one invocation to one reply: tenant → parse → environment → role → run.

Every inbound command is audited (`Command`), and so is every refusal (`Refused`, with the
reason). Refusals happen before a runner is called, so refused input never reaches a host.
"""

from __future__ import annotations

import logging

from commands.config import Config
from commands.context import Services
from commands.parse import closest, split_command
from commands.registry import Command, CommandCall, Registry
from commands.types import Invocation, Reply

log = logging.getLogger(__name__)

# Enough to recognise what was typed in the audit without keeping whole pasted blobs.
_AUDIT_TEXT_LIMIT = 200


class CommandDispatcher:
    """The Dispatcher the Teams edge calls; never raises for bad input."""

    def __init__(self, services: Services, registry: Registry) -> None:
        self._services = services
        self._registry = registry

    @property
    def config(self) -> Config:
        return self._services.config

    async def handle(self, invocation: Invocation) -> Reply:
        parsed = split_command(invocation.text)
        command_name = parsed.name if parsed else ""
        env_guess = parsed.args[0] if parsed and parsed.args else None
        await self._audit(
            "Command",
            invocation,
            environment=self.config.find_environment(env_guess) if env_guess else None,
            detail={"text": invocation.text[:_AUDIT_TEXT_LIMIT], "command": command_name},
        )

        if invocation.tenant_id not in self.config.teams.allowed_tenants:
            return await self._refuse(
                invocation,
                "tenant",
                f"This bot is not enabled for your organization (tenant "
                f"`{invocation.tenant_id or 'unknown'}`). Ask the bot's owner to add it to "
                "`teams.allowed_tenants` in the bot's config.",
            )
        if parsed is None:
            return await self._refuse(invocation, "empty", "Type `help` to see what I can do.")
        command = self._registry.get(parsed.name)
        if command is None:
            guess = closest(parsed.name, self._registry.names())
            hint = f" Did you mean `{guess}`?" if guess else ""
            return await self._refuse(
                invocation,
                "unknown-command",
                f"I don't know the command `{parsed.name}`.{hint} Type `help` for the list.",
            )
        return await self._resolve_and_run(invocation, command, parsed.args)

    async def _resolve_and_run(
        self, invocation: Invocation, command: Command, args: tuple[str, ...]
    ) -> Reply:
        environment: str | None = None
        rest = args
        if command.env_arg != "none" and args:
            environment = self.config.find_environment(args[0])
            if environment is None:
                guess = closest(args[0], self.config.environments)
                hint = f" Did you mean `{command.name} {guess}`?" if guess else ""
                known = ", ".join(self.config.environments)
                return await self._refuse(
                    invocation,
                    "unknown-environment",
                    f"There is no environment `{args[0]}`.{hint} Known environments: {known}. "
                    "Type `help` for usage.",
                )
            rest = args[1:]
        elif command.env_arg == "required":
            known = ", ".join(self.config.environments)
            return await self._refuse(
                invocation,
                "missing-environment",
                f"`{command.name}` needs an environment: `{command.name} {command.usage}` "
                f"(one of: {known}).",
            )
        if len(rest) > command.max_extra_args:
            return await self._refuse(
                invocation,
                "too-many-arguments",
                f"`{command.name}` takes `{command.name} {command.usage}`; I did not understand "
                f"`{' '.join(rest)}`. Nothing was run.",
            )
        refusal = self._role_refusal(invocation, command, environment)
        if refusal:
            return await self._refuse(invocation, "role", refusal, environment)

        call = CommandCall(invocation, self._services, environment, rest, self._registry)
        try:
            return await command.run(call)
        except Exception:
            # A bug or broken infrastructure the runner did not expect: the operator gets a
            # reference to find the traceback in logs/app, never the exception text itself.
            log.exception("command failed", extra={"correlation_id": invocation.correlation_id})
            await self._audit(
                "CommandFailed",
                invocation,
                environment=environment,
                detail={"command": command.name},
            )
            return Reply(
                f"Something went wrong while running `{command.name}` "
                f"(reference `{invocation.correlation_id}`). The details are in the bot's "
                "application log; try again, and if it repeats, check the bot's logs/app.",
                refused=True,
            )

    def _role_refusal(
        self, invocation: Invocation, command: Command, environment: str | None
    ) -> str | None:
        if command.role is None:
            return None
        actor = invocation.actor
        person = self.config.person(actor.aad_object_id)
        if person is None:
            return (
                f"You are not on this bot's people list, so you cannot run `{command.name}`. "
                f"Ask the bot's owner to add your Entra object id "
                f"`{actor.aad_object_id or 'unknown'}` with the **{command.role}** role."
            )
        if self.config.has_role(actor.aad_object_id, command.role, environment):
            return None
        where = f" for {environment}" if environment else ""
        scope = ", ".join(person.environments).replace("*", "all environments")
        return (
            f"`{command.name}` needs the **{command.role}** role{where}. "
            f"You have: {', '.join(person.roles)} ({scope}). Ask the bot's owner to grant it."
        )

    async def _refuse(
        self, invocation: Invocation, reason: str, message: str, environment: str | None = None
    ) -> Reply:
        await self._audit(
            "Refused",
            invocation,
            environment=environment,
            status=reason,
            detail={"text": invocation.text[:_AUDIT_TEXT_LIMIT], "reply": message},
        )
        return Reply(message, refused=True, extra={"reason": reason})

    async def _audit(
        self,
        event: str,
        invocation: Invocation,
        *,
        environment: str | None = None,
        status: str | None = None,
        detail: dict[str, str] | None = None,
    ) -> None:
        await self._services.audit.append(
            event,
            environment=environment,
            actor={"name": invocation.actor.name, "aad_object_id": invocation.actor.aad_object_id},
            status=status,
            detail={
                **(detail or {}),
                "conversation_id": invocation.conversation_id,
                "correlation_id": invocation.correlation_id,
                "tenant_id": invocation.tenant_id or "",
            },
        )
