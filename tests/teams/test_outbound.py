"""Proactive sends: the botbuilder edge (TeamsSender) and the per-conversation queue.

Wire behaviour goes through the real CloudAdapter to the fake connector on loopback, with
short real intervals; pacing and backoff arithmetic use a fake clock and an in-memory
sender, so the one-second defaults are proven without waiting for them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

import pytest
from botbuilder.core import TurnContext
from botbuilder.schema import Activity

from bot.teams.app import TEAMS_KEY, make_app
from bot.teams.auth import AuthOverrides
from bot.teams.endpoint import TeamsEndpoint
from bot.teams.outbound_queue import DeliveryFailure, OutboundQueue, QueueClosed, RetryPolicy
from bot.teams.proactive import (
    ChatSender,
    OutboundError,
    Permanent,
    TeamsSender,
    Throttled,
    Transient,
    parse_retry_after,
)
from commands.config import Teams
from commands.types import Invocation, Reply
from tests.teams_factory import CHANNEL_THREAD, PERSONAL_CONVERSATION, TENANT, make_message

if TYPE_CHECKING:  # a runtime import would come before pytest's assertion rewriting
    from tests.fake_connector import ConnectorCall, FakeConnector

TEAMS = Teams(allowed_tenants=[TENANT])
ADAPTIVE = "application/vnd.microsoft.card.adaptive"
# Real intervals for loopback tests: short, but long enough to measure.
FAST = RetryPolicy(min_interval_s=0.05, backoff_base_s=0.02, backoff_cap_s=0.1)


def card(step: int) -> dict[str, Any]:
    body = [{"type": "TextBlock", "text": f"step {step}"}]
    return {"type": "AdaptiveCard", "version": "1.5", "body": body}


def reference_json(service_url: str, conversation_type: str = "personal") -> str:
    """A conversation reference stored the way the TeamsBot hook stores it."""
    activity = Activity().deserialize(
        make_message("hi", conversation_type=conversation_type, service_url=service_url)  # type: ignore[arg-type]
    )
    reference = TurnContext.get_conversation_reference(activity)
    return json.dumps(reference.serialize(), sort_keys=True)


class NoCommands:
    async def handle(self, invocation: Invocation) -> Reply:
        raise AssertionError("no inbound traffic in these tests")


@pytest.fixture
async def endpoint(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[TeamsEndpoint]:
    monkeypatch.delenv(TEAMS.app_id_env, raising=False)  # local mode, as with the Playground
    endpoint = make_app(TEAMS, NoCommands(), mode="local")[TEAMS_KEY]
    yield endpoint
    await endpoint.close()


@pytest.fixture
def sender(endpoint: TeamsEndpoint) -> TeamsSender:
    return TeamsSender(endpoint.adapter, endpoint.app_id, mode="local")


@pytest.fixture
def ref(fake_connector: FakeConnector) -> str:
    return reference_json(fake_connector.url)


@dataclass
class TimedSender:
    """Delegates to a real sender; records when each attempt started and how it ended."""

    inner: ChatSender
    attempts: list[tuple[float, str]] = field(default_factory=list)

    async def post(self, ref_json: str, text: str, card: dict[str, Any] | None) -> str:
        return await self._timed(self.inner.post(ref_json, text, card))  # type: ignore[no-any-return]

    async def update(
        self, ref_json: str, activity_id: str, text: str, card: dict[str, Any] | None
    ) -> None:
        await self._timed(self.inner.update(ref_json, activity_id, text, card))

    async def _timed(self, attempt: Any) -> Any:
        start = time.monotonic()
        try:
            result = await attempt
        except OutboundError as exc:
            self.attempts.append((start, type(exc).__name__))
            raise
        self.attempts.append((start, "ok"))
        return result


def shown(call: ConnectorCall) -> str:
    """The message's text, or the summary of its card."""
    return str(call.body.get("text") or call.body.get("summary") or "")


def texts(calls: list[ConnectorCall], method: str) -> list[str]:
    return [shown(c) for c in calls if c.method == method]


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


# -- the edge: TeamsSender through the real CloudAdapter ---------------------------------


