"""`history ENVIRONMENT [N]` — the last N runs (who asked, who approved, from → to, outcome,
duration, run id) and the deployment history (which version is stable), from the store.

Reads the store only: it answers while a run holds the environment and while hosts are
down. A break-glass approval says so in the approver column.
"""

from __future__ import annotations

from adapters.store.rows import Request, Run
from commands.cards import elements as cards
from commands.cards.approval import approver_words
from commands.registry import Command, CommandCall
from commands.timefmt import show
from commands.types import Reply

DEFAULT_RUNS = 10
MAX_RUNS = 50
DEPLOYMENTS_SHOWN = 10


def outcome_words(run: Run) -> str:
    if run.state == "succeeded" or not run.restore:
        return run.state
    return f"{run.state}, {run.restore}"


def duration_words(run: Run) -> str:
    if run.finished_at is None:
        return "running" if run.state == "running" else ""
    return f"{(run.finished_at - run.started_at).total_seconds():.0f} s"


def run_row(run: Run, request: Request, call: CommandCall) -> list[str]:
    tz = call.services.config.tz
    return [
        show(run.started_at, tz),
        f"{request.command} {request.current_version or '?'} → {request.version or '?'}",
        cards.plain(request.requester_name, 100),
        cards.plain(approver_words(request), 300),
        outcome_words(run),
        duration_words(run),
        run.id,
    ]


def _count(args: tuple[str, ...]) -> int | str:
    if not args:
        return DEFAULT_RUNS
    word = args[0]
    if not word.isdigit() or not 1 <= int(word) <= MAX_RUNS:
        return f"`{word}` is not a number of runs from 1 to {MAX_RUNS}."
    return int(word)


async def run(call: CommandCall) -> Reply:
    services, environment = call.services, call.env()
    count = _count(call.args)
    if isinstance(count, str):
        return Reply(
            f"{count} Usage: `history {environment} [N]`.",
            refused=True,
            extra={"reason": "usage"},
        )
    runs = await services.store.runs_of(environment, count)
    deployments = await services.store.deployment_history(environment, DEPLOYMENTS_SHOWN)
    tz = services.config.tz
    body: list[cards.Element] = [cards.title(f"History of {environment}")]
    if runs:
        body.append(cards.text(f"**Last {len(runs)} run(s)**, newest first"))
        colors = [
            "Good" if r.state == "succeeded" else "Attention" if r.state == "failed" else "Warning"
            for r, _ in runs
        ]
        body.append(
            cards.table(
                ["Started", "Change", "Asked by", "Approved by", "Outcome", "Took", "Run"],
                [run_row(r, q, call) for r, q in runs],
                colors,
                widths=[5, 5, 4, 5, 4, 2, 4],
            )
        )
    else:
        body.append(cards.text(f"No run of {environment} yet."))
    if deployments:
        body.append(cards.text("**Deployments**, newest first (stable: its smoke passed)"))
        body.append(
            cards.table(
                ["Version", "Deployed", "Stable", "Run"],
                [
                    [
                        d.version,
                        show(d.deployed_at, tz),
                        show(d.stable_at, tz) if d.stable and d.stable_at else "no",
                        d.run_id or "",
                    ]
                    for d in deployments
                ],
                ["Good" if d.stable else None for d in deployments],
            )
        )
    stable = next((d.version for d in deployments if d.stable), None)
    current = deployments[0].version if deployments else None
    text = (
        f"{environment}: {len(runs)} run(s) shown; current {current or 'unknown'}, last stable "
        f"{stable or 'unknown'}."
    )
    return Reply(
        text,
        card=cards.card(body),
        extra={
            "runs": [
                {
                    "run_id": r.id,
                    "request_id": q.id,
                    "command": q.command,
                    "from": q.current_version,
                    "to": q.version,
                    "asked_by": q.requester_name,
                    "approved_by": approver_words(q),
                    "break_glass": q.break_glass,
                    "state": r.state,
                    "restore": r.restore,
                    "started_at": r.started_at.isoformat(),
                    "finished_at": r.finished_at.isoformat() if r.finished_at else None,
                }
                for r, q in runs
            ],
            "deployments": [
                {
                    "version": d.version,
                    "deployed_at": d.deployed_at.isoformat(),
                    "stable": d.stable,
                    "run_id": d.run_id,
                }
                for d in deployments
            ],
        },
    )


COMMAND = Command(
    name="history",
    usage="ENVIRONMENT [N]",
    summary=f"The last N runs (default {DEFAULT_RUNS}) and the deployment history.",
    role=None,
    env_arg="required",
    max_extra_args=1,
    run=run,
)
