"""Publish the audit's head hash outside the box: at each run's end, and once a day.

The chain is keyed, but whoever holds the key (an admin of the bot's host) could still
rewrite the log and re-chain it. A head published where they cannot reach it — a line in the
environment's alert conversation in Teams, and the app log (shipped elsewhere) — pins it:
`mcms-bot audit verify --against FILE` checks that every published (seq, hash) is still in
the log.

Hooked at the audit sink (`PublishingAudit` wraps it), not in the executor: a run's end is
its terminal audit event (RUN_END_EVENTS), whoever writes it — the executor, a step, or the
recovery at start. RolledBack is not one: the playbook writes it when a rollback starts.
Publishing is in the background and never fails the caller: a chat that cannot be reached
costs the Teams line there; the app log line is always written.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from adapters.audit.chain import read_head
from adapters.audit.log import AuditRecord
from bot.watch.alerts import Alerter
from commands.context import AuditSink, Services

log = logging.getLogger(__name__)

RUN_END_EVENTS = frozenset({"Deployed", "Failed", "Cancelled", "Interrupted"})
# The daily publication, in the configured zone: after midnight's retention pass.
DAILY_AT = timedelta(minutes=5)


def head_line(seq: int, digest: str, file: str, why: str) -> str:
    """The published text; `audit verify --against` finds "seq N hash H" in it."""
    return (
        f"🔏 Audit head {why}: seq {seq} hash {digest} ({file}). Kept outside the bot's host, "
        "this line lets `mcms-bot audit verify --against` prove the log was not rewritten."
    )


class HeadPublisher:
    """Posts head lines to alert conversations (once `bind` gives it the Alerter) and logs them."""

    def __init__(self, services: Services, audit_dir: Path) -> None:
        self._services = services
        self._audit_dir = audit_dir
        self._alerter: Alerter | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def bind(self, alerter: Alerter) -> None:
        self._alerter = alerter

    def after(self, record: AuditRecord, environment: str | None) -> None:
        """A run ended with `record`: publish its hash to that environment, in the background."""
        why = f"after {record.event}" + (f" in {environment}" if environment else "")
        text = head_line(record.seq, record.hash, record.file, why)
        envs = [environment] if environment else list(self._services.config.environments)
        task = asyncio.create_task(self._publish(text, envs), name="audit-head")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def daily(self) -> None:
        """Publish the current head to every environment's alert conversations."""
        head = await asyncio.to_thread(read_head, self._audit_dir)
        if head is None:
            return
        day = self._services.now().astimezone(self._services.config.tz).date()
        text = head_line(head.seq, head.hash, head.file, f"of {day.isoformat()}")
        await self._publish(text, list(self._services.config.environments))

    async def _publish(self, text: str, environments: list[str]) -> None:
        log.info("%s", text)
        if self._alerter is None:
            return
        try:
            targets: list[str] = []
            for environment in environments:
                targets += await self._alerter.conversations(environment)
            for conversation_id in dict.fromkeys(targets):
                task = await self._alerter.enqueue(conversation_id, text, None)
                if task is not None:
                    await self._alerter.delivered(conversation_id, task)
        except Exception:
            log.exception("publishing the audit head to Teams failed (it is in this log)")

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=10)


class PublishingAudit:
    """The AuditSink, plus a head publication after every run-ending event."""

    def __init__(self, inner: AuditSink, publisher: HeadPublisher) -> None:
        self._inner = inner
        self._publisher = publisher

    async def append(
        self,
        event: str,
        *,
        environment: str | None = None,
        request_id: str | None = None,
        run_id: str | None = None,
        actor: Mapping[str, str | None] | None = None,
        step: str | None = None,
        status: str | None = None,
        duration_ms: int | None = None,
        detail: Mapping[str, Any] | str | None = None,
    ) -> Any:
        record = await self._inner.append(
            event,
            environment=environment,
            request_id=request_id,
            run_id=run_id,
            actor=actor,
            step=step,
            status=status,
            duration_ms=duration_ms,
            detail=detail,
        )
        if event in RUN_END_EVENTS and isinstance(record, AuditRecord):
            self._publisher.after(record, environment)
        return record


def until_next_daily(now: datetime, services: Services) -> float:
    """Seconds from `now` to the next DAILY_AT in the configured zone."""
    local = now.astimezone(services.config.tz)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    due = midnight + DAILY_AT
    if due <= local:
        due = midnight + timedelta(days=1) + DAILY_AT
    return max(1.0, (due - local).total_seconds())


async def daily_heads_loop(publisher: HeadPublisher, services: Services) -> None:
    """Run until cancelled: publish the head every day at DAILY_AT (local time)."""
    while True:
        await asyncio.sleep(until_next_daily(services.now(), services))
        try:
            await publisher.daily()
        except Exception:
            log.exception("daily audit head publication failed; trying again tomorrow")