async def test_post_returns_the_id_the_connector_assigned_and_carries_the_card(
    sender: TeamsSender, ref: str, fake_connector: FakeConnector
) -> None:
    activity_id = await sender.post(ref, "Rollback Lab: running", card(1))

    [call] = fake_connector.calls
    assert activity_id == "fake-1"
    assert (call.method, call.conversation_id) == ("POST", PERSONAL_CONVERSATION)
    assert call.body["attachments"] == [{"contentType": ADAPTIVE, "content": card(1)}]
    # The card alone, its text as the summary: the Playground can then edit it too.
    assert (call.body.get("text"), call.body["summary"]) == (None, "Rollback Lab: running")
    assert call.authorization is None  # local mode: no token, as the Playground expects


async def test_update_puts_the_new_content_to_that_activity(
    sender: TeamsSender, ref: str, fake_connector: FakeConnector
) -> None:
    await sender.update(ref, "fake-7", "Rollback Lab: passed", card(9))

    [call] = fake_connector.calls
    assert (call.method, call.activity_id) == ("PUT", "fake-7")
    assert call.path.endswith("/activities/fake-7")
    assert call.body["attachments"][0]["content"] == card(9)


ERRORS = [
    (429, 1.5, Throttled(1.5)),
    (429, None, Throttled(None)),
    (503, None, Transient(503)),
    (502, None, Transient(502)),
    (412, None, Transient(412)),
    (403, None, Permanent(403, "")),
    (404, None, Permanent(404, "")),
]


@pytest.mark.parametrize("operation", ["post", "update"])
@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    ERRORS,
    ids=["429-retry-after", "429-bare", "503", "502", "412", "403", "404"],
)
async def test_connector_errors_become_our_exceptions_after_exactly_one_request(
    sender: TeamsSender,
    ref: str,
    fake_connector: FakeConnector,
    operation: str,
    status: int,
    retry_after: float | None,
    expected: OutboundError,
) -> None:
    """One request: botbuilder retried no edit on its own, posted no apology to the chat."""
    fake_connector.fail_next(1, status=status, retry_after=retry_after)

    with pytest.raises(OutboundError) as caught:
        if operation == "post":
            await sender.post(ref, "hello", None)
        else:
            await sender.update(ref, "fake-3", "hello", card(2))

    assert type(caught.value) is type(expected)
    assert caught.value.status == status
    if isinstance(expected, Throttled):
        assert isinstance(caught.value, Throttled)
        assert caught.value.retry_after == expected.retry_after
    assert "Exception" not in str(caught.value) and str(status) in str(caught.value)
    assert len(fake_connector.calls) == 1


async def test_an_unreachable_connector_is_transient(sender: TeamsSender) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: connection refused

    with pytest.raises(Transient, match="cannot reach the connector"):
        await sender.post(reference_json(f"http://127.0.0.1:{port}/"), "hello", None)


async def test_a_broken_reference_is_permanent(sender: TeamsSender) -> None:
    with pytest.raises(Permanent, match="reference is not valid"):
        await sender.post('{"conversation": {"id": "c"}, "serviceUrl": 5, "bot": []}', "x", None)


async def test_authenticated_mode_sends_with_the_bot_app_id_and_its_token(
    monkeypatch: pytest.MonkeyPatch, tls_fake_connector: FakeConnector
) -> None:
    monkeypatch.setenv(TEAMS.app_id_env, "11111111-2222-3333-4444-555555555555")
    monkeypatch.setenv(TEAMS.app_password_env, "unused: outbound uses a static token")
    monkeypatch.setenv(TEAMS.app_tenant_id_env, TENANT)
    overrides = AuthOverrides(openid_metadata_url="http://127.0.0.1:9/unused", static_token="t0k")
    endpoint = make_app(TEAMS, NoCommands(), mode="teams", auth_overrides=overrides)[TEAMS_KEY]
    ref = reference_json(tls_fake_connector.url)

    try:
        await TeamsSender(endpoint.adapter, endpoint.app_id, mode="teams").post(ref, "hello", None)
    finally:
        await endpoint.close()

    assert tls_fake_connector.calls[0].authorization == "Bearer t0k"


