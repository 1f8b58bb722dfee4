"""`help` — the commands, their arguments and who may run them, read from the registry."""

from __future__ import annotations

from commands.cards import elements as cards
from commands.registry import Command, CommandCall
from commands.types import Reply


def render_help(commands: list[Command], environments: list[str]) -> Reply:
    rows = [[f"{c.name} {c.usage}".strip(), c.summary, c.who] for c in commands]
    body = [
        cards.title("MCMS ops bot — commands"),
        cards.text(
            "Type a command in this chat, or @mention me in a channel. The leading `/` is "
            "optional and environment names are not case-sensitive."
        ),
        cards.table(["Command", "What it does", "Who may run it"], rows),
        cards.text(f"Environments: {', '.join(environments)}", subtle=True),
    ]
    lines = [f"- `{r[0]}` — {r[1]} ({r[2]})" for r in rows]
    return Reply("Commands:\n" + "\n".join(lines), card=cards.card(body))


async def run(call: CommandCall) -> Reply:
    return render_help(call.registry.commands(), list(call.services.config.environments))


COMMAND = Command(
    name="help",
    usage="",
    summary="Show the commands, their arguments and who may run them.",
    role=None,
    env_arg="none",
    max_extra_args=0,
    run=run,
)
