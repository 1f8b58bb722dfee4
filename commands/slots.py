"""Blue/green decisions, pure: which slot is live, whether a switch may start, what it does.

Everything here reads a `Farm` as the router reported it and the pair's configuration; no
I/O. The live slot is what the router says, never what the bot remembers:

- `view_pair`: the live slot (the one whose servers are all online while the other slot
  takes no traffic), the standby, and every way the farm differs from a clean blue/green
  state, in words an operator can act on.
- `plan_switch`: the steps that move traffic to a slot — bring its servers online, drain
  the others, wait for them, take them offline — or why not.
- `expect_after` / `check_readback`: what the farm must look like after one step, and how
  the farm read back differs from it (a change behind the bot's back shows up here).
- `error_rate`: the share of failed requests between two reads of the counters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from adapters.router.farm import Farm, FarmServer, ServerMode, ServerState
from commands.config import Pair

SlotMode = Literal["online", "drain", "offline", "mixed", "missing"]
StepKind = Literal["online", "drain", "wait", "offline"]


@dataclass(frozen=True)
class SlotView:
    """One slot as the farm shows it: its servers found there, and those it lacks."""

    slot: str
    servers: tuple[FarmServer, ...]
    missing: tuple[str, ...]  # configured addresses the farm does not have

    @property
    def mode(self) -> SlotMode:
        if self.missing:
            return "missing"
        modes = {s.mode for s in self.servers}
        return modes.pop() if len(modes) == 1 else "mixed"

    @property
    def takes_traffic(self) -> bool:
        return any(s.mode == "online" for s in self.servers)

    @property
    def in_flight(self) -> int:
        return sum(s.current_requests for s in self.servers)


@dataclass(frozen=True)
class PairView:
    """A pair as its router reports it; `live` is None whenever it is not one clear slot."""

    pair: str
    farm: Farm
    slots: tuple[SlotView, SlotView]
    live: str | None
    problems: tuple[str, ...]

    @property
    def standby(self) -> str | None:
        if self.live is None:
            return None
        return next(v.slot for v in self.slots if v.slot != self.live)

    @property
    def clean(self) -> bool:
        """One slot online, the other offline for good, nothing in between."""
        return self.live is not None and not self.problems

    def slot(self, name: str) -> SlotView:
        return next(v for v in self.slots if v.slot == name)


def view_pair(name: str, pair: Pair, farm: Farm) -> PairView:
    """Read the live slot and every irregularity off the farm (module docstring)."""
    views = tuple(_slot_view(farm, slot, pair.servers_of(slot)) for slot in pair.slots)
    first, second = views
    online = [v for v in views if v.mode == "online"]
    traffic = [v for v in views if v.takes_traffic]
    live = online[0].slot if len(online) == 1 and len(traffic) == 1 else None
    claimed = {a.casefold() for slot in pair.slots for a in pair.servers_of(slot)}
    strangers = [s for s in farm.servers if s.address.casefold() not in claimed]
    problems: list[str] = []
    for view in views:
        problems += [
            f"server {a} of {view.slot} is not in farm {farm.name} on {farm.router}: fix "
            "router.servers in the bot's configuration or the farm"
            for a in view.missing
        ]
    if len(traffic) == 2:
        problems.append(
            f"both {first.slot} and {second.slot} are online: users get either slot's version"
        )
    elif not traffic:
        problems.append(
            f"no slot is online: the router answers users with 503 (neither {first.slot} nor "
            f"{second.slot} takes traffic)"
        )
    for view in views:
        if view.mode == "mixed":
            parts = ", ".join(f"{s.address} {s.mode}" for s in view.servers)
            problems.append(f"{view.slot} is half in rotation ({parts})")
    for server in farm.servers:
        if server.mode == "drain":
            problems.append(
                f"{server.address} is draining ({server.current_requests} request(s) in flight): "
                "a switch was interrupted, or someone drains it by hand"
            )
        if not server.durable:
            problems.append(
                f"{server.address} is out of rotation at runtime only (still enabled in the "
                "router's configuration): an IIS restart on the router puts it back"
            )
        if server.mode == "online" and not server.healthy:
            problems.append(f"{server.address} is online but ARR marks it unhealthy")
    problems += [
        f"server {s.address} of farm {farm.name} belongs to no slot and is {s.mode}"
        for s in strangers
        if s.mode != "offline"
    ]
    return PairView(name, farm, (first, second), live, tuple(problems))


def _slot_view(farm: Farm, slot: str, addresses: Sequence[str]) -> SlotView:
    found = [(a, farm.server(a)) for a in addresses]
    return SlotView(
        slot=slot,
        servers=tuple(s for _, s in found if s is not None),
        missing=tuple(a for a, s in found if s is None),
    )


@dataclass(frozen=True)
class SwitchStep:
    """One router change (or the wait for a drain) on one server of one slot."""

    kind: StepKind
    address: str
    slot: str

    @property
    def label(self) -> str:
        what = {
            "online": "bring {a} ({s}) online",
            "drain": "drain {a} ({s}): no new requests",
            "wait": "wait until {a} ({s}) has no request in flight",
            "offline": "take {a} ({s}) offline",
        }[self.kind]
        return what.format(a=self.address, s=self.slot)


@dataclass(frozen=True)
class SwitchPlan:
    """Traffic from `from_slot` to `to_slot`: target online first, never a moment with none."""

    pair: str
    from_slot: str
    to_slot: str
    steps: tuple[SwitchStep, ...]


@dataclass(frozen=True)
class Refusal:
    """Why a switch must not start; nothing was changed."""

    reason: str


def plan_switch(view: PairView, to_slot: str) -> SwitchPlan | Refusal:
    """The steps that leave `to_slot` alone online, or why they must not run.

    Also the way out of a half-done switch (both slots online, one draining): the plan
    only contains the steps still needed. Refused: a target the farm lacks or marks
    unhealthy, a configured server missing from the farm, a server of no slot taking
    traffic, and a target that is already the clean live slot.
    """
    if to_slot not in (v.slot for v in view.slots):
        slots = " or ".join(v.slot for v in view.slots)
        return Refusal(f"{to_slot} is not a slot of pair {view.pair} ({slots})")
    target = view.slot(to_slot)
    source = next(v for v in view.slots if v.slot != to_slot)
    farm = view.farm
    missing = [*target.missing, *source.missing]
    if missing:
        return Refusal(
            f"the farm {farm.name} on {farm.router} has no server {', '.join(missing)}: the "
            "bot's configuration and the router disagree. Fix one of them first"
        )
    sick = [s.address for s in target.servers if not s.healthy]
    if sick:
        return Refusal(
            f"ARR marks {', '.join(sick)} of {to_slot} unhealthy: traffic would not reach it. "
            "Check the servers' health test in IIS Manager first"
        )
    claimed = {s.address.casefold() for v in view.slots for s in v.servers}
    strangers = [
        s.address
        for s in farm.servers
        if s.address.casefold() not in claimed and s.mode != "offline"
    ]
    if strangers:
        return Refusal(
            f"server(s) {', '.join(strangers)} of farm {farm.name} belong to no slot and take "
            "traffic: take them offline in IIS Manager or add them to router.servers first"
        )
    if view.clean and view.live == to_slot:
        return Refusal(f"{to_slot} is already the live slot of {view.pair}; nothing to switch")
    steps = [SwitchStep("online", s.address, to_slot) for s in target.servers if s.mode != "online"]
    steps += [
        SwitchStep("drain", s.address, source.slot) for s in source.servers if s.mode == "online"
    ]
    steps += [
        SwitchStep("wait", s.address, source.slot)
        for s in source.servers
        if s.mode in ("online", "drain")
    ]
    steps += [
        SwitchStep("offline", s.address, source.slot)
        for s in source.servers
        if s.mode != "offline" or not s.durable
    ]
    return SwitchPlan(view.pair, source.slot, to_slot, tuple(steps))


_AFTER: dict[ServerMode, tuple[bool | None, ServerState]] = {
    "online": (True, "Available"),
    "drain": (None, "Drain"),  # the configuration is not touched
    "offline": (False, "Unavailable"),
}


def expect_after(farm: Farm, step: SwitchStep) -> Farm:
    """The farm as it must read after `step` (a wait changes nothing); counters aside."""
    if step.kind == "wait":
        return farm
    enabled, state = _AFTER[step.kind]
    target = step.address.casefold()
    servers = tuple(
        replace(s, enabled=s.enabled if enabled is None else enabled, state=state)
        if s.address.casefold() == target
        else s
        for s in farm.servers
    )
    return replace(farm, servers=servers)


def check_readback(expected: Farm, actual: Farm) -> tuple[str, ...]:
    """How the farm read back differs from the expected one (enabled and state only)."""
    problems: list[str] = []
    for want in expected.servers:
        got = actual.server(want.address)
        if got is None:
            problems.append(f"{want.address} is no longer in farm {actual.name}")
        elif (got.enabled, got.state) != (want.enabled, want.state):
            problems.append(f"{want.address} reads {_describe(got)}, expected {_describe(want)}")
    problems += [
        f"{s.address} appeared in farm {actual.name} ({_describe(s)})"
        for s in actual.servers
        if expected.server(s.address) is None
    ]
    return tuple(problems)


def _describe(server: FarmServer) -> str:
    configured = "enabled" if server.enabled else "disabled"
    return f"{server.mode} ({configured}, {server.state})"


def error_rate(before: Farm, after: Farm, addresses: Sequence[str]) -> float | None:
    """Failed / total requests of `addresses` between two reads; None when none were made.

    A counter lower than before means the router restarted in between: its value then
    counts from zero.
    """
    failed = total = 0
    for address in addresses:
        now, then = after.server(address), before.server(address)
        if now is None:
            continue
        reset = (
            then is None
            or now.total_requests < then.total_requests
            or now.failed_requests < then.failed_requests
        )
        base_total = 0 if reset or then is None else then.total_requests
        base_failed = 0 if reset or then is None else then.failed_requests
        total += now.total_requests - base_total
        failed += now.failed_requests - base_failed
    return failed / total if total else None
