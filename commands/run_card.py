"""`run RUN-ID` — a run's progress card again, rebuilt from the store: its steps with their
states and times, the restore if there was one, and what it left behind.

The same card the run edits in place (commands/cards/run.py), so it reads the same in chat,
in the terminal and after a restart; it answers for a run of this process or another's.
"""

from __future__ import annotations

from dataclasses import replace

from adapters.store.rows import Request, Run
from commands.cancel import RUN_ID
from commands.cards.approval import approver_words
from commands.cards.run import RunView, StepView, render_run_card, summary_text
from commands.context import Services
from commands.plan import Plan
from commands.registry import Command, CommandCall
from commands.types import Reply


async def run_view(services: Services, run: Run, request: Request) -> RunView:
    """The run's view from its rows: forward steps by plan index, then the restore's."""
    plan = Plan.from_json(request.plan_json)
    view = RunView.start(
        run.id, request.id, plan, request.requester_name, approver_words(request), run.started_at
    )
    recorded = {idx: (st, ms, err) for idx, st, ms, err in await services.store.list_steps(run.id)}
    forward = len(plan.steps)
    if any(idx >= forward for idx in recorded) or run.restore == "restored":
        view = replace(view, state=run.state).with_restore()
    steps = list(view.steps)
    for idx, (state, duration_ms, error) in recorded.items():
        if idx < len(steps):
            steps[idx] = replace(steps[idx], state=state, duration_ms=duration_ms, error=error)
    view = replace(view, steps=tuple(steps))
    if run.state == "running":
        return view
    hosts = tuple(run.restore_note.split("; ")) if run.restore_note else ()
    finished = run.finished_at or services.now()
    ended = view.finish(run.state, finished, run.error, hosts, run.restore)
    return replace(ended, restore_at=view.restore_at)


def _as_step(s: StepView) -> dict[str, object]:
    return {"key": s.key, "title": s.title, "state": s.state, "duration_ms": s.duration_ms,
            "error": s.error}  # fmt: skip


async def run(call: CommandCall) -> Reply:
    services = call.services
    word = call.args[0] if call.args else ""
    run_id = word.lower()
    found = await services.store.get_run(run_id) if RUN_ID.fullmatch(run_id) else None
    request = await services.store.get_request(found.request_id) if found else None
    if found is None or request is None:
        return Reply(
            f"There is no run `{word}`"
            if word
            else "`run` needs a run id: `run run-…`" + " (`history ENVIRONMENT` lists them).",
            refused=True,
            extra={"reason": "unknown-run"},
        )
    view = await run_view(services, found, request)
    card = render_run_card(view, services.config.tz)
    text = summary_text(view) if view.state != "running" else f"{found.id} is running"
    return Reply(
        text,
        card=card,
        extra={
            "run_id": found.id,
            "request_id": request.id,
            "environment": found.environment,
            "state": found.state,
            "restore": found.restore,
            "steps": [_as_step(s) for s in view.steps],
        },
    )


COMMAND = Command(
    name="run",
    usage="RUN-ID",
    summary="A run's progress card again, with its steps (from the store).",
    role=None,
    env_arg="none",
    max_extra_args=1,
    run=run,
    suggested=False,  # a run id comes from a card or history, not a menu
)
