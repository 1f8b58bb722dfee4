"""The outbound queue: every proactive send to a conversation, paced, retried, in order.

Teams limits each bot per thread (7 sends/1 s, 8/2 s, 60/30 s; edits count) and botbuilder
retries nothing, so all proactive traffic goes through here:

- one lane per conversation, with a worker task started on demand; a lane sends one thing
  at a time, in arrival order, and starts at most one attempt per `min_interval_s`
  (1 s by default keeps a long run under 60/30 s too);
- posts are never dropped: retried through 429s and transient errors until
  `deadline_s` after their first attempt; `post()` waits for the new activity's id,
  `enqueue_post()` returns at once with a message key (the id follows to `on_sent`);
- an edit may name a message by that key before Teams has it: it queues behind the post
  and goes to the id the post got; a final edit of a post that was never delivered is
  posted as a new message instead, so a final state is never lost;
- edits of one message are coalesced: newer content merges into the pending (or in-flight)
  edit of that message, so the newest card wins and stale states are never sent; a
  non-final edit gives up after `edit_attempts` failures (the next edit repairs the card),
  a final edit is retried like a post and is never merged away — a later final edit may
  still replace an earlier non-final one;
- a 429 waits Retry-After (capped), else exponential backoff with jitter; permanent errors
  are not retried: they are logged with the conversation id and passed to `on_failure`.

Lanes are independent: one throttled conversation does not hold up another.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from bot.teams.proactive import ChatSender, OutboundError, Permanent, Throttled, conversation_id_of

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
OnSent = Callable[[str], Awaitable[None]]
# Told when the queue gives up on a post or a final edit (refused for good, or retried past
# its deadline): whoever kept it for a later try (a pending final) hears it will not come.
OnGaveUp = Callable[[], Awaitable[None]]

# Message keys handed out by enqueue_post and still resolvable by a later edit; a run edits
# its progress card for minutes, far fewer than this many posts later.
KEYS_KEPT = 10_000
KEY_PREFIX = "queued:"


class QueueClosed(RuntimeError):
    """The queue was closed: nothing more is sent (pending posts fail with this)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Pacing and retry bounds; the defaults follow Teams' per-thread limits."""

    min_interval_s: float = 1.0
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 30.0
    retry_after_cap_s: float = 60.0
    edit_attempts: int = 5  # non-final edits only
    deadline_s: float = 600.0  # posts and final edits, from their first attempt

    def backoff(self, failures: int, rnd: float) -> float:
        """Delay before retry number `failures` (1-based): equal jitter, capped."""
        ceiling = min(self.backoff_cap_s, self.backoff_base_s * 2.0 ** min(failures - 1, 32))
        return ceiling / 2 + ceiling / 2 * rnd


@dataclass
class OutboundStats:
    """Counters for /metrics; only ever incremented."""

    sent_total: int = 0
    throttled_total: int = 0
    retries_total: int = 0
    dropped_superseded_total: int = 0
    failed_total: int = 0


@dataclass(frozen=True)
class DeliveryFailure:
    """A post or edit that will not be delivered: refused, or retried past its bound."""

    conversation_id: str
    kind: Literal["post", "edit"]
    activity_id: str | None
    final: bool
    error: OutboundError


FailureHook = Callable[[DeliveryFailure], None]


@dataclass
class _Post:
    ref_json: str
    text: str
    card: dict[str, Any] | None
    result: asyncio.Future[str]
    on_sent: OnSent | None = None
    on_gave_up: OnGaveUp | None = None


@dataclass
class _Edit:
    """The content message `activity_id` should show; newer content overwrites it in place."""

    ref_json: str
    activity_id: str
    text: str
    card: dict[str, Any] | None
    final: bool
    version: int = 0  # bumped on every merge; each version is either sent or superseded
    on_sent: OnSent | None = None  # told the Teams id once a final state is delivered
    on_gave_up: OnGaveUp | None = None  # told when a final state will not be delivered


