"""The pure decisions of a run over the whole release: its plan, drift, and the restore.

No network: plans from config, and host states as values, in tables.
"""

from __future__ import annotations

import pytest

from adapters.winrm.hoststate import HostState, PoolState, ServiceState, SiteState
from commands.config import Service, Site, load_config
from commands.drift import ComponentVersion, drift_words
from commands.plan import Plan, PlanService, PlanSite, build_plan, plan_steps, start_sequence
from commands.restore import StateChange, differences, not_restorable, path_changes, state_changes
from tests.conftest import DEMO_CONFIG

ROOT = "D:\\MCMS\\releases"
PORTAL = PlanSite("Portal", "PortalPool", "Portal", "stop", 1)
API = PlanSite("Api", "ApiPool", "Api", "recycle", 1)
WORKER = PlanService("Worker", "Worker\\W.exe", "--service", 2)


def plan(
    *, services: tuple[PlanService, ...] = (WORKER,), sites: tuple[PlanSite, ...] = (PORTAL, API)
) -> Plan:
    return Plan(
        kind="rollback", environment="Lab", current_version="1.4.2", target_version="1.4.1",
        sha256="a" * 64, package="p.zip", source="s", hosts=("web01",), releases_root=ROOT,
        smoke_deadline_s=60, steps=(), sites=sites, services=services,
    )  # fmt: skip


def host(
    *,
    portal: str = "Started",
    api: str = "Started",
    pools: tuple[str, str] = ("Started", "Started"),
    worker: str = "Running",
    version: str = "1.4.2",
) -> HostState:
    return HostState(
        "web01",
        (
            SiteState("Portal", portal, f"{ROOT}\\{version}\\Portal"),
            SiteState("Api", api, f"{ROOT}\\{version}\\Api"),
        ),
        (PoolState("PortalPool", pools[0]), PoolState("ApiPool", pools[1])),
        (ServiceState("Worker", worker, f'"{ROOT}\\{version}\\Worker\\W.exe" --service'),),
        ("1.4.1", "1.4.2"),
    )


def test_steps_stop_sites_then_pools_then_services_and_start_in_start_order() -> None:
    steps = plan_steps("rollback", (PORTAL, API), (WORKER,), ROOT, "1.4.1", 60)
    assert [s.key for s in steps] == [
        "preflight", "precheck", "notify_start",
        "stop_site:Portal", "stop_site:Api", "stop_pool:PortalPool", "recycle_pool:ApiPool",
        "stop_service:Worker", "deploy_package", "switch",
        "start_pool:PortalPool", "start_site:Portal", "start_pool:ApiPool", "start_site:Api",
        "start_service:Worker", "smoke", "notify_end", "timeline",
    ]  # fmt: skip


def test_a_service_the_app_needs_first_can_start_first() -> None:
    worker_first = PlanService("Worker", "Worker\\W.exe", "", 0)
    order = [part.name for part in start_sequence((PORTAL, API), (worker_first,))]
    assert order == ["Worker", "Portal", "Api"]
    keys = [s.key for s in plan_steps("rollback", (PORTAL,), (worker_first,), ROOT, "1", 60)]
    assert keys.index("start_service:Worker") < keys.index("start_pool:PortalPool")


def test_two_sites_sharing_a_pool_stop_and_start_it_once() -> None:
    shared = (PORTAL, PlanSite("Api", "PortalPool", "Api", "stop", 1))
    keys = [s.key for s in plan_steps("rollback", shared, (), ROOT, "1.4.1", 60)]
    assert keys.count("stop_pool:PortalPool") == 1 and keys.count("start_pool:PortalPool") == 1


def test_paths_are_built_from_the_release_and_each_components_folder() -> None:
    p = plan(sites=(PORTAL, PlanSite("Root", "R", "", "stop", 1)))
    assert p.site_path(PORTAL, "1.4.1") == f"{ROOT}\\1.4.1\\Portal"
    assert p.site_path(p.sites[1], "1.4.1") == f"{ROOT}\\1.4.1"
    assert p.image_path(WORKER, "1.4.1") == f'"{ROOT}\\1.4.1\\Worker\\W.exe" --service'
    assert p.image_path(PlanService("Legacy", None, "", 2), "1.4.1") is None


def test_a_plan_stored_before_components_still_reads_and_cannot_be_approved_unchanged() -> None:
    old = (
        '{"app_pool": "MCMS", "current_version": "1.4.2", "environment": "Lab", "hosts": ["h"],'
        ' "kind": "rollback", "package": "p", "pool_action": "stop", "releases_root": "D:\\\\r",'
        ' "service": "MCMS.Worker", "sha256": "aa", "site": "MCMS", "smoke_deadline_s": 60,'
        ' "source": "s", "steps": [{"key": "stop_site", "title": "Stop IIS site MCMS"}],'
        ' "target_version": "1.4.1"}'
    )
    read = Plan.from_json(old)
    assert [(s.name, s.folder) for s in read.sites] == [("MCMS", "")]
    assert [(s.name, s.executable) for s in read.services] == [("MCMS.Worker", None)]
    assert read.steps[0].action == "stop_site" and not read.restore_steps
    env = load_config(DEMO_CONFIG).environments["Lab"]
    fresh = build_plan(
        "rollback", "Lab", env, current_version="1.4.2", target_version="1.4.1",
        sha256="aa", package="p", source="s",
    )  # fmt: skip
    assert fresh.hash != read.hash
    assert Plan.from_json(fresh.to_json()) == fresh


