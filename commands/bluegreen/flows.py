"""The blue/green flows of this process: from a finished deploy to the end of the watch.

`bluegreen PAIR VERSION` (commands/bluegreen/chat.py) takes the pair and asks approval #1
for an ordinary deploy of the idle slot; the executor runs it (preflight, restore). Its end
lands here (`run_ended`), and the flow goes on in the background:

- BG-2 the gates on the idle slot — its smoke, then the DR tests the pair lists — under the
  slot's environment lock, each result on the flow card; a gate that does not pass ends the
  flow `stopped`: nothing was switched.
- BG-3 `Approved` (audit, timeline, a message), then approval card #2, an ordinary request
  (command "switch", environment = the pair) decided by the pair's approval rules.
- BG-4 (`start_switch`, on approval) the farm is read fresh and must still show the slot the
  proposal switches from; commands/switch.py runs online → drain → offline, checking every
  read-back; then the watch: smoke through the router's public URL and the new slot's
  failed-request rate from the router's counters, every `interval_s`, with a countdown on
  the card.
- BG-5 a failed watch, a failed switch step, or Switch back (button or `switchback PAIR`,
  approvers of the pair, once, until the pair's next flow) runs the plan back to the old
  slot and says what the router reads afterwards; an automatic one raises an alert.

Whatever is said about the router is what it answered, read after the change. If the
process dies, the flow stays in its state in the store; `recover` at the next start marks
it `interrupted`, reads the router and tells the conversation which slot is live — nothing
is switched automatically at start.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from typing import Any, Protocol

from adapters.errors import RemoteError
from adapters.router.farm import Farm, TrafficRouter
from adapters.store.rows import Flow, Request
from commands.bluegreen.lock import settle_stale
from commands.bluegreen.model import (
    SWITCH_COMMAND,
    GateLine,
    SwitchProposal,
    WatchTick,
    is_pair_approver_by_role,
    judge_watch,
    router_targets,
    tick_from,
)
from commands.cards.bluegreen import FlowView, render_flow_card, render_switch_card
from commands.change import new_request_id
from commands.config import Pair
from commands.context import Services, actor_fields
from commands.dr.engine import open_run_folder, run_dr_tests
from commands.dr.judge import DrResult
from commands.dr.matrix import BY_KEY, SMOKE, DrTest
from commands.slots import PairView, SwitchPlan, plan_switch, view_pair
from commands.switch import StepOutcome, SwitchOutcome, run_switch
from commands.types import Actor

log = logging.getLogger(__name__)

OnSent = Callable[[str], Awaitable[None]]


class FlowOutbox(Protocol):
    """Where a flow's cards and messages go (bot/teams/reporter.py implements it)."""

    async def post(
        self,
        conversation_id: str,
        text: str,
        card: dict[str, Any] | None,
        *,
        on_sent: OnSent | None = None,
    ) -> str | None: ...

    async def update(
        self,
        conversation_id: str,
        message: str,
        text: str,
        card: dict[str, Any],
        *,
        final: bool = False,
    ) -> None: ...


class FlowAlarm(Protocol):
    """Raises the alert of a flow that had to switch back on its own (bot/server.py wires it)."""

    async def switched_back(self, flow: Flow, reason: str, router_now: str, back: bool) -> None: ...


@dataclass(frozen=True)
class SwitchBackAnswer:
    """A Switch back click or command: `card` (the flow card) when accepted, else why not."""

    text: str
    code: str = ""
    card: dict[str, Any] | None = None


def router_words(pair: Pair, view: PairView) -> str:
    """What the router says, in words: the live slot, or every irregularity."""
    where = f"{view.farm.router} (farm {view.farm.name})"
    if view.live is not None and view.clean:
        return f"{view.live} is live, {view.standby} is out of rotation ({where})"
    live = f"{view.live} is live" if view.live else "no single live slot"
    return f"{live}; " + "; ".join(view.problems) + f" ({where})"


def step_words(outcome: StepOutcome) -> str:
    mark = "✅" if outcome.ok else "❌"
    text = f"{mark} {outcome.step.label}"
    if outcome.drain is not None:
        how = (
            "drained"
            if outcome.drain.drained
            else (f"deadline reached with {outcome.drain.current_requests} in flight")
        )
        text += f" — {how} after {outcome.drain.waited_s:.1f} s"
    if outcome.problems:
        text += ": " + "; ".join(outcome.problems)
    return text


@dataclass(frozen=True)
class _When:
    """Who stopped and when the router was read, in an interrupted flow's note."""

    who: str
    read: str


_AT_RESTART = _When("the bot", "at restart")
_AT_TAKEOVER = _When("the bot instance driving it", "when another instance took it over")


@dataclass
class _Live:
    """What a running flow knows beyond its row: the card's extras and its signals."""

    view: FlowView
    card: str | None = None  # the outbox handle of the flow card
    switchback: asyncio.Event | None = None