@dataclass
class _Lane:
    conversation_id: str
    jobs: deque[_Post | _Edit] = field(default_factory=deque)
    # Edits newer content may still merge into: queued or in flight, and not final.
    open_edits: dict[str, _Edit] = field(default_factory=dict)
    current: _Post | _Edit | None = None
    next_attempt_at: float = float("-inf")
    task: asyncio.Task[None] | None = None


def _ignore_unretrieved(future: asyncio.Future[str]) -> None:
    # A caller cancelled while waiting for its post leaves nobody to read the outcome.
    if not future.cancelled():
        future.exception()


class OutboundQueue:
    """Per-conversation ordered, paced, retrying sends over a ChatSender (see module doc)."""

    def __init__(
        self,
        sender: ChatSender,
        policy: RetryPolicy | None = None,
        *,
        on_failure: FailureHook | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rnd: Callable[[], float] = random.random,
    ) -> None:
        self._sender = sender
        self.policy = policy or RetryPolicy()
        self.stats = OutboundStats()
        self._on_failure = on_failure
        self._clock, self._sleep, self._rnd = clock, sleep, rnd
        self._lanes: dict[str, _Lane] = {}
        self._closed = False
        self._keys: OrderedDict[str, asyncio.Future[str]] = OrderedDict()
        self._counter = itertools.count(1)
        self._callbacks: set[asyncio.Task[None]] = set()

    async def post(self, ref_json: str, text: str, card: dict[str, Any] | None = None) -> str:
        """Post a new message once it is its turn; its activity id.

        Raises the OutboundError that ended it (Permanent, or the last one at the deadline)
        or QueueClosed. Cancelling the caller does not withdraw the post.
        """
        key = self.enqueue_post(ref_json, text, card)
        return await asyncio.shield(self._keys[key])

    def enqueue_post(
        self,
        ref_json: str,
        text: str,
        card: dict[str, Any] | None = None,
        *,
        on_sent: OnSent | None = None,
        on_gave_up: OnGaveUp | None = None,
    ) -> str:
        """Queue a new message and return at once: a key `update` accepts for it.

        `on_sent(activity_id)` runs (in the background) once Teams has the message,
        `on_gave_up()` once the queue gave up on it.
        Raises QueueClosed when the queue is closed.
        """
        result: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        result.add_done_callback(_ignore_unretrieved)
        lane = self._lane(ref_json)
        key = f"{KEY_PREFIX}{next(self._counter)}"
        self._keys[key] = result
        while len(self._keys) > KEYS_KEPT:
            self._keys.popitem(last=False)
        lane.jobs.append(_Post(ref_json, text, card, result, on_sent, on_gave_up))
        self._wake(lane)
        return key

    def update(
        self,
        ref_json: str,
        activity_id: str,
        text: str,
        card: dict[str, Any] | None = None,
        *,
        final: bool = False,
        on_sent: OnSent | None = None,
        on_gave_up: OnGaveUp | None = None,
    ) -> None:
        """Queue an edit of message `activity_id` (a Teams id, or a key from enqueue_post);
        it replaces an older undelivered non-final one.

        Returns at once; `flush()` waits for delivery, `on_failure` hears of a failure,
        `on_sent` (a final edit's) hears of its delivery, `on_gave_up` of the queue giving
        up on it.
        """
        lane = self._lane(ref_json)
        edit = lane.open_edits.get(activity_id)
        if edit is None:
            edit = _Edit(
                ref_json, activity_id, text, card, final, on_sent=on_sent, on_gave_up=on_gave_up
            )
            lane.jobs.append(edit)
        else:
            edit.ref_json, edit.text, edit.card, edit.final = ref_json, text, card, final
            edit.on_sent, edit.on_gave_up = on_sent, on_gave_up
            edit.version += 1
        if final:
            lane.open_edits.pop(activity_id, None)  # a final state is never overwritten
        else:
            lane.open_edits[activity_id] = edit
        self._wake(lane)

    async def flush(self, conversation_id: str) -> None:
        """Wait until everything queued for `conversation_id` so far was sent or given up."""
        lane = self._lanes.get(conversation_id)
        while lane is not None and lane.task is not None and not lane.task.done():
            await asyncio.shield(lane.task)

    async def drain(self) -> None:
        """Wait until every lane is idle (graceful shutdown: call before `close`)."""
        while busy := [
            lane.task for lane in self._lanes.values() if lane.task and not lane.task.done()
        ]:
            await asyncio.gather(*(asyncio.shield(task) for task in busy))

    async def close(self) -> None:
        """Stop every worker now; unsent posts fail with QueueClosed, unsent edits are lost."""
        self._closed = True
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for lane in self._lanes.values():
            for job in [lane.current, *lane.jobs]:
                if isinstance(job, _Post) and not job.result.done():
                    job.result.set_exception(QueueClosed("the outbound queue was closed"))
            lane.jobs.clear()
            lane.open_edits.clear()

    # -- lanes and workers ------------------------------------------------------------------

    def _lane(self, ref_json: str) -> _Lane:
        if self._closed:
            raise QueueClosed("the outbound queue is closed")
        conversation_id = conversation_id_of(ref_json)
        lane = self._lanes.get(conversation_id)
        if lane is None:
            lane = self._lanes[conversation_id] = _Lane(conversation_id)
        return lane

    def _wake(self, lane: _Lane) -> None:
        if lane.task is None or lane.task.done():
            lane.task = asyncio.create_task(
                self._work(lane), name=f"outbound:{lane.conversation_id}"
            )

    async def _work(self, lane: _Lane) -> None:
        # Exits when the lane is empty (no await between that check and returning, so a job
        # queued meanwhile is seen); `_wake` starts a new worker for the next job.
        while lane.jobs:
            job = lane.current = lane.jobs.popleft()
            try:
                if isinstance(job, _Post):
                    await self._send_post(lane, job)
                else:
                    await self._send_edit(lane, job)
            except Exception:  # a bug must cost one message, not the conversation's queue
                log.exception("outbound send failed [conversation %s]", lane.conversation_id)
                if isinstance(job, _Post) and not job.result.done():
                    job.result.set_exception(Permanent(None, "internal error while sending"))
            # Not in a `finally`: when close() cancels us, it answers the job in flight.
            lane.current = None

    async def _send_post(self, lane: _Lane, post: _Post) -> None:
        failures, give_up_at = 0, None
        while True:
            await self._slot(lane)
            if give_up_at is None:
                give_up_at = self._clock() + self.policy.deadline_s
            try:
                activity_id = await self._sender.post(post.ref_json, post.text, post.card)
            except OutboundError as error:
                failures += 1
                if not self._retry(lane, error, failures, give_up_at):
                    self._report(
                        lane, DeliveryFailure(lane.conversation_id, "post", None, True, error)
                    )
                    if not post.result.done():
                        post.result.set_exception(error)
                    if post.on_gave_up is not None:
                        self._background(post.on_gave_up(), lane)
                    return
                continue
            self.stats.sent_total += 1
            if not post.result.done():
                post.result.set_result(activity_id)
            if post.on_sent is not None:
                self._background(post.on_sent(activity_id), lane)
            return

    def _background(self, work: Awaitable[None], lane: _Lane) -> None:
        async def guarded() -> None:
            try:
                await work
            except Exception:
                log.exception("on_sent callback failed [conversation %s]", lane.conversation_id)

        task = asyncio.create_task(guarded())
        self._callbacks.add(task)
        task.add_done_callback(self._callbacks.discard)

    def delivered_id(self, message: str) -> str | None:
        """The Teams id of `message` (a Teams id, or a key from enqueue_post); None while
        its post has not reached Teams (or never will)."""
        posted = self._keys.get(message)
        if posted is None:
            return None if message.startswith(KEY_PREFIX) else message
        if not posted.done() or posted.cancelled() or posted.exception() is not None:
            return None
        return posted.result()

    def _target(self, edit: _Edit) -> str | None:
        """The Teams id an edit goes to; None when its message was never delivered."""
        posted = self._keys.get(edit.activity_id)
        if posted is None:
            return None if edit.activity_id.startswith(KEY_PREFIX) else edit.activity_id
        # Its post was earlier in this lane, so it has finished by now.
        if not posted.done() or posted.cancelled() or posted.exception() is not None:
            return None
        return posted.result()

    async def _send_edit(self, lane: _Lane, edit: _Edit) -> None:
        target = self._target(edit)
        if target is None:
            # The message never reached Teams: a final state goes out as a new message.
            if edit.final:
                result: asyncio.Future[str] = asyncio.get_running_loop().create_future()
                result.add_done_callback(_ignore_unretrieved)
                self._finish_edit(lane, edit, 1, failed=False)
                await self._send_post(
                    lane,
                    _Post(edit.ref_json, edit.text, edit.card, result, edit.on_sent,
                          edit.on_gave_up),
                )  # fmt: skip
            else:
                self._finish_edit(lane, edit, 0, failed=True)
            return
        failures, sent, give_up_at = 0, 0, None
        while True:
            await self._slot(lane)
            if give_up_at is None:
                give_up_at = self._clock() + self.policy.deadline_s
            version = edit.version
            try:
                await self._sender.update(edit.ref_json, target, edit.text, edit.card)
            except OutboundError as error:
                failures += 1
                # Read `final` now: a final state may have merged in during the backoff.
                exhausted = not edit.final and failures >= self.policy.edit_attempts
                if exhausted or not self._retry(lane, error, failures, give_up_at):
                    self._finish_edit(lane, edit, sent, failed=True)
                    failure = DeliveryFailure(
                        lane.conversation_id, "edit", edit.activity_id, edit.final, error
                    )
                    self._report(lane, failure)
                    if edit.final and edit.on_gave_up is not None:
                        self._background(edit.on_gave_up(), lane)
                    return
                continue
            self.stats.sent_total += 1
            sent += 1
            if edit.version == version:
                self._finish_edit(lane, edit, sent, failed=False)
                if edit.on_sent is not None:
                    self._background(edit.on_sent(target), lane)
                return
            # Newer content merged in while this attempt was on the wire: it goes out next.
            failures, give_up_at = 0, None

    async def _slot(self, lane: _Lane) -> None:
        """Wait for the lane's next attempt time, then book the one after (failures count too)."""
        wait = lane.next_attempt_at - self._clock()
        if wait > 0:
            await self._sleep(wait)
        lane.next_attempt_at = self._clock() + self.policy.min_interval_s

    def _retry(self, lane: _Lane, error: OutboundError, failures: int, give_up_at: float) -> bool:
        """Count the failure and book the retry; False when it must not be retried."""
        if isinstance(error, Throttled):
            self.stats.throttled_total += 1
        if isinstance(error, Permanent):
            return False
        if isinstance(error, Throttled) and error.retry_after is not None:
            delay = min(error.retry_after, self.policy.retry_after_cap_s)
        else:
            delay = self.policy.backoff(failures, self._rnd())
        retry_at = self._clock() + delay
        if retry_at > give_up_at:
            return False
        lane.next_attempt_at = max(lane.next_attempt_at, retry_at)
        self.stats.retries_total += 1
        return True

    def _finish_edit(self, lane: _Lane, edit: _Edit, sent: int, *, failed: bool) -> None:
        if lane.open_edits.get(edit.activity_id) is edit:
            del lane.open_edits[edit.activity_id]
        # Every version was sent, superseded by a newer one, or (the last) failed.
        self.stats.dropped_superseded_total += edit.version + 1 - sent - int(failed)

    def _report(self, lane: _Lane, failure: DeliveryFailure) -> None:
        self.stats.failed_total += 1
        error = failure.error
        level = logging.ERROR if isinstance(error, Permanent) or failure.final else logging.WARNING
        log.log(
            level,
            "outbound %s%s not delivered: %s [conversation %s]",
            failure.kind,
            f" of {failure.activity_id}" if failure.activity_id else "",
            error,
            lane.conversation_id,
        )
        if self._on_failure is not None:
            try:
                self._on_failure(failure)
            except Exception:
                log.exception("on_failure hook failed [conversation %s]", lane.conversation_id)