def test_the_legacy_shape_plans_one_site_at_the_root_and_a_service_not_switched() -> None:
    env = (
        load_config(DEMO_CONFIG)
        .environments["Lab"]
        .model_copy(
            update={"sites": [Site(name="MCMS", app_pool="MCMS")], "services": [Service(name="W")]}
        )
    )
    p = build_plan(
        "rollback", "Lab", env, current_version="1.4.2", target_version="1.4.1",
        sha256="aa", package="p", source="s",
    )  # fmt: skip
    switch = next(s for s in p.steps if s.key == "switch")
    assert switch.title == f"Switch MCMS to {ROOT}\\1.4.1 and read each back"


@pytest.mark.parametrize(
    ("versions", "words"),
    [
        ([("h1", "Portal", "1.4.1"), ("h1", "Worker", "1.4.1")], None),
        (
            [("h1", "Portal", "1.4.1"), ("h1", "Api", "1.4.1"), ("h1", "Worker", "1.4.2")],
            "Worker on h1 runs 1.4.2; everything else runs 1.4.1",
        ),
        (
            [("h1", "Portal", "1.4.1"), ("h2", "Portal", "1.4.2"), ("h2", "Api", "1.4.2"),
             ("h3", "Portal", "1.4.1"), ("h3", "Api", "1.4.1")],
            "Portal and Api on h2 run 1.4.2; everything else runs 1.4.1",
        ),
        (
            [("h1", "Portal", "1.4.1"), ("h1", "Api", None)],
            "Api on h1 is missing; everything else runs 1.4.1",
        ),
    ],
    ids=["agree", "one-component", "one-host", "missing"],
)  # fmt: skip
def test_drift_is_said_in_words(
    versions: list[tuple[str, str, str | None]], words: str | None
) -> None:
    seen = [
        ComponentVersion(h, "site", n, "Started" if v else "Missing", None, v)
        for h, n, v in versions
    ]
    assert drift_words(seen) == words


def test_a_service_the_bot_does_not_switch_is_never_drift() -> None:
    seen = [
        ComponentVersion("h1", "site", "Portal", "Started", None, "1.4.1"),
        ComponentVersion("h1", "service", "W", "Running", "C:\\x.exe", None, managed=False),
    ]
    assert drift_words(seen) is None


def test_a_restore_writes_back_only_what_differs() -> None:
    before, now = host(), host(version="1.4.1")
    sites, services = path_changes(before, now, plan())
    assert sites == [("Portal", f"{ROOT}\\1.4.2\\Portal"), ("Api", f"{ROOT}\\1.4.2\\Api")]
    assert services == [("Worker", f'"{ROOT}\\1.4.2\\Worker\\W.exe" --service')]
    assert path_changes(before, before, plan()) == ([], [])
    unmanaged = plan(services=(PlanService("Worker", None, "", 2),))
    assert path_changes(before, now, unmanaged)[1] == [], "never switched, never switched back"


def test_a_restore_stops_what_was_stopped_first_then_starts_in_order() -> None:
    before = host(api="Stopped", pools=("Started", "Stopped"), worker="Running")
    now = host(portal="Stopped", api="Started", pools=("Stopped", "Started"), worker="StopPending")
    assert state_changes(before, now, plan()) == [
        StateChange("site", "Api", "Stop"),
        StateChange("pool", "ApiPool", "Stop"),
        StateChange("pool", "PortalPool", "Start"),
        StateChange("site", "Portal", "Start"),
        StateChange("service", "Worker", "Start"),
    ]
    assert state_changes(before, before, plan()) == []


def test_only_settled_states_verify_a_restore() -> None:
    before = host()
    assert differences(before, before, plan()) == []
    pending = host(worker="StartPending")
    assert differences(before, pending, plan()) == ["service Worker is StartPending, was Running"]
    moved = host(version="1.4.1")
    assert differences(before, moved, plan())[0] == (
        f"site Portal points at {ROOT}\\1.4.1\\Portal, was {ROOT}\\1.4.2\\Portal"
    )


def test_a_component_neither_running_nor_stopped_before_is_left_alone_and_said() -> None:
    before = host(worker="Paused")
    assert state_changes(before, host(worker="Stopped"), plan()) == []
    assert differences(before, host(worker="Stopped"), plan()) == []
    assert not_restorable(before, plan()) == ["service Worker was Paused: left as it is"]
