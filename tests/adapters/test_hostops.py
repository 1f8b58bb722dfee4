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
from adapters.winrm.hostops import ControlResult, HostOps, HostState, version_key
from adapters.winrm.hoststate import PoolState, ServiceState, SiteState, release_of
from adapters.winrm.scripts import JsonValue
from adapters.winrm.transport import WinRMShell
from lab.core import Lab

pytest_plugins = ["tests.lab_fixtures"]
ShellFactory = Callable[..., WinRMShell]  # the lab_shell fixture

ROOT = "D:\\MCMS\\releases"


PORTAL, API, WORKER = "MCMS.Portal", "MCMS.Api", "MCMS.Worker"


async def read(ops: HostOps) -> HostState:
    return await ops.read_state([PORTAL, API], [PORTAL, API], [WORKER], ROOT, timeout_s=5)


async def test_read_state_reports_every_component_its_path_and_the_kept_releases(
    lab_ops: HostOps, lab_host: str
) -> None:
    state = await read(lab_ops)

    assert state == HostState(
        host=lab_host,
        sites=(
            SiteState(PORTAL, "Started", f"{ROOT}\\1.4.2\\Portal"),
            SiteState(API, "Started", f"{ROOT}\\1.4.2\\Api"),
        ),
        pools=(PoolState(PORTAL, "Started"), PoolState(API, "Started")),
        services=(
            ServiceState(WORKER, "Running", f'"{ROOT}\\1.4.2\\Worker\\MCMS.Worker.exe" --service'),
        ),
        releases=("1.4.0", "1.4.1", "1.4.2"),
    )
    assert {release_of(s.physical_path, ROOT) for s in state.sites} == {"1.4.2"}
    assert release_of(state.services[0].image_path, ROOT) == "1.4.2"


async def test_read_state_reports_missing_components_as_missing(lab_ops: HostOps) -> None:
    state = await lab_ops.read_state(
        ["Other"], ["Other"], ["Other.Svc"], "D:\\Nowhere", timeout_s=5
    )

    assert [s.state for s in (*state.sites, *state.pools, *state.services)] == ["Missing"] * 3
    assert state.sites[0].physical_path is None and state.services[0].image_path is None
    assert state.releases == ()


Op = Callable[[HostOps], Awaitable[ControlResult]]
STOPS: list[tuple[str, Op, str, tuple[str, ...], str]] = [
    ("stop_site", lambda o: o.stop_site(API, timeout_s=5),
     "sites", ("sites", API, "state"), "Stopped"),
    ("stop_pool", lambda o: o.stop_pool(API, timeout_s=5),
     "pools", ("app_pools", API, "state"), "Stopped"),
    ("stop_service", lambda o: o.stop_service(WORKER, timeout_s=5),
     "services", ("services", WORKER, "state"), "Stopped"),
]  # fmt: skip
STARTS: list[tuple[str, Op, Op, str, str]] = [
    ("start_site", lambda o: o.stop_site(API, timeout_s=5),
     lambda o: o.start_site(API, timeout_s=5), "sites", "Started"),
    ("start_pool", lambda o: o.stop_pool(API, timeout_s=5),
     lambda o: o.start_pool(API, timeout_s=5), "pools", "Started"),
    ("start_service", lambda o: o.stop_service(WORKER, timeout_s=5),
     lambda o: o.start_service(WORKER, timeout_s=5), "services", "Running"),
]  # fmt: skip


def state_of(state: HostState, field: str, name: str) -> str:
    rows: tuple[Any, ...] = getattr(state, field)
    return str(next(r.state for r in rows if r.name == name))


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
    result = await act(lab_ops)
    assert (result.state, result.changed) == (wanted, True)

    name = lab_path[1]
    assert state_of(await read(lab_ops), field, name) == wanted
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
    name = WORKER if field == "services" else API
    await before(lab_ops)
    assert state_of(await read(lab_ops), field, name) != wanted

    assert (await act(lab_ops)).state == wanted
    assert state_of(await read(lab_ops), field, name) == wanted


