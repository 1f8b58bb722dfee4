"""One operation on every host of a step at once, each host with its own deadline.

Farms grow: a step that went host after host took (hosts × seconds) on real IIS. Here
every host starts together and gets the step's whole deadline for itself, so one slow host
delays only its own answer, never another host's. Expected failures (a host that says no,
one that does not answer in time) are values; a bug is raised once every host is done, so
no host is left with an operation nobody waits for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from adapters.errors import RemoteError
from commands.config import Host

T = TypeVar("T")


class StepError(Exception):
    """A step could not do its job; the message says what happened and what to check."""


@dataclass(frozen=True)
class HostResult(Generic[T]):
    """One host's answer: `value`, or `error` in words."""

    host: str
    value: T | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


async def on_hosts(
    hosts: Sequence[Host], deadline_s: float, act: Callable[[Host], Awaitable[T]]
) -> list[HostResult[T]]:
    """Run `act` on every host concurrently, each under `deadline_s`; results in host order."""

    async def one(host: Host) -> HostResult[T]:
        try:
            async with asyncio.timeout(deadline_s):
                return HostResult(host.name, await act(host))
        except TimeoutError:
            return HostResult(
                host.name,
                error=f"did not finish within its deadline ({deadline_s:g} s); the host may "
                "still be working on it",
            )
        except (StepError, RemoteError) as exc:
            return HostResult(host.name, error=str(exc))

    outcomes = await asyncio.gather(*(one(h) for h in hosts), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return [o for o in outcomes if isinstance(o, HostResult)]


def verdict(results: Sequence[HostResult[T]], words: Callable[[T], str]) -> str:
    """The step's detail when every host succeeded; else StepError naming every host."""
    failed = [r for r in results if not r.ok]
    if failed:
        lines = [f"{r.host}: {r.error}" for r in failed]
        done = [r.host for r in results if r.ok]
        tail = f" (done on {', '.join(done)})" if done else ""
        raise StepError("; ".join(lines) + tail)
    return "; ".join(f"{r.host}: {words(r.value)}" for r in results if r.value is not None)