@pytest.mark.parametrize(
    ("mode", "url"),
    [("teams", "http://127.0.0.1:9/"), ("local", "https://attacker.example/")],
    ids=["teams-mode-plain-http", "local-mode-not-loopback"],
)
async def test_a_stored_reference_with_a_forbidden_service_url_is_never_posted_to(
    endpoint: TeamsEndpoint, mode: str, url: str
) -> None:
    sender = TeamsSender(endpoint.adapter, endpoint.app_id, mode=mode)  # type: ignore[arg-type]

    with pytest.raises(Permanent, match="serviceUrl must be"):
        await sender.post(reference_json(url), "hello", None)


NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("1.5", 1.5),
        ("0", 0.0),
        ("-3", 0.0),
        (format_datetime(NOW + timedelta(seconds=30), usegmt=True), 30.0),
        ("soon", None),
        ("nan", None),
        (None, None),
    ],
    ids=["seconds", "zero", "negative", "http-date", "garbage", "nan", "absent"],
)
def test_retry_after_is_read_as_seconds_or_a_date(
    header: str | None, seconds: float | None
) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


# -- the queue over loopback ---------------------------------------------------------------


@pytest.fixture
def failures() -> list[DeliveryFailure]:
    return []


@pytest.fixture
def timed(sender: TeamsSender) -> TimedSender:
    return TimedSender(sender)


@pytest.fixture
async def queue(timed: TimedSender, failures: list[DeliveryFailure]) -> Any:
    queue = OutboundQueue(timed, FAST, on_failure=failures.append)
    yield queue
    await queue.close()


@dataclass
class HeldSender:
    """Delegates to a real sender; an edit waits at `gate` once it is on the wire, so a
    test knows exactly what was sent while the edit was in flight (no timing involved)."""

    inner: ChatSender
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    on_the_wire: asyncio.Event = field(default_factory=asyncio.Event)

    async def post(self, ref_json: str, text: str, card: dict[str, Any] | None) -> str:
        return await self.inner.post(ref_json, text, card)

    async def update(
        self, ref_json: str, activity_id: str, text: str, card: dict[str, Any] | None
    ) -> None:
        self.on_the_wire.set()
        await self.gate.wait()
        await self.inner.update(ref_json, activity_id, text, card)


async def test_rapid_updates_of_one_message_are_coalesced_newest_last_none_twice(
    sender: TeamsSender, ref: str, fake_connector: FakeConnector
) -> None:
    held = HeldSender(sender)
    queue = OutboundQueue(held, FAST)
    try:
        activity_id = await queue.post(ref, "step 0", card(0))
        for step in range(1, 6):  # before the worker runs: merged into one pending edit
            queue.update(ref, activity_id, f"step {step}", card(step))
        await held.on_the_wire.wait()  # step 5 is being sent
        for step in range(6, 21):  # merged into the edit in flight: sent once, after it
            queue.update(ref, activity_id, f"step {step}", card(step))
        held.gate.set()
        await queue.flush(PERSONAL_CONVERSATION)
    finally:
        await queue.close()

    puts = [c for c in fake_connector.activities if c.method == "PUT"]
    assert [shown(c) for c in puts] == ["step 5", "step 20"]
    assert puts[-1].body["attachments"][0]["content"] == card(20)
    assert {c.activity_id for c in puts} == {activity_id}
    assert queue.stats.sent_total == 3
    assert queue.stats.dropped_superseded_total == 18