async def test_recycle_pool_recycles_a_started_pool(
    lab: Lab, lab_ops: HostOps, lab_host: str
) -> None:
    result = await lab_ops.recycle_pool(API, timeout_s=5)
    assert (result.state, result.changed) == ("Started", True)
    assert lab.state(lab_host)["app_pools"][API] == {"state": "Started", "recycles": 1}


async def test_recycling_a_stopped_pool_succeeds_and_leaves_it_stopped(
    lab: Lab, lab_ops: HostOps, lab_host: str
) -> None:
    """Playbook §4: a fully stopped service is redeployed; a stopped pool is no failure."""
    await lab_ops.stop_pool(API, timeout_s=5)

    result = await lab_ops.recycle_pool(API, timeout_s=5)

    assert (result.before, result.state, result.changed) == ("Stopped", "Stopped", False)
    assert result.words == "Stopped (was already stopped)"
    assert lab.state(lab_host)["app_pools"][API] == {"state": "Stopped", "recycles": 0}


@pytest.mark.parametrize(
    ("act", "words"),
    [
        (lambda o: o.stop_site(API, timeout_s=5), "Stopped (was already stopped)"),
        (lambda o: o.stop_service(WORKER, timeout_s=5), "Stopped (was already stopped)"),
    ],
    ids=["site", "service"],
)
async def test_stopping_what_is_already_stopped_is_a_success_that_says_so(
    lab_ops: HostOps, act: Op, words: str
) -> None:
    await act(lab_ops)
    again = await act(lab_ops)
    assert (again.changed, again.words) == (False, words)


async def test_acting_on_a_component_already_in_that_state_changes_nothing(
    lab: Lab, lab_host: str, lab_shell: ShellFactory
) -> None:
    params: dict[str, Any] = {"Site": API, "Action": "Start", "TimeoutSec": 3}
    reply = await lab_shell(lab_host).run("site-control", params, timeout_s=5)

    assert reply["changed"] is False and reply["state"] == "Started"
    assert lab.state(lab_host)["sites"][API]["state"] == "Started"


async def test_preflight_is_read_only_and_says_every_problem(
    lab: Lab, lab_ops: HostOps, lab_host: str
) -> None:
    before = lab.state(lab_host)
    lab.set_fault(lab_host, "package", "corrupt")
    lab.set_fault(lab_host, "disk", "full")

    found = await lab_ops.preflight(
        [PORTAL, "Nope"], [PORTAL], [WORKER], ROOT, version="1.3.9",
        sha256=lab.package_digests["1.3.9"], package_dir="D:\\MCMS\\packages",
        required_bytes=10 * 2**20, timeout_s=5,
    )  # fmt: skip

    assert found.problems[0] == f"IIS site 'Nope' does not exist on {lab_host}"
    assert len(found.problems) == 3
    assert any("SHA-256 of" in p for p in found.problems)
    assert any("MB free on the releases volume" in p for p in found.problems)
    assert found.state.sites[0] == SiteState(PORTAL, "Started", f"{ROOT}\\1.4.2\\Portal")
    assert (found.release_whole, found.package_verified, found.free_bytes) == (False, False, 0)
    after = lab.state(lab_host)
    assert {k: after[k] for k in ("sites", "app_pools", "services", "releases")} == {
        k: before[k] for k in ("sites", "app_pools", "services", "releases")
    }


async def test_preflight_of_a_kept_whole_release_needs_no_package_or_space(
    lab: Lab, lab_ops: HostOps, lab_host: str
) -> None:
    lab.set_fault(lab_host, "package", "corrupt")
    lab.set_fault(lab_host, "disk", "full")
    found = await lab_ops.preflight(
        [PORTAL, API], [PORTAL, API], [WORKER], ROOT, version="1.4.1",
        sha256=lab.package_digests["1.4.1"], package_dir="D:\\MCMS\\packages",
        required_bytes=10 * 2**30, timeout_s=5,
    )  # fmt: skip
    assert found.problems == () and found.release_whole


