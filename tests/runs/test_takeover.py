"""A run another instance took over (this one's lease ran out: it stalled, or lost the
database for a while) is not carried on here: the runner stops at the next step boundary
and touches no host again — the lab shows it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from adapters.store import Store
from bot.server import EXECUTOR_KEY
from lab.demo import PORTAL
from tests.runs.test_restore import start_and_hold

if TYPE_CHECKING:
    from tests.conftest import Chat


async def test_a_run_taken_over_by_another_instance_stops_before_its_next_step(
    chat: Chat, tmp_path: Path
) -> None:
    host = chat.lab.host_for("Lab")
    run_id = await start_and_hold(chat, "pool-control", Action="Recycle", AppPool=PORTAL)
    store = chat.runtime.store
    # Another instance on the same database, on another machine (it sees none of this one's
    # owner lock files: `marks` elsewhere), whose clock is past this one's lease.
    later = chat.clock() + timedelta(seconds=store.lease_s + 60)
    other = await Store.open(
        store.where, owner="elsewhere", marks=tmp_path / "elsewhere" / "db", clock=lambda: later
    )
    try:
        (taken,) = await other.take_over_expired_runs()
    finally:
        await other.close()
    assert taken.run_id == run_id and taken.owner == store.owner
    held_until = len(chat.lab.calls(host))

    chat.lab.release(host)  # the held recycle finishes; the runner reaches its next step
    await chat.client.app[EXECUTOR_KEY].drain(30)

    after = [c.op for c in chat.lab.calls(host)[held_until:]]
    assert after == [], f"the runner went on after the takeover: {after}"
    run = await store.get_run(run_id)
    assert run is not None and run.state == "interrupted" and run.restore is None
    # The lock is the taker's until it has settled the hosts: the stalled runner's end
    # did not free it under the taker's restore.
    held = await store.lock_holder("Lab")
    assert held is not None and held.holder_run_id == run_id
    request = await store.get_request(taken.request_id)
    assert request is not None and request.state == "interrupted"