async def test_429_then_503s_every_post_and_the_final_edit_arrive_in_order_once(
    queue: OutboundQueue, timed: TimedSender, ref: str, fake_connector: FakeConnector
) -> None:
    first = await queue.post(ref, "run started")
    fake_connector.fail_next(1, status=429, retry_after=1)
    fake_connector.fail_next(2, status=503)

    for step in range(1, 4):
        queue.update(ref, first, f"step {step}", card(step))
    queue.update(ref, first, "step 4", card(4), final=True)
    summary = await queue.post(ref, "run passed in 42 s")
    await queue.flush(PERSONAL_CONVERSATION)

    delivered = [(c.method, shown(c)) for c in fake_connector.activities]
    assert delivered == [("POST", "run started"), ("PUT", "step 4"), ("POST", "run passed in 42 s")]
    assert summary == "fake-2"
    outcomes = [outcome for _, outcome in timed.attempts]
    assert outcomes == ["ok", "Throttled", "Transient", "Transient", "ok", "ok"]
    throttled_at, retried_at = timed.attempts[1][0], timed.attempts[2][0]
    assert retried_at - throttled_at >= 0.95  # Retry-After: 1
    stats = queue.stats
    assert (stats.throttled_total, stats.retries_total, stats.sent_total) == (1, 3, 3)


async def test_at_most_one_send_per_interval_per_conversation_in_call_order(
    timed: TimedSender, ref: str, fake_connector: FakeConnector
) -> None:
    queue = OutboundQueue(timed, RetryPolicy(min_interval_s=0.2))
    try:
        ids = await asyncio.gather(*(queue.post(ref, f"alert {n}") for n in range(5)))
    finally:
        await queue.close()

    assert texts(fake_connector.activities, "POST") == [f"alert {n}" for n in range(5)]
    assert ids == [f"fake-{n}" for n in range(1, 6)]
    assert min(gaps([t for t, _ in timed.attempts])) >= 0.19


async def test_a_throttled_conversation_does_not_hold_up_another(
    queue: OutboundQueue, fake_connector: FakeConnector
) -> None:
    personal, channel = (
        reference_json(fake_connector.url),
        reference_json(fake_connector.url, "channel"),
    )
    fake_connector.fail_next(1, status=429, retry_after=1)
    start = time.monotonic()

    throttled = asyncio.create_task(queue.post(personal, "to the personal chat"))
    await fake_connector.wait_for_calls(1)  # its first attempt got the 429
    await queue.post(channel, "to the channel")
    channel_done = time.monotonic() - start
    await throttled
    personal_done = time.monotonic() - start

    # The channel's post went out while the personal chat still waited out its 1 s
    # Retry-After (a margin for a loaded machine; held up, it would take >= 1 s).
    assert channel_done < 0.85 and personal_done >= 0.95
    posts = [(c.conversation_id, c.status) for c in fake_connector.calls]
    assert posts == [
        (PERSONAL_CONVERSATION, 429),
        (CHANNEL_THREAD, 200),
        (PERSONAL_CONVERSATION, 200),
    ]


async def test_a_permanent_refusal_is_reported_not_retried_and_the_lane_moves_on(
    queue: OutboundQueue, ref: str, fake_connector: FakeConnector, failures: list[DeliveryFailure]
) -> None:
    fake_connector.fail_next(1, status=403)

    with pytest.raises(Permanent):
        await queue.post(ref, "not installed here")
    next_id = await queue.post(ref, "next one")

    assert [c.status for c in fake_connector.calls] == [403, 200]
    assert next_id == "fake-1"
    [failure] = failures
    assert (failure.conversation_id, failure.kind, failure.error.status) == (
        PERSONAL_CONVERSATION,
        "post",
        403,
    )
    assert (queue.stats.failed_total, queue.stats.retries_total) == (1, 0)


async def test_a_final_edit_is_delivered_through_many_transient_failures(
    timed: TimedSender, ref: str, fake_connector: FakeConnector, failures: list[DeliveryFailure]
) -> None:
    queue = OutboundQueue(
        timed, RetryPolicy(0.01, 0.01, 0.05, edit_attempts=2), on_failure=failures.append
    )
    fake_connector.fail_next(2, status=503)
    queue.update(ref, "fake-9", "step 3", card(3))  # non-final: two attempts, then given up
    await queue.flush(PERSONAL_CONVERSATION)
    fake_connector.fail_next(6, status=502)
    queue.update(ref, "fake-9", "passed", card(4), final=True)
    await queue.flush(PERSONAL_CONVERSATION)
    await queue.close()

    assert [(c.method, shown(c)) for c in fake_connector.activities] == [("PUT", "passed")]
    [gave_up] = failures
    assert (gave_up.kind, gave_up.activity_id, gave_up.final) == ("edit", "fake-9", False)
    assert queue.stats.retries_total == 1 + 6


