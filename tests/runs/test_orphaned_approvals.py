"""An approval taken by a bot process that died before its run began is settled by a
surviving instance — refused with a message to ask again, never started — without waiting
for the dead process to come back."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adapters.store import Request, Store
from bot.runs.recovery import take_over

if TYPE_CHECKING:
    from tests.conftest import Chat


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