async def test_switch_release_points_every_component_and_reads_each_back(
    lab: Lab, lab_ops: HostOps, lab_host: str
) -> None:
    worker = f'"{ROOT}\\1.4.1\\Worker\\MCMS.Worker.exe" --service'
    done = await lab_ops.switch_release(
        [(PORTAL, f"{ROOT}\\1.4.1\\Portal"), (API, f"{ROOT}\\1.4.1\\Api")],
        [(WORKER, worker)],
        releases_root=ROOT,
        timeout_s=5,
    )

    assert [(s.kind, s.name, s.changed) for s in done] == [
        ("site", PORTAL, True), ("site", API, True), ("service", WORKER, True),
    ]  # fmt: skip
    state = lab.state(lab_host)
    assert state["sites"][API]["physical_path"] == f"{ROOT}\\1.4.1\\Api"
    assert state["services"][WORKER]["image_path"] == worker


async def test_switch_release_refuses_a_missing_folder_before_writing_anything(
    lab: Lab, lab_ops: HostOps, lab_host: str
) -> None:
    with pytest.raises(RemoteScriptFailed, match=r"does not exist.*Nothing was changed"):
        await lab_ops.switch_release(
            [(PORTAL, f"{ROOT}\\1.4.1\\Portal"), (API, f"{ROOT}\\1.3.9\\Api")],
            [],
            releases_root=ROOT,
            timeout_s=5,
        )
    assert lab.state(lab_host)["sites"][PORTAL]["release"] == "1.4.2"


async def test_switch_release_says_what_it_already_switched_when_a_write_fails(
    lab: Lab, lab_ops: HostOps, lab_host: str
) -> None:
    lab.set_fault(lab_host, "service", "registry_denied")
    with pytest.raises(RemoteScriptFailed, match=r"already switched: site MCMS\.Portal"):
        await lab_ops.switch_release(
            [(PORTAL, f"{ROOT}\\1.4.1\\Portal")],
            [(WORKER, f'"{ROOT}\\1.4.1\\Worker\\MCMS.Worker.exe" --service')],
            releases_root=ROOT,
            timeout_s=5,
        )
    state = lab.state(lab_host)
    assert state["sites"][PORTAL]["release"] == "1.4.1"
    assert state["services"][WORKER]["release"] == "1.4.2"


async def test_component_stuck_in_a_pending_state_raises_state_not_reached(
    lab: Lab, lab_ops: HostOps, lab_host: str
) -> None:
    """The script waits its TimeoutSec (75% of the deadline), then reports what it saw."""
    lab.set_fault(lab_host, "service", "stuck")
    started = time.monotonic()

    with pytest.raises(StateNotReached) as caught:
        await lab_ops.stop_service(WORKER, timeout_s=2)

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
    site = {"name": PORTAL, "before": "x", "physical_path": f"{ROOT}\\1.4.2\\Portal"}
    ops = HostOps(ScriptedShell({"ok": True, "sites": site, "services": None}))
    with pytest.raises(BadReply, match="physical_path"):
        await ops.switch_release(
            [(PORTAL, f"{ROOT}\\1.4.1\\Portal")], [], releases_root=ROOT, timeout_s=5
        )


async def test_read_state_takes_powershell_51_unwrapped_rows() -> None:
    """One site comes back as an object, no service as null (PowerShell 5.1's JSON)."""
    reply = {
        "ok": True,
        "sites": {"name": PORTAL, "state": "Started", "physical_path": f"{ROOT}\\1.4.2"},
        "pools": {"name": PORTAL, "state": "Started"},
        "services": None,
        "releases": "1.4.2",
    }
    state = await HostOps(ScriptedShell(reply)).read_state(
        [PORTAL], [PORTAL], [], ROOT, timeout_s=5
    )
    assert (
        state.sites[0].state == "Started" and state.services == () and state.releases == ("1.4.2",)
    )


@pytest.mark.parametrize(
    "reply",
    [
        {"ok": True, "sites": [], "pools": [], "services": [], "releases": []},
        {"ok": True, "sites": [{"name": API, "state": "Started"}], "pools": [], "services": []},
        {"ok": True, "sites": [{"name": PORTAL, "state": 1}], "pools": [], "services": []},
    ],
    ids=["a-site-missing", "another-site", "state-not-text"],
)
async def test_read_state_out_of_step_with_the_request_is_a_bad_reply(
    reply: dict[str, Any],
) -> None:
    with pytest.raises(BadReply, match="out of step"):
        await HostOps(ScriptedShell(reply)).read_state([PORTAL], [], [], ROOT, timeout_s=5)