# -- the queue's rules, on a fake clock ------------------------------------------------------


class FakeTime:
    """A monotonic clock that moves only when the queue sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds
        await asyncio.sleep(0)


@dataclass
class ScriptedSender:
    """An in-memory ChatSender: fails with `errors` in turn, then succeeds; `gate` holds sends."""

    time: FakeTime
    errors: list[OutboundError] = field(default_factory=list)
    sent: list[tuple[float, str, str]] = field(default_factory=list)  # (time, op, text)
    gate: asyncio.Event | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)

    async def post(self, ref_json: str, text: str, card: dict[str, Any] | None) -> str:
        await self._attempt("post", text)
        return f"id-{len(self.sent)}"

    async def update(
        self, ref_json: str, activity_id: str, text: str, card: dict[str, Any] | None
    ) -> None:
        await self._attempt(f"put {activity_id}", text)

    async def _attempt(self, op: str, text: str) -> None:
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.errors:
            raise self.errors.pop(0)
        self.sent.append((self.time.now, op, text))


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def scripted(fake_time: FakeTime) -> ScriptedSender:
    return ScriptedSender(fake_time)


def fake_queue(
    scripted: ScriptedSender, policy: RetryPolicy | None = None, **kwargs: Any
) -> OutboundQueue:
    clock = scripted.time
    return OutboundQueue(scripted, policy, clock=clock.clock, sleep=clock.sleep, **kwargs)


REF = json.dumps({"conversation": {"id": "c-1"}})


async def test_the_default_pace_is_one_send_per_second(scripted: ScriptedSender) -> None:
    queue = fake_queue(scripted)

    await asyncio.gather(*(queue.post(REF, f"m{n}") for n in range(4)))
    queue.update(REF, "id-1", "edited")
    await queue.drain()

    assert [(t, text) for t, _, text in scripted.sent] == [
        (0.0, "m0"), (1.0, "m1"), (2.0, "m2"), (3.0, "m3"), (4.0, "edited"),
    ]  # fmt: skip


async def test_retry_after_is_capped_and_backoff_doubles_up_to_its_cap(
    scripted: ScriptedSender, fake_time: FakeTime
) -> None:
    scripted.errors = [Throttled(3600), Throttled(None), *[Transient(503)] * 6]
    queue = fake_queue(scripted, rnd=lambda: 1.0)  # jitter at its top: the full delay

    await queue.post(REF, "eventually")

    assert fake_time.sleeps == [60, 2, 4, 8, 16, 30, 30, 30]
    assert queue.stats.throttled_total == 2 and queue.stats.retries_total == 8


def test_jitter_keeps_between_half_and_all_of_the_delay() -> None:
    policy = RetryPolicy()
    assert [policy.backoff(3, r) for r in (0.0, 0.5, 1.0)] == [2.0, 3.0, 4.0]


async def test_a_post_gives_up_at_its_deadline_with_the_last_error(
    scripted: ScriptedSender, fake_time: FakeTime
) -> None:
    scripted.errors = [Transient(503)] * 100
    failures: list[DeliveryFailure] = []
    queue = fake_queue(scripted, RetryPolicy(deadline_s=100), on_failure=failures.append)

    with pytest.raises(Transient):
        await queue.post(REF, "never")

    assert fake_time.now <= 100 and len(failures) == 1 and failures[0].kind == "post"


async def test_a_later_final_edit_replaces_a_pending_edit_but_a_final_is_never_replaced(
    scripted: ScriptedSender,
) -> None:
    scripted.gate = asyncio.Event()
    queue = fake_queue(scripted)
    post = asyncio.create_task(queue.post(REF, "card"))
    await scripted.started.wait()  # the post is on the wire; the edits below wait their turn

    queue.update(REF, "id-1", "v1")
    queue.update(REF, "id-1", "v2 final", final=True)
    queue.update(REF, "id-1", "v3")
    queue.update(REF, "id-1", "v4")
    scripted.gate.set()
    await post
    await queue.drain()

    assert [text for _, _, text in scripted.sent] == ["card", "v2 final", "v4"]
    assert queue.stats.dropped_superseded_total == 2


async def test_content_merged_while_an_edit_is_on_the_wire_is_sent_after_it(
    scripted: ScriptedSender,
) -> None:
    scripted.gate = asyncio.Event()
    queue = fake_queue(scripted)
    queue.update(REF, "id-1", "v1")
    await scripted.started.wait()

    queue.update(REF, "id-1", "v2")
    queue.update(REF, "id-1", "v3", final=True)
    scripted.gate.set()
    await queue.drain()

    assert [(t, text) for t, _, text in scripted.sent] == [(0.0, "v1"), (1.0, "v3")]
    assert queue.stats.dropped_superseded_total == 1


async def test_a_cancelled_caller_does_not_withdraw_its_post(scripted: ScriptedSender) -> None:
    scripted.gate = asyncio.Event()
    queue = fake_queue(scripted)

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(queue.post(REF, "still wanted"), 0.01)
    scripted.gate.set()
    await queue.drain()

    assert [text for _, _, text in scripted.sent] == ["still wanted"]


async def test_close_fails_unsent_posts_and_refuses_new_work(scripted: ScriptedSender) -> None:
    scripted.gate = asyncio.Event()
    queue = fake_queue(scripted)
    posts = [asyncio.create_task(queue.post(REF, f"m{n}")) for n in range(2)]
    await scripted.started.wait()

    await queue.close()

    for post in posts:
        with pytest.raises(QueueClosed):
            await post
    with pytest.raises(QueueClosed):
        queue.update(REF, "id-1", "late")
    assert scripted.sent == []


def test_a_reference_without_a_conversation_is_refused_at_once(scripted: ScriptedSender) -> None:
    with pytest.raises(ValueError, match=r"conversation\.id"):
        fake_queue(scripted).update("{}", "id-1", "x")


# -- posts that return at once (the runs' Reporter) ------------------------------------------


async def test_enqueue_post_returns_at_once_and_edits_of_it_wait_behind_it(
    scripted: ScriptedSender,
) -> None:
    """A run queues its progress card and goes on; its edits follow the post, to its id."""
    scripted.gate = asyncio.Event()
    queue = fake_queue(scripted)
    sent_ids: list[str] = []

    async def remember(activity_id: str) -> None:
        sent_ids.append(activity_id)

    key = queue.enqueue_post(REF, "run started", card(0), on_sent=remember)
    queue.update(REF, key, "step 1", card(1))
    queue.update(REF, key, "step 2", card(2), final=True)
    assert scripted.sent == [] and not key.startswith("id-")  # nothing waited for Teams

    scripted.gate.set()
    await queue.drain()
    await asyncio.sleep(0)  # on_sent runs in the background

    assert [(op, text) for _, op, text in scripted.sent] == [
        ("post", "run started"),
        ("put id-1", "step 2"),
    ]
    assert sent_ids == ["id-1"]


async def test_a_final_edit_of_a_post_teams_never_took_is_posted_as_a_new_message(
    scripted: ScriptedSender, fake_time: FakeTime
) -> None:
    scripted.errors = [Permanent(403, "bot not in conversation")]
    queue = fake_queue(scripted)

    key = queue.enqueue_post(REF, "run started")
    queue.update(REF, key, "step 1")
    queue.update(REF, key, "run failed", final=True)
    await queue.drain()

    assert [(op, text) for _, op, text in scripted.sent] == [("post", "run failed")]


async def test_on_sent_failing_costs_nothing_but_a_log_line(
    scripted: ScriptedSender, caplog: pytest.LogCaptureFixture
) -> None:
    queue = fake_queue(scripted)

    async def broken(activity_id: str) -> None:
        raise RuntimeError("the store is gone")

    queue.enqueue_post(REF, "first", on_sent=broken)
    second = await queue.post(REF, "second")
    await asyncio.sleep(0)

    assert second == "id-2"
    assert "on_sent callback failed" in caplog.text
