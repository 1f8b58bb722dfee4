"""Helper for tests (not a pytest plugin): a run that must fail, and what it left behind."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.farm import components
from tests.runs.test_rollback_flow import request_rollback

if TYPE_CHECKING:
    from adapters.store.rows import Run
    from tests.conftest import Chat


async def fails_leaving_lab_as_before(chat: Chat, restore: str, text: str = "/rollback Lab") -> Run:
    """Request `text` and approve it; the run must end failed with `restore` (restored,
    unchanged) and the Lab host's components — read from the lab — as before it. The run."""
    host = chat.lab.host_for("Lab")
    before = components(chat.lab.state(host))
    card, request_id = await request_rollback(chat, text)
    await chat.click("approve", card)
    request = await chat.wait_request(request_id, "failed", "succeeded", timeout=60)
    assert request.state == "failed"
    run = await chat.store.run_for_request(request_id)
    assert run is not None and run.restore == restore
    assert components(chat.lab.state(host)) == before
    return run
