"""adapters.winrm.hostops over real WinRM against the lab: each operation changes the host.

The reply parsing of the deploy operations also runs against an in-memory twin shell,
for the reply shapes PowerShell 5.1 produces and the lab never does.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import pytest

from adapters.errors import BadReply, RemoteScriptFailed, StateNotReached
from adapters.winrm.hostops import HostOps, HostState, version_key
from adapters.winrm.scripts import JsonValue
from adapters.winrm.transport import WinRMShell
from lab.core import Lab

pytest_plugins = ["tests.lab_fixtures"]
ShellFactory = Callable[..., WinRMShell]  # the lab_shell fixture

ROOT = "D:\\MCMS\\releases"


async def read(ops: HostOps) -> HostState:
    return await ops.read_state("MCMS", "MCMS", "MCMS.Worker", ROOT, timeout_s=5)


async def test_read_state_reports_states_physical_path_and_kept_releases(
    lab_ops: HostOps, lab_host: str
) -> None:
    state = await read(lab_ops)

    assert state == HostState(
        host=lab_host,
        site_state="Started",
        pool_state="Started",
        service_state="Running",
        physical_path="D:\\MCMS\\releases\\1.4.2",
        releases=("1.4.0", "1.4.1", "1.4.2"),
    )
    assert state.current_release == "1.4.2"
    assert state.serving


async def test_read_state_reports_missing_components_as_missing(lab_ops: HostOps) -> None:
    state = await lab_ops.read_state("Other", "Other", "Other.Svc", "D:\\Nowhere", timeout_s=5)

    assert (state.site_state, state.pool_state, state.service_state) == ("Missing",) * 3
    assert state.physical_path is None and state.releases == () and state.current_release is None


Op = Callable[[HostOps], Awaitable[str]]
STOPS: list[tuple[str, Op, str, tuple[str, ...], str]] = [
    ("stop_site", lambda o: o.stop_site("MCMS", timeout_s=5),
     "site_state", ("sites", "MCMS", "state"), "Stopped"),
    ("stop_pool", lambda o: o.stop_pool("MCMS", timeout_s=5),
     "pool_state", ("app_pools", "MCMS", "state"), "Stopped"),
    ("stop_service", lambda o: o.stop_service("MCMS.Worker", timeout_s=5),
     "service_state", ("services", "MCMS.Worker"), "Stopped"),
]  # fmt: skip
STARTS: list[tuple[str, Op, Op, str, str]] = [
    ("start_site", lambda o: o.stop_site("MCMS", timeout_s=5),
     lambda o: o.start_site("MCMS", timeout_s=5), "site_state", "Started"),
    ("start_pool", lambda o: o.stop_pool("MCMS", timeout_s=5),
     lambda o: o.start_pool("MCMS", timeout_s=5), "pool_state", "Started"),
    ("start_service", lambda o: o.stop_service("MCMS.Worker", timeout_s=5),
     lambda o: o.start_service("MCMS.Worker", timeout_s=5), "service_state", "Running"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("op", "act", "field", "lab_path", "wanted"), STOPS, ids=[s[0] for s in STOPS]
)
async def test_stop_operations_reach_the_state_and_read_state_reflects_it(
    lab: Lab,
    lab_ops: HostOps,
    lab_host: str,
    op: str,
    act: Op,
    field: str,
    lab_path: tuple[str, ...],
    wanted: str,
) -> None:
    assert await act(lab_ops) == wanted

    assert getattr(await read(lab_ops), field) == wanted
    seen: Any = lab.state(lab_host)
    for key in lab_path:
        seen = seen[key]
    assert seen == wanted


@pytest.mark.parametrize(
    ("op", "before", "act", "field", "wanted"), STARTS, ids=[s[0] for s in STARTS]
)
async def test_start_operations_reach_the_state_and_read_state_reflects_it(
    lab_ops: HostOps, op: str, before: Op, act: Op, field: str, wanted: str
) -> None:
    await before(lab_ops)
    assert getattr(await read(lab_ops), field) != wanted

    assert await act(lab_ops) == wanted
    assert getattr(await read(lab_ops), field) == wanted


async def test_recycle_pool_recycles_a_started_pool(
    lab: Lab, lab_ops: HostOps, lab_host: str
) -> None:
    assert await lab_ops.recycle_pool("MCMS", timeout_s=5) == "Started"
    assert lab.state(lab_host)["app_pools"]["MCMS"] == {"state": "Started", "recycles": 1}


async def test_recycling_a_stopped_pool_fails_with_the_scripts_reason(lab_ops: HostOps) -> None:
    await lab_ops.stop_pool("MCMS", timeout_s=5)
    with pytest.raises(RemoteScriptFailed, match="cannot recycle application pool 'MCMS'"):
        await lab_ops.recycle_pool("MCMS", timeout_s=5)


async def test_acting_on_a_component_already_in_that_state_changes_nothing(
    lab: Lab, lab_host: str, lab_shell: ShellFactory
) -> None:
    params: dict[str, Any] = {"Site": "MCMS", "Action": "Start", "TimeoutSec": 3}
    reply = await lab_shell(lab_host).run("site-control", params, timeout_s=5)

    assert reply["changed"] is False and reply["state"] == "Started"
    assert lab.state(lab_host)["sites"]["MCMS"]["state"] == "Started"


async def test_component_stuck_in_a_pending_state_raises_state_not_reached(
    lab: Lab, lab_ops: HostOps, lab_host: str
) -> None:
    """The script waits its TimeoutSec (75% of the deadline), then reports what it saw."""
    lab.set_fault(lab_host, "service", "stuck")
    started = time.monotonic()

    with pytest.raises(StateNotReached) as caught:
        await lab_ops.stop_service("MCMS.Worker", timeout_s=2)

    assert 0.9 <= time.monotonic() - started < 2.0
    assert (caught.value.wanted, caught.value.actual) == ("Stopped", "StopPending")
    assert lab_host in str(caught.value) and "MCMS.Worker" in str(caught.value)


async def test_missing_site_fails_with_the_scripts_message(lab_ops: HostOps) -> None:
    with pytest.raises(RemoteScriptFailed, match="IIS site 'Nope' does not exist"):
        await lab_ops.stop_site("Nope", timeout_s=5)


async def test_echo_returns_the_text_unchanged(lab_ops: HostOps) -> None:
    text = "‘quotes’ “and” $(more) `tick` 🙂\nline"
    assert await lab_ops.echo(text, timeout_s=5) == text


@pytest.mark.parametrize(
    ("unsorted", "expected"),
    [
        (["1.10.0", "1.9.0", "1.4.2"], ["1.4.2", "1.9.0", "1.10.0"]),
        (["1.4.0", "1.4.0-rc1", "1.3.9"], ["1.3.9", "1.4.0-rc1", "1.4.0"]),
    ],
    ids=["numeric", "prerelease-first"],
)
def test_versions_sort_numerically_with_prereleases_first(
    unsorted: list[str], expected: list[str]
) -> None:
    assert sorted(unsorted, key=version_key) == expected


class ScriptedShell:
    """An in-memory RemoteShell that answers every run with one canned reply."""

    host = "twin01"

    def __init__(self, reply: dict[str, Any]) -> None:
        self.reply = reply

    async def run(
        self, op: str, params: Mapping[str, JsonValue], *, timeout_s: float
    ) -> dict[str, Any]:
        return self.reply


DEPLOYED: dict[str, Any] = {
    "ok": True,
    "version": "1.4.1",
    "release_path": "D:\\MCMS\\releases\\1.4.1",
    "copied": False,
    "sha256_verified": False,
}


@pytest.mark.parametrize(
    ("removed", "prune_errors", "expected"),
    [
        (None, None, ((), ())),
        ("1.3.9", "1.3.8: locked", (("1.3.9",), ("1.3.8: locked",))),
        (["1.4.0", "1.3.9"], [], (("1.3.9", "1.4.0"), ())),
    ],
    ids=["null", "unwrapped-scalar", "newest-first"],
)
async def test_deploy_result_reads_powershell_51_array_shapes(
    removed: Any, prune_errors: Any, expected: tuple[tuple[str, ...], tuple[str, ...]]
) -> None:
    ops = HostOps(ScriptedShell({**DEPLOYED, "removed": removed, "prune_errors": prune_errors}))

    result = await ops.deploy_release(
        "1.4.1", "a" * 64, "D:\\MCMS\\packages", ROOT, keep=3, timeout_s=5
    )

    assert (result.removed, result.prune_errors) == expected
    assert result.host == "twin01" and not result.copied


@pytest.mark.parametrize(
    "reply",
    [
        {**DEPLOYED, "removed": ["1.4.2"]},
        {**DEPLOYED, "removed": ["1.4.1"]},
        {**DEPLOYED, "removed": ["1.4.0.tmp"]},
        {**DEPLOYED, "version": "1.4.2"},
        {**DEPLOYED, "release_path": "D:\\MCMS\\releases\\1.4.2"},
        {**DEPLOYED, "copied": "False"},
    ],
    ids=["pruned-protected", "pruned-target", "pruned-non-release", "other-version",
         "other-path", "string-flag"],
)  # fmt: skip
async def test_deploy_reply_out_of_step_with_the_request_is_a_bad_reply(
    reply: dict[str, Any],
) -> None:
    ops = HostOps(ScriptedShell(reply))
    with pytest.raises(BadReply, match="out of step"):
        await ops.deploy_release(
            "1.4.1", "a" * 64, "D:\\MCMS\\packages", ROOT, keep=3, protect=["1.4.2"], timeout_s=5
        )


async def test_switch_reply_pointing_elsewhere_is_a_bad_reply() -> None:
    ops = HostOps(ScriptedShell({"ok": True, "physical_path": "D:\\MCMS\\releases\\1.4.2"}))
    with pytest.raises(BadReply, match="physical_path"):
        await ops.switch_site("MCMS", ROOT, "1.4.1", timeout_s=5)
