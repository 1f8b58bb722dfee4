"""The config of a slot pair: two environments taking turns at production traffic (blue/green).

    [pairs.prod]
    slots = ["InternalProd", "InternalStage"]
    [pairs.prod.router]                  # IIS ARR on a front host, reached over WinRM
    farm = "MCMS"
    public_url = "https://mcms.example.com"
    servers = { InternalProd = ["prod-web01"], InternalStage = ["stage-web01"] }
    host = { name = "arr-front01", winrm_url = "https://arr-front01:5986/wsman", ... }
    [pairs.prod.watch]                   # BG-4: how long and how often to watch after a switch
    window_minutes = 5

Which slot is live is never configured: the bot reads it from the router every time.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Final, Literal

from pydantic import AnyHttpUrl, Field, field_validator, model_validator

from commands.config.base import ENV_NAME_PATTERN, _check_name, _Strict
from commands.config.environment import Approval, Environment, Host

# How ARR addresses a farm server: a host name, an FQDN or an IPv4 address (ASCII only; the
# value reaches the router's scripts). Duplicated in adapters/winrm/scripts.py on purpose.
ADDRESS_PATTERN: Final = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9][A-Za-z0-9-]{0,62})*$"
)


class PairRouter(_Strict):
    """The traffic router in front of a pair: an IIS ARR web farm on a front host."""

    kind: Literal["arr"] = "arr"
    host: Host
    farm: str
    # slot (environment name) → the addresses of that slot's servers in the farm
    servers: dict[str, list[str]]
    # What users reach the pair at; smoke through the router goes here.
    public_url: AnyHttpUrl
    # How long a draining slot may keep requests in flight before it is taken offline anyway.
    drain_deadline_s: float = Field(default=60, ge=1, le=3600)
    # Deadline of one read or change on the router (WinRM round trip included).
    step_timeout_s: float = Field(default=30, ge=5, le=600)

    @field_validator("farm")
    @classmethod
    def _farm(cls, v: str) -> str:
        return _check_name(v, "web farm name")

    @field_validator("servers", mode="before")
    @classmethod
    def _one_or_more(cls, v: object) -> object:
        # `InternalProd = "prod-web01"` is the common case of a one-server slot.
        if isinstance(v, dict):
            return {k: [s] if isinstance(s, str) else s for k, s in v.items()}
        return v

    @field_validator("servers")
    @classmethod
    def _addresses(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        seen: dict[str, str] = {}
        for slot, addresses in v.items():
            if not addresses:
                raise ValueError(f"slot {slot!r} has no server address")
            for address in addresses:
                if not ADDRESS_PATTERN.fullmatch(address):
                    raise ValueError(
                        f"{address!r} (slot {slot!r}) is not a host name, FQDN or IPv4 address"
                    )
                other = seen.setdefault(address.casefold(), slot)
                if other != slot or addresses.count(address) > 1:
                    raise ValueError(f"server {address!r} is listed twice (slot {other!r})")
        return v


class PairWatch(_Strict):
    """BG-4: after a switch, smoke through the public URL and the live slot's error rate."""

    # Fractions of a minute are allowed for drills and tests (0.05 = 3 s); production
    # keeps the playbook's 5 minutes.
    window_minutes: float = Field(default=5, ge=0.05, le=120)
    interval_s: float = Field(default=15, ge=0.5, le=600)
    # The live slot's failed requests (router counters) over the window, in percent, above
    # which the watch fails and traffic goes back.
    max_error_rate_pct: float = Field(default=1.0, ge=0, le=100)

    @model_validator(mode="after")
    def _interval_fits(self) -> PairWatch:
        if self.interval_s > self.window_minutes * 60:
            raise ValueError(
                f"interval_s ({self.interval_s:g}) is longer than the window "
                f"({self.window_minutes:g} min): the watch would never look"
            )
        return self


class Pair(_Strict):
    description: str = ""
    slots: list[str]
    router: PairRouter
    watch: PairWatch = PairWatch()
    # BG-2: the DR tests run on the idle slot after its smoke, before approval card #2
    # (their runners are configured per environment, [environments.NAME.dr.*]).
    gates: list[Literal["axe", "e2e", "zap"]] = Field(default_factory=list, max_length=3)
    # Who may approve a switch (and the Switch back button) for this pair.
    approval: Approval = Approval()

    @field_validator("slots")
    @classmethod
    def _two(cls, v: list[str]) -> list[str]:
        if len(v) != 2 or v[0].casefold() == v[1].casefold():
            raise ValueError(
                'a pair has exactly two different slots, e.g. ["InternalProd", "InternalStage"]'
            )
        return v

    @field_validator("gates")
    @classmethod
    def _once_each(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("a gate is listed twice")
        return v

    def servers_of(self, slot: str) -> tuple[str, ...]:
        """The farm's server addresses of one slot (environment name as in `slots`)."""
        return tuple(self.router.servers[slot])

    def other_slot(self, slot: str) -> str:
        return self.slots[1] if slot == self.slots[0] else self.slots[0]


def pair_problems(pairs: Mapping[str, Pair], environments: Mapping[str, Environment]) -> list[str]:
    """What a pair says that the rest of the file contradicts, as "key: why" lines."""
    problems: list[str] = []
    known = ", ".join(environments)
    env_names = {e.casefold() for e in environments}
    slot_of: dict[str, str] = {}
    seen: dict[str, str] = {}
    for name, pair in pairs.items():
        key = f"pairs.{name}"
        if not ENV_NAME_PATTERN.fullmatch(name):
            problems.append(f"{key}: pair name {name!r} must be a letter then letters/digits")
        elif name.casefold() in env_names:
            problems.append(
                f"{key}: {name!r} is also an environment name; commands could not tell them apart"
            )
        elif seen.setdefault(name.casefold(), name) != name:
            problems.append(f"{key}: pairs {seen[name.casefold()]!r} and {name!r} differ in case")
        for i, slot in enumerate(pair.slots):
            if slot not in environments:
                close = difflib.get_close_matches(slot, list(environments), n=1, cutoff=0.75)
                why = f"did you mean {close[0]!r}?" if close else f"known: {known}"
                problems.append(f"{key}.slots[{i}]: unknown environment {slot!r} ({why})")
            elif slot_of.setdefault(slot, name) != name:
                problems.append(
                    f"{key}.slots[{i}]: {slot} is already a slot of pair {slot_of[slot]!r}; "
                    "an environment takes turns with one other at most"
                )
        for gate in pair.gates:
            lacking = [
                s
                for s in pair.slots
                if s in environments and not _has_runner(environments[s], gate)
            ]
            if lacking:
                problems.append(
                    f"{key}.gates: {gate!r} has no runner on {', '.join(lacking)} (add "
                    f"[environments.{lacking[0]}.dr.{gate}]): either slot may be the idle one"
                )
        for slot in pair.slots:
            if slot not in pair.router.servers:
                problems.append(
                    f"{key}.router.servers: no entry for slot {slot!r} (its servers' "
                    "addresses in the farm)"
                )
        for slot in pair.router.servers:
            if slot not in pair.slots:
                problems.append(
                    f"{key}.router.servers.{slot}: not a slot of this pair "
                    f"({', '.join(pair.slots)})"
                )
    return problems


def _has_runner(env: Environment, test: str) -> bool:
    return env.dr is not None and env.dr.runner(test) is not None
