"""`plan [rollback|deploy] ENVIRONMENT [VERSION] [--exclude HOST]` — see before doing: the
exact plan the approval card would show now (target and why, package and hash, hosts and
exclusions, steps, restore), built by the same code as the request, without creating one.

The hosts are read (that is how the plan knows who answers), nothing else happens; the
preview is audited like any command, and its plan hash is the one an approval would bind.
"""

from __future__ import annotations

import json

from adapters.store.rows import Request
from commands.cards.approval import frozen_words, render_approval_card, with_freezes
from commands.change import ChangeArgs, Refusal, make_plan, parse_change_args
from commands.config import Config
from commands.freeze import freezes_of
from commands.parse import closest
from commands.plan import Exclusion, Kind
from commands.registry import Command, CommandCall
from commands.types import Reply

KINDS: tuple[Kind, ...] = ("rollback", "deploy")
USAGE = "[rollback|deploy] ENVIRONMENT [VERSION] [--exclude HOST]"
# Teams' command list shows usage + summary in 128 characters.
SHORT_USAGE = "[rollback|deploy] ENV [VERSION]"


def _environment(config: Config, word: str) -> str | Reply:
    found = config.find_environment(word)
    if found is not None:
        return found
    guess = closest(word, config.environments)
    hint = f" Did you mean `plan {guess}`?" if guess else ""
    return Reply(
        f"There is no environment `{word}`.{hint} Known environments: "
        f"{', '.join(config.environments)}.",
        refused=True,
        extra={"reason": "unknown-environment"},
    )


async def run(call: CommandCall) -> Reply:
    services, args = call.services, list(call.args)
    kind: Kind = "rollback"
    if args and args[0].lower() in KINDS:
        kind = "deploy" if args.pop(0).lower() == "deploy" else "rollback"
    if not args:
        return Reply(
            f"`plan` needs an environment: `plan {USAGE}` (one of: "
            f"{', '.join(services.config.environments)}).",
            refused=True,
            extra={"reason": "missing-environment"},
        )
    environment = _environment(services.config, args.pop(0))
    if isinstance(environment, Reply):
        return environment
    actor = call.invocation.actor
    if not services.config.has_role(actor.aad_object_id, "operator", environment):
        return Reply(
            f"`plan` needs the **operator** role for {environment} (it reads the hosts).",
            refused=True,
            extra={"reason": "role"},
        )
    env = services.config.environments[environment]
    parsed = parse_change_args(tuple(args), env)
    if isinstance(parsed, str):
        return Reply(f"{parsed} Usage: `plan {USAGE}`.", refused=True, extra={"reason": "usage"})
    if kind == "deploy" and parsed.version is None:
        return Reply(
            f"`plan deploy` needs a version: `plan deploy {environment} VERSION`.",
            refused=True,
            extra={"reason": "missing-version"},
        )
    return await preview(call, kind, environment, parsed)


async def preview(call: CommandCall, kind: Kind, environment: str, args: ChangeArgs) -> Reply:
    services = call.services
    exclude = tuple(Exclusion(h, "excluded by request (--exclude)") for h in args.exclude)
    plan = await make_plan(services, kind, environment, args.version, exclude)
    if isinstance(plan, Refusal):
        message = plan.message.replace("Nothing was requested.", "No plan to show.")
        return Reply(message, refused=True, extra={"reason": plan.reason})
    now = services.now()
    shown = Request(
        id="preview",
        environment=environment,
        command=kind,
        plan_json=plan.to_json(),
        plan_hash=plan.hash,
        requester_name=call.invocation.actor.name,
        state="preview",
        created_at=now,
        version=plan.target_version,
        current_version=plan.current_version,
    )
    tz = services.config.tz
    freezes = await freezes_of(services, [environment])
    card = with_freezes(render_approval_card(shown, plan, tz, now, preview=True), freezes, tz)
    frozen = "".join(f" {f.environment} is {frozen_words(f, tz)}." for f in freezes)
    text = (
        f"Plan for `{kind} {environment}`: {plan.current_version or '?'} → "
        f"{plan.target_version} ({plan.source}), {len(plan.steps)} steps on "
        f"{len(plan.hosts)} host(s); plan hash {plan.hash[:12]}. Nothing was requested.{frozen}"
    )
    plan_data = json.loads(plan.to_json())
    return Reply(
        text,
        card=card,
        extra={"plan_hash": plan.hash, "plan": plan_data, "frozen": bool(freezes)},
    )


COMMAND = Command(
    name="plan",
    usage=SHORT_USAGE,
    summary="The exact plan a rollback or deploy would ask to approve; nothing is requested.",
    # Checked by the command once it knows the environment (the first word may be the kind).
    role=None,
    env_arg="none",
    max_extra_args=19,
    run=run,
    who_note="operators of the environment",
)
