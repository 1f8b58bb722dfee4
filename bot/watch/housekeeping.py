"""Log retention at start and then daily (playbook §7), off the event loop.

Deletions are logged file by file (adapters.retention) and summed up in one audit line, so
"where did the March smoke logs go" has an answer. A failing pass is logged and retried the
next day; it never stops the bot.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path

from adapters.retention import Pruned, apply_retention
from commands.context import Services

log = logging.getLogger(__name__)

DAY_S = 24 * 3600.0


async def retention_pass(services: Services, smoke_dir: Path, audit_dir: Path) -> Pruned:
    config = services.config
    now = services.now()
    pruned = await asyncio.to_thread(
        apply_retention,
        smoke_dir,
        config.retention.smoke_log_days,
        audit_dir,
        config.retention.notification_days,
        now.astimezone(config.tz).date(),
        now,
        services.checks.dr_dir,
    )
    # The watcher stores one smoke result per run (~1,440 a day per environment): the rows
    # follow the smoke logs' retention.
    rows = await services.store.prune_smoke_results(
        now - timedelta(days=config.retention.smoke_log_days)
    )
    if rows:
        log.info("retention: %d smoke result row(s) deleted", rows)
    if pruned.total:
        await services.audit.append(
            "LogsPruned",
            status="deleted",
            detail={
                "smoke_logs": [p.name for p in pruned.smoke_logs],
                "notifications": [p.name for p in pruned.notifications],
                "dr_runs": [p.name for p in pruned.dr_runs],
                "smoke_log_days": config.retention.smoke_log_days,
                "notification_days": config.retention.notification_days,
            },
        )
    return pruned


async def retention_loop(
    services: Services, smoke_dir: Path, audit_dir: Path, every_s: float = DAY_S
) -> None:
    """Run until cancelled: a pass now, then one every `every_s`."""
    while True:
        try:
            pruned = await retention_pass(services, smoke_dir, audit_dir)
            log.info(
                "retention: %d smoke log(s), %d notification file(s), %d DR check folder(s) "
                "deleted",
                len(pruned.smoke_logs),
                len(pruned.notifications),
                len(pruned.dr_runs),
            )
        except Exception:
            log.exception("retention pass failed; next try in %g s", every_s)
        await asyncio.sleep(every_s)
