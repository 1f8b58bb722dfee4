"""Blue/green decisions without I/O: what approval card #2 binds to, who approves for a
pair, how one watch tick is judged, and the smoke checks that go through the router.

Card #2 is an ordinary request of the store (so every approval rule, expiry and repeated
click behaves as on a rollback's card); its "plan" is a `SwitchProposal`, hashed the same
way a plan is, so a card whose data differs from the stored proposal is refused.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import asdict, dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from adapters.smoke import CheckResult, SmokeTarget
from commands.config import Config, Environment, Pair

# The request command of approval card #2; its `environment` is the pair's name.
SWITCH_COMMAND: Final = "switch"
# A Switch back button's verb (the flow card), handled apart from approve/reject.
SWITCHBACK_VERB: Final = "switchback"


def new_flow_id() -> str:
    return "BG-" + secrets.token_hex(4)


@dataclass(frozen=True)
class GateLine:
    """One gate's verdict as card #2 and the audit show it."""

    test: str  # DR-SMOKE, DR-AXE...
    outcome: str  # passed | failed | cancelled | not-run
    summary: str = ""


@dataclass(frozen=True)
class SwitchProposal:
    """What approval card #2 asks: move production traffic from one slot to the other."""

    flow_id: str
    pair: str
    from_slot: str
    from_version: str
    to_slot: str
    to_version: str
    gates: tuple[GateLine, ...]
    deploy_request_id: str
    deploy_approved_by: str
    router: str  # "arr-front01 (farm MCMS)"
    drain_deadline_s: float
    watch_minutes: float
    max_error_rate_pct: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @staticmethod
    def from_json(text: str) -> SwitchProposal:
        data: dict[str, Any] = json.loads(text)
        data["gates"] = tuple(GateLine(**g) for g in data["gates"])
        return SwitchProposal(**data)

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @property
    def question(self) -> str:
        return (
            f"Switch production traffic from {self.from_slot} ({self.from_version}) to "
            f"{self.to_slot} ({self.to_version})?"
        )

    @property
    def impact(self) -> str:
        return (
            f"New requests go to {self.to_slot} at once; requests already running on "
            f"{self.from_slot} finish there (drain, up to {self.drain_deadline_s:g} s), then "
            f"{self.from_slot} leaves the farm but stays started, as standby. No user request "
            f"should fail. For {self.watch_minutes:g} min the bot watches smoke through the "
            f"router and {self.to_slot}'s error rate (above {self.max_error_rate_pct:g} % "
            f"switches back automatically)."
        )


def pair_of(config: Config, environment: str) -> str | None:
    """The pair `environment` is a slot of, if any."""
    return next((n for n, p in config.pairs.items() if environment in p.slots), None)


def is_pair_approver_by_role(config: Config, aad_object_id: str | None, pair: str) -> bool:
    """An approver of the pair by name, or of both its slots: a switch changes both."""
    slots = config.pairs[pair].slots
    return config.has_role(aad_object_id, "approver", pair) or all(
        config.has_role(aad_object_id, "approver", slot) for slot in slots
    )


def router_targets(pair: Pair, env: Environment) -> list[SmokeTarget]:
    """The slot's smoke checks, sent to the router's public URL instead of the slot's hosts
    (path and query kept): what users reach."""
    base = str(pair.router.public_url).rstrip("/")
    targets = []
    for check in env.smoke:
        parts = urlsplit(str(check.url))
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        targets.append(SmokeTarget(check.name, base + path, tuple(check.expect), check.timeout_s))
    return targets


@dataclass(frozen=True)
class WatchTick:
    """One look during the watch window."""

    smoke_passed: int
    smoke_total: int
    failing_checks: tuple[str, ...]
    requests: int  # through the live slot's servers since the last look
    failed: int
    live: str | None  # the live slot as the router reports it now

    @property
    def smoke_ok(self) -> bool:
        return self.smoke_passed == self.smoke_total

    @property
    def error_rate_pct(self) -> float | None:
        return None if not self.requests else 100.0 * self.failed / self.requests

    def words(self) -> str:
        smoke = f"smoke {self.smoke_passed}/{self.smoke_total}"
        if self.failing_checks:
            smoke += f" (failing: {', '.join(self.failing_checks)})"
        rate = self.error_rate_pct
        errors = (
            "no requests" if rate is None else f"{rate:.1f} % failed of {self.requests} requests"
        )
        return f"{smoke}; {errors}"


def tick_from(results: list[CheckResult], rate: tuple[int, int], live: str | None) -> WatchTick:
    failing = tuple(r.name for r in results if not r.passed)
    return WatchTick(
        smoke_passed=len(results) - len(failing),
        smoke_total=len(results),
        failing_checks=failing,
        requests=rate[0],
        failed=rate[1],
        live=live,
    )


# Smoke failing this many looks in a row fails the watch (one blip does not), as the
# watcher's alerts count; an error rate over the limit fails it at once.
SMOKE_FAILURES_TO_FAIL: Final = 2


def judge_watch(ticks: list[WatchTick], to_slot: str, max_error_rate_pct: float) -> str | None:
    """Why the watch fails after these looks (newest last), or None while it holds."""
    if not ticks:
        return None
    last = ticks[-1]
    if last.live != to_slot:
        return (
            f"the router no longer shows {to_slot} as the live slot "
            f"({last.live or 'no clear live slot'}): the farm was changed behind the bot"
        )
    rate = last.error_rate_pct
    if rate is not None and rate > max_error_rate_pct:
        return (
            f"{to_slot} failed {last.failed} of {last.requests} requests ({rate:.1f} % > "
            f"{max_error_rate_pct:g} %)"
        )
    recent = ticks[-SMOKE_FAILURES_TO_FAIL:]
    if len(recent) == SMOKE_FAILURES_TO_FAIL and not any(t.smoke_ok for t in recent):
        return (
            f"smoke through the router failed {SMOKE_FAILURES_TO_FAIL} times in a row "
            f"({last.words()})"
        )
    return None