class BlueGreenFlows:
    """The flows running in this process; commands and card clicks reach it via Services."""

    def __init__(self) -> None:
        self._services: Services | None = None
        self._outbox: FlowOutbox | None = None
        self._alarm: FlowAlarm | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._live: dict[str, _Live] = {}
        self._accepting = True

    def connect(self, services: Services, outbox: FlowOutbox, alarm: FlowAlarm | None) -> None:
        """Give the flows their services, chat and alerts (they exist after the app)."""
        self._services, self._outbox, self._alarm = services, outbox, alarm

    @property
    def running(self) -> int:
        return len(self._tasks)

    # --- entry points ----------------------------------------------------------------------

    def run_ended(self, request_id: str) -> None:
        """The executor finished a request's run (any outcome): a flow's deploy goes on."""
        self._spawn(self._after_deploy(request_id), f"bluegreen-after:{request_id}")

    def request_decided(self, request_id: str) -> None:
        """A request was rejected: a flow waiting on it ends (and says so)."""
        self._spawn(self._settle(request_id), f"bluegreen-settle:{request_id}")

    def start_switch(self, request: Request) -> bool:
        """Approval card #2 was approved: switch in the background; False when shutting down."""
        return self._spawn(self._switch(request), f"bluegreen-switch:{request.id}")

    async def switch_back(
        self, flow_id: str, actor: Actor, tenant_id: str | None
    ) -> SwitchBackAnswer:
        """Switch back (button or `switchback PAIR`): approvers of the pair, once, while the
        flow watches, after it went live, or after it was interrupted — and only until the
        pair's next flow."""
        services = self._need()
        flow = await services.store.get_flow(flow_id)
        if flow is None:
            return SwitchBackAnswer(f"There is no blue/green {flow_id}; nothing ran.", "NotFound")
        who = actor_fields(actor.name, actor.aad_object_id)

        async def refuse(code: str, text: str) -> SwitchBackAnswer:
            await services.audit.append(
                "SwitchBackRefused", environment=flow.pair, run_id=flow.id, actor=who,
                status=code, detail={"message": text},
            )  # fmt: skip
            return SwitchBackAnswer(text, code)

        if flow.pair not in services.config.pairs:
            return await refuse("NotFound", f"Pair {flow.pair} is no longer configured.")
        allowed = is_pair_approver_by_role(services.config, actor.aad_object_id, flow.pair)
        groups = services.config.pairs[flow.pair].approval.approver_groups
        if not allowed and groups and actor.aad_object_id:
            try:
                allowed = bool(
                    await services.groups.member_of(actor.aad_object_id, groups, tenant_id)
                )
            except Exception as exc:  # GroupLookupFailed: fail closed
                return await refuse(
                    "GroupLookupFailed",
                    f"I could not check your approver groups ({exc}); nothing ran.",
                )
        if not allowed:
            return await refuse(
                "Forbidden",
                f"Switching back needs the **approver** role for pair {flow.pair} (or both "
                f"{' and '.join(services.config.pairs[flow.pair].slots)}); nothing ran.",
            )
        if flow.switchback_by:
            return await refuse(
                "AlreadyUsed",
                f"{flow.id} was already switched back (by {flow.switchback_by}); it can be "
                "used once. Nothing ran.",
            )
        if not self._accepting:
            return await refuse("Unavailable", "The bot is shutting down; nothing ran.")
        if flow.state == "watching" and flow.id in self._live:
            claimed = await services.store.claim_switchback(
                flow.id, actor.name, ["watching"], "watching"
            )
            if claimed:
                event = self._live[flow.id].switchback
                if event is not None:
                    event.set()
        elif flow.state in ("live", "interrupted") or (
            flow.state == "failed" and flow.switched_at is not None
        ):
            claimed = await services.store.claim_switchback(
                flow.id, actor.name, [flow.state], "switching-back"
            )
            if claimed:
                self._spawn(
                    self._manual_switch_back(flow.id, actor.name), f"bluegreen-back:{flow.id}"
                )
        else:
            claimed = False
        if not claimed:
            fresh = await services.store.get_flow(flow.id) or flow
            newer = await services.store.latest_flow(flow.pair)
            if newer is not None and newer.id != flow.id:
                why = f"pair {flow.pair} has had a newer blue/green since ({newer.id})"
            elif fresh.switchback_by:
                why = f"it was already switched back by {fresh.switchback_by}"
            else:
                why = f"it is {fresh.state}: nothing was switched that could be switched back"
            return await refuse(
                "NotAvailable", f"Switch back of {flow.id} is not available: {why}."
            )
        await services.audit.append(
            "SwitchBackRequested", environment=flow.pair, run_id=flow.id, actor=who,
            status="accepted", detail={"to": flow.from_slot},
        )  # fmt: skip
        fresh = await services.store.get_flow(flow.id) or flow
        card = render_flow_card(self._view(fresh), services.config.tz)
        return SwitchBackAnswer(
            f"Switching {flow.pair} back to {flow.from_slot} ({flow.id}), as {actor.name} asked.",
            card=card,
        )

    async def recover(self) -> list[str]:
        """At start: flows a dead process left mid-way become `interrupted`; each
        conversation is told what the router says now. Returns their ids."""
        # Instances sharing PostgreSQL: a flow another live process drives is its own.
        gone = await self._need().store.gone_flow_ids(at_start=True)
        return await self._interrupt(gone, _AT_RESTART)

    async def take_over(self) -> list[str]:
        """While running (the lease loop, PostgreSQL): claim the flows an instance that
        stopped renewing its lease left — exactly one survivor gets each — and settle them
        as a start would, in the background (reading the router may be slow). Without
        this, a dead instance's flow would hold its pair until some instance restarted.
        Returns the ids claimed."""
        taken = await self._need().store.take_over_gone_flows()
        if taken:
            self._spawn(self._settle_taken(set(taken)), "bluegreen-takeover")
        return taken

    async def _settle_taken(self, taken: set[str]) -> None:
        await self._interrupt(taken, _AT_TAKEOVER)

    async def _interrupt(self, gone: Collection[str], when: _When) -> list[str]:
        """Flows of `gone` left mid-way become `interrupted` (a waiting one ends once its
        request is dead); each conversation is told what the router says now."""
        services = self._need()
        told = []
        for flow in await services.store.active_flows():
            if flow.id not in gone:
                continue
            if flow.state in ("deploy-pending", "switch-pending"):
                await settle_stale(services, flow)  # a dead request ends it; else it waits
                continue
            if flow.state == "deploying":
                continue
            stuck_at = f"{flow.state}" + (f", at step: {flow.step}" if flow.step else "")
            router_now = await self._router_now(flow)
            note = (
                f"Interrupted: {when.who} stopped during {stuck_at}. The router, read "
                f"{when.read}: {router_now}. Nothing was changed {when.read}."
                + (
                    f" To put all traffic on {flow.from_slot}: `switchback {flow.pair}`."
                    if not flow.switchback_by
                    else ""
                )
            )
            if not await services.store.move_flow(flow.id, [flow.state], "interrupted", note=note):
                continue
            if flow.switch_request_id:
                await services.store.transition_request(
                    flow.switch_request_id, ["approved", "running"], "interrupted"
                )
            await services.audit.append(
                "Interrupted", environment=flow.pair, run_id=flow.id, status="interrupted",
                detail={"state": flow.state, "step": flow.step or "", "router": router_now},
            )  # fmt: skip
            await services.timeline.append(f"bluegreen {flow.pair} {flow.id} interrupted: {note}")
            told.append(flow.id)
            fresh = await services.store.get_flow(flow.id) or flow
            view = replace(self._view(fresh), live_now=router_now)
            await self._show(fresh, view, final=True)
            await self._say(fresh, f"⚠️ {flow.id} ({flow.pair} → {flow.version}): {note}")
        return told

    async def close(self, timeout_s: float) -> None:
        """Accept nothing new; cancel the flows running (the next start tells them)."""
        self._accepting = False
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)

    # --- BG-2, BG-3 ------------------------------------------------------------------------

    async def _settle(self, request_id: str) -> None:
        services = self._need()
        flow = await services.store.flow_of_request(request_id)
        if flow is None or not flow.active:
            return
        if await settle_stale(services, flow) is None:
            ended = await services.store.get_flow(flow.id) or flow
            await self._show(ended, self._view(ended), final=True)
            await self._say(ended, f"{flow.id} stopped: {ended.note}")

    async def _after_deploy(self, request_id: str) -> None:
        services = self._need()
        flow = await services.store.flow_of_request(request_id)
        if flow is None or flow.deploy_request_id != request_id or flow.state != "deploy-pending":
            return
        request = await services.store.get_request(request_id)
        if request is None or request.state != "succeeded":
            await self._settle(request_id)
            return
        if not await services.store.move_flow(flow.id, ["deploy-pending"], "gating"):
            return
        flow = await self._reload(flow)
        self._live[flow.id] = _Live(FlowView(flow))
        await self._post_card(flow)
        try:
            await self._gates(flow, request)
        finally:
            self._forget(flow.id)

    async def _gates(self, flow: Flow, deploy: Request) -> None:
        services = self._need()
        pair = services.config.pairs[flow.pair]
        # The gates (a ZAP scan, say) are for an idle slot: read the router, never assume.
        view = await self._router_view(flow)
        if view is None or view.live != flow.from_slot or view.slot(flow.to_slot).takes_traffic:
            words = router_words(pair, view) if view else "the router could not be read"
            await self._stop(
                flow,
                f"Before the gates, the router does not show {flow.to_slot} idle and "
                f"{flow.from_slot} live: {words}. Nothing was tested or switched.",
            )
            return
        tests: tuple[DrTest, ...] = (SMOKE, *(BY_KEY[key] for key in pair.gates))
        lines: list[GateLine] = []
        lock = await services.store.try_lock(flow.to_slot, flow.id, flow.requester_name)
        if not lock.acquired:
            await self._stop(
                flow,
                f"{flow.to_slot} is busy with {lock.holder_run_id} ({lock.holder_name}); the gates "
                "could not run. Nothing was switched.",
            )
            return
        try:
            folder = open_run_folder(
                services, services.checks.dr_dir, flow.to_slot, tests,
                {"name": flow.requester_name, "aad_object_id": flow.requester_id},
            )  # fmt: skip
            flows = self

            class Observer:
                async def started(self, test: DrTest) -> None:
                    shown = (*lines, GateLine(test.id, "running"))
                    await flows._progress(flow, gates=shown, step=f"gate {test.id}")

                async def finished(self, result: DrResult) -> None:
                    lines.append(_gate_line(result))
                    await flows._progress(flow, gates=tuple(lines))

            results = await run_dr_tests(services, flow.to_slot, tests, folder, observer=Observer())
        finally:
            await services.store.release_lock(flow.to_slot, flow.id)
        lines = [_gate_line(r) for r in results]
        gates_json = json.dumps([asdict(g) for g in lines])
        await services.store.set_flow(flow.id, gates_json=gates_json)
        for result in results:
            await services.audit.append(
                "Gate", environment=flow.to_slot, request_id=deploy.id, run_id=flow.id,
                status=result.outcome, detail={"test": result.test.id, "counts": result.counts},
            )  # fmt: skip
        failed = [g for g in lines if g.outcome != "passed"]
        if failed:
            first = failed[0]
            await self._stop(
                flow,
                f"Gate {first.test} {first.outcome} on {flow.to_slot}"
                + (f" ({first.summary})" if first.summary else "")
                + f": the switch was not offered. Nothing was switched; {flow.from_slot} still "
                f"serves users, {flow.to_slot} keeps {flow.version} for inspection.",
            )
            return
        await self._offer_switch(await self._reload(flow), deploy, tuple(lines))

    async def _offer_switch(self, flow: Flow, deploy: Request, gates: tuple[GateLine, ...]) -> None:
        """BG-3: `Approved` (audit, timeline, channel), then approval card #2."""
        services = self._need()
        pair = services.config.pairs[flow.pair]
        policy = pair.approval
        now = services.now()
        summary = ", ".join(f"{g.test} {g.outcome}" for g in gates)
        await services.audit.append(
            "Approved", environment=flow.to_slot, request_id=deploy.id, run_id=flow.id,
            status="approved",
            detail={"bluegreen": flow.id, "version": flow.version, "gates": summary,
                    "stage": "BG-3: the idle slot passed its gates"},
        )  # fmt: skip
        await services.timeline.append(
            f"bluegreen {flow.pair} {flow.id}: {flow.to_slot} {flow.version} Approved ({summary})"
        )
        await self._say(
            flow,
            f"✅ Approved: {flow.to_slot} runs {flow.version} and passed its gates ({summary}). "
            f"Switching production traffic needs approval #2 (below).",
        )
        router = services.routers(pair.router)
        proposal = SwitchProposal(
            flow_id=flow.id, pair=flow.pair,
            from_slot=flow.from_slot, from_version=flow.from_version or "?",
            to_slot=flow.to_slot, to_version=flow.version, gates=gates,
            deploy_request_id=deploy.id,
            deploy_approved_by=deploy.approvers or deploy.decided_by_name or "?",
            router=router.name, drain_deadline_s=pair.router.drain_deadline_s,
            watch_minutes=pair.watch.window_minutes,
            max_error_rate_pct=pair.watch.max_error_rate_pct,
        )  # fmt: skip
        request = Request(
            id=new_request_id(), environment=flow.pair, command=SWITCH_COMMAND,
            plan_json=proposal.to_json(), plan_hash=proposal.hash,
            requester_name=flow.requester_name, requester_id=flow.requester_id,
            conversation_id=flow.conversation_id, state="pending", created_at=now,
            expires_at=now + timedelta(minutes=policy.ttl_minutes), version=flow.version,
            current_version=flow.from_version, origin=f"bluegreen:{flow.id}",
            required_approvals=policy.required_count,
        )  # fmt: skip
        await services.store.create_request(request)
        if not await services.store.move_flow(
            flow.id, ["gating"], "switch-pending", switch_request_id=request.id, step=None
        ):
            await services.store.transition_request(request.id, ["pending"], "void")
            return
        await services.audit.append(
            "Requested", environment=flow.pair, request_id=request.id, run_id=flow.id,
            actor=actor_fields(flow.requester_name, flow.requester_id), status="pending",
            detail={"command": SWITCH_COMMAND, "from": flow.from_slot, "to": flow.to_slot,
                    "plan_hash": proposal.hash},
        )  # fmt: skip
        await self._progress(await self._reload(flow), gates=gates)
        if not flow.conversation_id:
            return

        async def remember(activity_id: str) -> None:
            await services.store.set_card_activity(request.id, activity_id)

        card = render_switch_card(
            request, proposal, services.config.tz, now, break_glass=policy.break_glass
        )
        await self._need_outbox().post(
            flow.conversation_id,
            f"{proposal.question} ({request.id}, {flow.id})",
            card,
            on_sent=remember,
        )
        if not policy.required:
            log.warning("pair %s: approval.required = false is not offered for a switch", flow.pair)

    # --- BG-4, BG-5 ------------------------------------------------------------------------

    async def _switch(self, request: Request) -> None:
        services = self._need()
        flow = await services.store.flow_of_request(request.id)
        if flow is None or flow.switch_request_id != request.id:
            log.error("approved switch %s belongs to no flow", request.id)
            return
        if not await services.store.transition_request(request.id, ["approved"], "running"):
            return
        if not await services.store.move_flow(flow.id, ["switch-pending"], "switching"):
            await services.store.transition_request(request.id, ["running"], "failed")
            return
        flow = await self._reload(flow)
        approver = request.approvers or request.decided_by_name or "?"
        self._live[flow.id] = _Live(
            FlowView(flow, gates=_gates_of(flow), switch_approved_by=approver),
            switchback=asyncio.Event(),
        )
        try:
            await self._post_card(flow)
            await self._switch_and_watch(flow, request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            ref = secrets.token_hex(4)
            log.exception("blue/green %s failed [ref %s]", flow.id, ref)
            now_words = await self._router_now(flow)
            note = (
                f"Internal error {type(exc).__name__} (reference {ref}). The router now: "
                f"{now_words}."
            )
            current = await self._reload(flow)
            await services.store.move_flow(flow.id, [current.state], "failed", note=note)
            await services.store.transition_request(request.id, ["running"], "failed")
            await self._end_card(flow, note)
        finally:
            self._forget(flow.id)

    async def _switch_and_watch(self, flow: Flow, request: Request) -> None:
        services = self._need()
        pair = services.config.pairs[flow.pair]
        router = services.routers(pair.router)
        farm = await router.read_farm(timeout_s=pair.router.step_timeout_s)
        view = view_pair(flow.pair, pair, farm)
        plan = plan_switch(view, flow.to_slot)
        why = ""
        if view.live != flow.from_slot:
            # Approved for a router that no longer looks like it did: do not guess.
            why = (
                f"The router no longer shows {flow.from_slot} as the live slot: "
                f"{router_words(pair, view)}. Nothing was switched; check the farm, then ask again."
            )
        elif not isinstance(plan, SwitchPlan):
            why = f"The switch cannot start: {plan.reason}. Nothing was switched."
        if why or not isinstance(plan, SwitchPlan):
            await services.store.move_flow(flow.id, ["switching"], "failed", note=why)
            await services.store.transition_request(request.id, ["running"], "failed")
            await self._end_card(flow, why, live_now=router_words(pair, view))
            return
        await services.audit.append(
            "SwitchStarted", environment=flow.pair, request_id=request.id, run_id=flow.id,
            status="switching",
            detail={"from": flow.from_slot, "to": flow.to_slot,
                    "steps": [s.label for s in plan.steps]},
        )  # fmt: skip
        outcome = await self._apply(flow, router, plan, farm)
        if not outcome.ok:
            stopped = outcome.stopped_at
            why = step_words(stopped) if stopped else "the switch did not finish"
            await services.store.transition_request(request.id, ["running"], "failed")
            await self._back(flow, f"the switch stopped at a step: {why}", auto=True)
            return
        now = services.now()
        await services.store.record_switch(flow.pair, flow.to_slot, now)
        ends = now + timedelta(minutes=pair.watch.window_minutes)
        await services.store.move_flow(
            flow.id, ["switching"], "watching", switched_at=now, watch_ends_at=ends, step=None
        )
        after = outcome.farm or farm
        live_now = router_words(pair, view_pair(flow.pair, pair, after))
        await services.audit.append(
            "Switched", environment=flow.pair, request_id=request.id, run_id=flow.id,
            status="watching", detail={"live": flow.to_slot, "router": live_now},
        )  # fmt: skip
        await services.timeline.append(
            f"bluegreen {flow.pair} {flow.id}: traffic switched {flow.from_slot} → "
            f"{flow.to_slot} ({flow.version}); watching {pair.watch.window_minutes:g} min"
        )
        await self._progress(await self._reload(flow), live_now=live_now)
        verdict = await self._watch(await self._reload(flow), router, after)
        await self._conclude_watch(flow, request, verdict)

    async def _watch(self, flow: Flow, router: TrafficRouter, farm: Farm) -> str | None:
        """Look every interval until the window ends; why it failed, or None if it held.
        A Switch back request during the window ends it too (its reason is returned)."""
        services = self._need()
        pair = services.config.pairs[flow.pair]
        watch = pair.watch
        env = services.config.environments[flow.to_slot]
        targets = router_targets(pair, env)
        servers = pair.servers_of(flow.to_slot)
        ends = time.monotonic() + watch.window_minutes * 60
        event = self._live[flow.id].switchback
        ticks: list[WatchTick] = []
        before = farm
        while True:
            left = ends - time.monotonic()
            if left <= 0:
                return None
            await self._progress(flow, seconds_left=left)
            if event is not None:
                try:
                    await asyncio.wait_for(event.wait(), timeout=min(watch.interval_s, left))
                except TimeoutError:
                    pass
                else:
                    fresh = await self._reload(flow)
                    return f"switch back requested by {fresh.switchback_by or '?'}"
            else:
                await asyncio.sleep(min(watch.interval_s, left))
            results = await services.probe(targets)
            try:
                now_farm = await router.read_farm(timeout_s=pair.router.step_timeout_s)
            except RemoteError as exc:
                tick = tick_from(results, (0, 0), None)
                ticks.append(tick)
                return f"the router could not be read during the watch ({exc})"
            view = view_pair(flow.pair, pair, now_farm)
            total = sum(_delta(before, now_farm, a, "total") for a in servers)
            failed = sum(_delta(before, now_farm, a, "failed") for a in servers)
            tick = tick_from(results, (total, failed), view.live)
            ticks.append(tick)
            before = now_farm
            await self._progress(
                flow,
                seconds_left=ends - time.monotonic(),
                last_look=tick.words(),
                live_now=router_words(pair, view),
            )
            why = judge_watch(ticks, flow.to_slot, watch.max_error_rate_pct)
            if why is not None:
                return why

    async def _conclude_watch(self, flow: Flow, request: Request, verdict: str | None) -> None:
        services = self._need()
        fresh = await self._reload(flow)
        if verdict is None:
            note = (
                f"{flow.to_slot} ({flow.version}) serves users; the watch held for its whole "
                f"window. {flow.from_slot} stays started, out of rotation, as the standby."
            )
            if not await services.store.move_flow(flow.id, ["watching"], "live", note=note):
                return
            await services.store.transition_request(request.id, ["running"], "succeeded")
            await services.audit.append(
                "Deployed", environment=flow.to_slot, request_id=request.id, run_id=flow.id,
                status="live", detail={"bluegreen": flow.id, "pair": flow.pair,
                                        "version": flow.version},
            )  # fmt: skip
            await services.timeline.append(
                f"bluegreen {flow.pair} {flow.id}: {flow.to_slot} {flow.version} live"
            )
            await self._end_card(flow, note)
            return
        manual = fresh.switchback_by is not None and verdict.startswith("switch back requested")
        await services.store.transition_request(
            request.id, ["running"], "succeeded" if manual else "failed"
        )
        await self._back(flow, verdict, auto=not manual)

    async def _manual_switch_back(self, flow_id: str, by: str) -> None:
        services = self._need()
        flow = await services.store.get_flow(flow_id)
        if flow is None:
            return
        self._live[flow.id] = _Live(self._view(flow))
        try:
            await self._post_card(flow)
            await self._back(flow, f"switch back requested by {by}", auto=False)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            ref = secrets.token_hex(4)
            log.exception("switch back of %s failed [ref %s]", flow_id, ref)
            note = f"Internal error {type(exc).__name__} (reference {ref}) while switching back."
            await services.store.move_flow(flow.id, ["switching-back"], "failed", note=note)
            await self._end_card(flow, note, live_now=await self._router_now(flow))
        finally:
            self._forget(flow.id)

    async def _back(self, flow: Flow, reason: str, *, auto: bool) -> None:
        """BG-5: the plan back to the old slot, from the farm as it reads now."""
        services = self._need()
        pair = services.config.pairs[flow.pair]
        current = await self._reload(flow)
        if current.state != "switching-back":
            await services.store.move_flow(flow.id, [current.state], "switching-back")
        await self._progress(await self._reload(flow), step="switching back")
        router = services.routers(pair.router)
        back_ok = False
        detail = ""
        try:
            farm = await router.read_farm(timeout_s=pair.router.step_timeout_s)
            plan = plan_switch(view_pair(flow.pair, pair, farm), flow.from_slot)
            if isinstance(plan, SwitchPlan):
                outcome = await self._apply(flow, router, plan, farm)
                back_ok = outcome.ok
                if not outcome.ok and outcome.stopped_at is not None:
                    detail = step_words(outcome.stopped_at)
            else:
                detail = plan.reason
        except RemoteError as exc:
            detail = f"the router could not be read: {exc}"
        view_now = await self._router_view(flow)
        live_now = router_words(pair, view_now) if view_now else "the router could not be read"
        back = view_now is not None and view_now.live == flow.from_slot and view_now.clean
        if back:
            await services.store.record_switch(flow.pair, flow.from_slot, services.now())
        how = "automatically" if auto else "as requested"
        if back:
            note = (
                f"Switched back {how}: {reason}. {flow.from_slot} ({flow.from_version or '?'}) "
                f"serves users again; {flow.to_slot} keeps {flow.version}, out of rotation. "
                f"Router now: {live_now}."
            )
        else:
            note = (
                f"Switching back ({reason}) did NOT complete"
                + (f": {detail}" if detail else "")
                + f". Router now: {live_now}. Put the farm right by hand (IIS Manager → Server "
                f"Farms → {pair.router.farm}), then check `status`"
                + ("." if not auto and flow.switchback_by else f", or `switchback {flow.pair}`.")
            )
        final = "switched-back" if back else "failed"
        await services.store.move_flow(flow.id, ["switching-back"], final, note=note, step=None)
        await services.audit.append(
            "RolledBack" if back else "Failed",
            environment=flow.pair, run_id=flow.id, request_id=flow.switch_request_id,
            status=final,
            detail={"reason": reason, "automatic": auto, "router": live_now,
                    "back_ok": back_ok, "detail": detail},
        )  # fmt: skip
        await services.timeline.append(f"bluegreen {flow.pair} {flow.id}: {note}")
        await self._end_card(flow, note, live_now=live_now)
        if (auto or not back) and self._alarm is not None:
            try:
                await self._alarm.switched_back(await self._reload(flow), reason, live_now, back)
            except Exception:
                log.exception("could not raise the alert of %s", flow.id)

    # --- helpers ---------------------------------------------------------------------------

    async def _stop(self, flow: Flow, note: str) -> None:
        services = self._need()
        current = await self._reload(flow)
        if not await services.store.move_flow(flow.id, [current.state], "stopped", note=note):
            return
        await services.audit.append(
            "BlueGreenStopped", environment=flow.pair, run_id=flow.id, status="stopped",
            detail={"note": note},
        )  # fmt: skip
        await services.timeline.append(f"bluegreen {flow.pair} {flow.id} stopped: {note}")
        await self._end_card(flow, note, live_now=await self._router_now(flow))

    async def _end_card(self, flow: Flow, note: str, live_now: str | None = None) -> None:
        fresh = await self._reload(flow)
        live = self._live.get(flow.id)
        view = replace(live.view, flow=fresh) if live else self._view(fresh)
        view = replace(
            view,
            seconds_left=None,
            live_now=live_now or view.live_now,
            switchback_open=_switchback_open(fresh),
        )
        if live:
            live.view = view
        await self._show(fresh, view, final=True)
        await self._update_switch_card(fresh)
        await self._say(fresh, f"{flow.id} ({flow.pair} → {flow.version}): {note}")

    async def _update_switch_card(self, flow: Flow) -> None:
        """Card #2 shows how its switch ended (its banner carries the request's state)."""
        services = self._need()
        if not flow.switch_request_id:
            return
        request = await services.store.get_request(flow.switch_request_id)
        if request is None or not request.conversation_id or not request.card_activity_id:
            return
        proposal = SwitchProposal.from_json(request.plan_json)
        card = render_switch_card(request, proposal, services.config.tz, services.now())
        try:
            await self._need_outbox().update(
                request.conversation_id, request.card_activity_id,
                f"{request.id}: {request.state}", card, final=True,
            )  # fmt: skip
        except Exception:
            log.exception("could not queue card #2 of %s", flow.id)

    async def _apply(
        self, flow: Flow, router: TrafficRouter, plan: SwitchPlan, farm: Farm
    ) -> SwitchOutcome:
        """Run a switch plan with the pair's deadlines, each step audited and on the card."""
        settings = self._need().config.pairs[flow.pair].router
        return await run_switch(
            router, plan, farm,
            drain_deadline_s=settings.drain_deadline_s,
            step_timeout_s=settings.step_timeout_s,
            on_step=self._step_recorder(flow),
        )  # fmt: skip

    def _step_recorder(self, flow: Flow) -> Callable[[StepOutcome], Awaitable[None]]:
        async def record(outcome: StepOutcome) -> None:
            services = self._need()
            await services.store.set_flow(flow.id, step=outcome.step.label)
            await services.audit.append(
                "RouterStep", environment=flow.pair, run_id=flow.id,
                step=outcome.step.kind, status="passed" if outcome.ok else "failed",
                detail={"step": outcome.step.label, "problems": list(outcome.problems)},
            )  # fmt: skip
            live = self._live.get(flow.id)
            steps = (*live.view.steps, step_words(outcome)) if live else (step_words(outcome),)
            await self._progress(flow, steps=steps)

        return record

    async def _progress(self, flow: Flow, *, step: str | None = None, **extras: Any) -> None:
        """Edit the flow card with the newest state (coalesced by the outbox)."""
        if step is not None:
            await self._need().store.set_flow(flow.id, step=step)
        fresh = await self._reload(flow)
        live = self._live.get(flow.id)
        if live is None:
            return
        live.view = replace(
            live.view, flow=fresh, switchback_open=_switchback_open(fresh), **extras
        )
        await self._show(fresh, live.view, final=False)

    async def _post_card(self, flow: Flow) -> None:
        """Post the flow card once; later stages edit the same message."""
        services, outbox = self._need(), self._need_outbox()
        live = self._live.get(flow.id)
        if live is None or not flow.conversation_id:
            return
        if flow.card_activity_id:
            live.card = flow.card_activity_id
            live.view = replace(live.view, flow=flow, switchback_open=_switchback_open(flow))
            await self._show(flow, live.view, final=False)
            return

        async def remember(activity_id: str) -> None:
            await services.store.set_flow(flow.id, card_activity_id=activity_id)

        live.view = replace(live.view, flow=flow, switchback_open=_switchback_open(flow))
        live.card = await outbox.post(
            flow.conversation_id,
            f"{flow.id}: {flow.state}",
            render_flow_card(live.view, services.config.tz),
            on_sent=remember,
        )

    async def _show(self, flow: Flow, view: FlowView, *, final: bool) -> None:
        services, outbox = self._need(), self._need_outbox()
        if not flow.conversation_id:
            return
        live = self._live.get(flow.id)
        handle = (live.card if live else None) or flow.card_activity_id
        card = render_flow_card(view, services.config.tz)
        try:
            if handle is None:
                await outbox.post(flow.conversation_id, f"{flow.id}: {flow.state}", card)
            else:
                await outbox.update(
                    flow.conversation_id, handle, f"{flow.id}: {flow.state}", card, final=final
                )
        except Exception:
            log.exception("could not queue the card of %s", flow.id)

    async def _say(self, flow: Flow, text: str) -> None:
        if not flow.conversation_id:
            return
        try:
            await self._need_outbox().post(flow.conversation_id, text, None)
        except Exception:
            log.exception("could not queue a message of %s", flow.id)

    def _view(self, flow: Flow) -> FlowView:
        return FlowView(flow, gates=_gates_of(flow), switchback_open=_switchback_open(flow))

    async def _router_view(self, flow: Flow) -> PairView | None:
        services = self._need()
        pair = services.config.pairs.get(flow.pair)
        if pair is None:
            return None
        try:
            farm = await services.routers(pair.router).read_farm(
                timeout_s=pair.router.step_timeout_s
            )
        except RemoteError:
            return None
        return view_pair(flow.pair, pair, farm)

    async def _router_now(self, flow: Flow) -> str:
        view = await self._router_view(flow)
        pair = self._need().config.pairs.get(flow.pair)
        if view is None or pair is None:
            return "the router could not be read"
        return router_words(pair, view)

    async def _reload(self, flow: Flow) -> Flow:
        return await self._need().store.get_flow(flow.id) or flow

    def _forget(self, flow_id: str) -> None:
        self._live.pop(flow_id, None)

    def _spawn(self, work: Awaitable[None], name: str) -> bool:
        if not self._accepting or self._services is None:
            if asyncio.iscoroutine(work):
                work.close()
            return False

        async def guarded() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("blue/green task %s failed", name)

        task = asyncio.create_task(guarded(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    def _need(self) -> Services:
        if self._services is None:
            raise RuntimeError("BlueGreenFlows used before connect()")
        return self._services

    def _need_outbox(self) -> FlowOutbox:
        if self._outbox is None:
            raise RuntimeError("BlueGreenFlows used before connect()")
        return self._outbox


def _gate_line(result: DrResult) -> GateLine:
    parts = [p for p in (result.counts, result.why, result.note) if p]
    if result.findings and not parts:
        parts.append(result.findings[0].severity)
    return GateLine(result.test.id, result.outcome, " — ".join(parts))


def _gates_of(flow: Flow) -> tuple[GateLine, ...]:
    if not flow.gates_json:
        return ()
    return tuple(GateLine(**g) for g in json.loads(flow.gates_json))


def _switchback_open(flow: Flow) -> bool:
    """The Switch back button is offered while it could be accepted (the click checks again)."""
    return flow.switchback_by is None and flow.state in ("watching", "live", "interrupted")


def _delta(before: Farm, after: Farm, address: str, what: str) -> int:
    now, then = after.server(address), before.server(address)
    if now is None:
        return 0
    value = now.total_requests if what == "total" else now.failed_requests
    if then is None:
        return value
    old = then.total_requests if what == "total" else then.failed_requests
    return value - old if value >= old else value
