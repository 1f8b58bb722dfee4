"""An approval taken by a bot process that died before its run began is settled by a
surviving instance — refused with a message to ask again, never started — without waiting
for the dead process to come back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adapters.store import Request, Store
from bot.runs.recovery import take_over
from tests.conftest import lab_config, open_chat

if TYPE_CHECKING:
    from lab.core import Lab
    from tests.conftest import Chat
    from tests.fake_connector import FakeConnector


class Told:
    """Records what settling says in the conversations (the Reporter port)."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, str]] = []

    async def post(self, conversation_id: str, text: str, card: Any, **_: Any) -> str | None:
        self.posts.append((conversation_id, text))
        return None

    async def update(self, *args: Any, **kwargs: Any) -> None:
        return None


async def test_a_dead_instances_approval_is_refused_by_the_survivor_and_nothing_runs(
    chat: Chat,
) -> None:
    services = chat.runtime.services
    store = services.store
    now = services.now()
    request = Request(
        id="q-orphan", environment="Lab", command="rollback", version="1.4.1",
        current_version="1.4.2", plan_json='{"steps": []}', plan_hash="ab" * 32,
        requester_name="Kim", requester_id="0000-aaaa", conversation_id="conv-orphan",
        state="pending", created_at=now, expires_at=now + timedelta(minutes=15),
    )  # fmt: skip
    # Another instance, on another machine (none of its owner files here), approved it.
    other = await Store.open(
        store.where, owner="bot-gone-7-ff", marks=Path(store.where).parent / "elsewhere" / "db"
    )
    try:
        await other.create_request(request)
        assert await other.transition_request("q-orphan", ["pending"], "approved")
    finally:
        await other.close()

    recovered = await take_over(services)
    assert [r.id for r in recovered.requests] == ["q-orphan"]
    settled = await store.get_request("q-orphan")
    assert settled is not None and settled.state == "interrupted"
    ran = [run for run, _ in await store.runs_of("Lab", 100) if run.request_id == "q-orphan"]
    assert ran == [], "nothing ran"
    told = Told()
    await recovered.tell(services, told)
    ((conversation, text),) = told.posts
    assert conversation == "conv-orphan"
    assert "q-orphan was approved but the bot instance that took the approval stopped" in text
    assert "nothing ran. Ask again with `rollback Lab`" in text
    assert (await take_over(services)).requests == [], "settled once"


def approval(request_id: str, now: Any) -> Request:
    return Request(
        id=request_id, environment="Lab", command="rollback", version="1.4.1",
        current_version="1.4.2", plan_json='{"steps": []}', plan_hash="ab" * 32,
        requester_name="Kim", requester_id="0000-aaaa", conversation_id=f"conv-{request_id}",
        state="pending", created_at=now, expires_at=now + timedelta(minutes=15),
    )  # fmt: skip


async def test_an_approval_whose_approver_process_lives_is_left_alone_at_start_and_after(
    lab: Lab, fake_connector: FakeConnector, tmp_path: Path, lab_credentials: None, pg_url: str
) -> None:
    """On PostgreSQL, an instance starting (or taking over) settles only approvals whose
    approving process is gone: one approved an hour ago by a live instance (its process
    lease renewed) may be about to start, and is left alone; a dead one's is refused."""

    def shared(raw: dict[str, Any]) -> None:
        raw["store"] = {"url": pg_url, "instance_id": "bot-starting", "lease_s": 15}

    config = lab_config(lab, tmp_path, shared)
    elsewhere = tmp_path / "elsewhere" / "db"  # other machines: none of their files here
    alive = await Store.open(pg_url, owner="bot-alive-1", marks=elsewhere, lease_s=600)
    dead = await Store.open(pg_url, owner="bot-dead-2", marks=elsewhere, lease_s=600)
    try:
        long_ago = datetime.now(UTC) - timedelta(hours=1)
        for store, request_id in ((alive, "q-alive"), (dead, "q-dead")):
            await store.create_request(approval(request_id, long_ago))
            assert await store.transition_request(
                request_id, ["pending"], "approved", decided_at=long_ago
            )
        assert await alive.hold_lease(alive.process_lease())  # it lives (renewing)

        async with open_chat(lab, fake_connector, config) as chat:
            store = chat.runtime.services.store
            assert store.dialect == "postgresql"
            states = {
                q.id: q.state
                for q in [await store.get_request(i) for i in ("q-alive", "q-dead")]
                if q
            }
            assert states == {"q-alive": "approved", "q-dead": "interrupted"}, states
            assert (await take_over(chat.runtime.services)).requests == []
            still = await store.get_request("q-alive")
            assert still is not None and still.state == "approved", "a live one's: left alone"
    finally:
        await alive.close()
        await dead.close()
