"""The deploy step of a rollback over real WinRM against the lab: expand, keep, prune, switch
every component of the release.

Lab host lab-web01 keeps 1.4.0, 1.4.1 and 1.4.2 (current); the package store also holds
1.3.8 and 1.3.9 (the other hosts' releases), so 1.3.9 is a release this host no longer
keeps — a rollback that must expand it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.errors import DeadlineExceeded, InvalidName, RemoteScriptFailed
from adapters.winrm.hostops import DeployResult, HostOps
from adapters.winrm.transport import WinRMShell
from lab.core import Lab
from lab.demo import DEMO_PASSWORD, DEMO_USERNAME
from lab.model import LabHostSpec

pytest_plugins = ["tests.lab_fixtures"]
ShellFactory = Callable[..., WinRMShell]  # the lab_shell fixture

ROOT = "D:\\MCMS\\releases"
PORTAL, API, WORKER = "MCMS.Portal", "MCMS.Api", "MCMS.Worker"


async def switch_to(ops: HostOps, version: str, timeout_s: float = 5) -> list[str]:
    """Point the demo host's two sites and its Worker at `version`; the paths read back."""
    done = await ops.switch_release(
        [(PORTAL, f"{ROOT}\\{version}\\Portal"), (API, f"{ROOT}\\{version}\\Api")],
        [(WORKER, f'"{ROOT}\\{version}\\Worker\\MCMS.Worker.exe" --service')],
        releases_root=ROOT,
        timeout_s=timeout_s,
    )
    return [s.after for s in done]


async def deploy(
    lab: Lab,
    ops: HostOps,
    version: str,
    *,
    keep: int = 3,
    protect: tuple[str, ...] = (),
    sha256: str | None = None,
    package_dir: str | None = None,
    timeout_s: float = 5,
) -> DeployResult:
    return await ops.deploy_release(
        version,
        sha256 or lab.package_digests[version],
        package_dir or lab.host_package_dir(ops.host),
        ROOT,
        keep=keep,
        protect=protect,
        timeout_s=timeout_s,
    )


def releases_and_site(lab: Lab, host: str) -> dict[str, Any]:
    """The part of the host's state a deploy may change."""
    state = lab.state(host)
    return {
        "releases": state["releases"],
        "markers": state["release_markers"],
        "sites": state["sites"],
        "services": state["services"],
    }


async def health(lab: Lab, host: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
        session.get(lab.check_base(host, "health") + "/health") as response,
    ):
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return body


async def test_deploy_expands_a_release_the_host_no_longer_keeps(
    lab: Lab, lab_ops: HostOps, lab_host: str
) -> None:
    result = await deploy(lab, lab_ops, "1.3.9", keep=2, protect=("1.4.2",))

    assert result == DeployResult(
        host=lab_host,
        version="1.3.9",
        release_path=f"{ROOT}\\1.3.9",
        copied=True,
        sha256_verified=True,
        removed=("1.4.0",),
    )
    state = lab.state(lab_host)
    assert state["releases"] == ["1.3.9", "1.4.1", "1.4.2"]
    assert state["release_markers"]["1.3.9"] == lab.package_digests["1.3.9"]
    # Deploying does not switch: the site still serves the current release.
    assert state["current_release"] == "1.4.2"
    host_view = await lab_ops.read_state([PORTAL], [PORTAL], [WORKER], ROOT, timeout_s=5)
    assert host_view.releases == ("1.3.9", "1.4.1", "1.4.2")


@pytest.mark.parametrize(
    ("keep", "protect", "removed", "kept"),
    [
        (1, (), ("1.4.0", "1.4.1"), ["1.3.9", "1.4.2"]),
        (2, ("1.4.2",), ("1.4.0",), ["1.3.9", "1.4.1", "1.4.2"]),
        (1, ("1.4.0",), ("1.4.1",), ["1.3.9", "1.4.0", "1.4.2"]),
        (10, (), (), ["1.3.9", "1.4.0", "1.4.1", "1.4.2"]),
    ],
    ids=["keep-1", "keep-2", "keep-1-protect-old", "keep-all"],
)
async def test_prune_keeps_the_newest_n_and_never_the_target_or_protected(
    lab: Lab,
    lab_ops: HostOps,
    lab_host: str,
    keep: int,
    protect: tuple[str, ...],
    removed: tuple[str, ...],
    kept: list[str],
) -> None:
    """The newest `keep` stay, and so do the protected ones: 1.3.9 is the oldest yet never
    pruned (it is the target), nor is 1.4.2 (the site serves it) even with keep=1."""
    result = await deploy(lab, lab_ops, "1.3.9", keep=keep, protect=protect)

    assert result.removed == removed
    assert lab.state(lab_host)["releases"] == kept
    assert set(lab.state(lab_host)["release_markers"]) == set(kept)


async def test_prune_never_removes_the_folder_the_site_serves_even_unprotected(
    lab: Lab, lab_ops: HostOps, lab_host: str
) -> None:
    await switch_to(lab_ops, "1.4.0")

    result = await deploy(lab, lab_ops, "1.3.9", keep=1, protect=())

    assert result.removed == ("1.4.1",)
    assert lab.state(lab_host)["releases"] == ["1.3.9", "1.4.0", "1.4.2"]


async def test_prune_never_removes_a_release_a_service_still_runs_from(
    lab: Lab, lab_ops: HostOps, lab_host: str
) -> None:
    """Half switched (the Worker moved to 1.4.0, the sites did not): 1.4.0 stays."""
    await lab_ops.switch_release(
        [],
        [(WORKER, f'"{ROOT}\\1.4.0\\Worker\\MCMS.Worker.exe" --service')],
        releases_root=ROOT,
        timeout_s=5,
    )

    result = await deploy(lab, lab_ops, "1.3.9", keep=1, protect=())

    assert result.removed == ("1.4.1",)
    assert lab.state(lab_host)["releases"] == ["1.3.9", "1.4.0", "1.4.2"]


async def test_a_kept_whole_release_is_used_without_reading_the_package(
    lab: Lab, lab_ops: HostOps, lab_host: str
) -> None:
    """Its marker proves it whole, so even a corrupt copy of the package does not matter."""
    lab.set_fault(lab_host, "package", "corrupt")
    before = releases_and_site(lab, lab_host)

    result = await deploy(lab, lab_ops, "1.4.1", keep=3, protect=("1.4.2",))

    assert (result.copied, result.sha256_verified, result.removed) == (False, False, ())
    assert result.release_path == f"{ROOT}\\1.4.1"
    assert releases_and_site(lab, lab_host) == before


@pytest.mark.parametrize("marker", [None, "0" * 64], ids=["no-marker", "other-digest"])
async def test_a_kept_folder_without_a_valid_marker_is_expanded_again(
    lab: Lab, lab_ops: HostOps, lab_host: str, marker: str | None
) -> None:
    lab.put_release(lab_host, "1.4.1", marker=marker)

    result = await deploy(lab, lab_ops, "1.4.1", keep=3)

    assert (result.copied, result.sha256_verified) == (True, True)
    assert lab.state(lab_host)["release_markers"]["1.4.1"] == lab.package_digests["1.4.1"]


def tamper(lab: Lab, host: str, version: str) -> None:
    """Someone changed the zip in the store after the bot had verified its digest."""
    path = lab.package_path(version)
    path.write_bytes(path.read_bytes() + b"tampered")


def corrupt_on_host(lab: Lab, host: str, version: str) -> None:
    lab.set_fault(host, "package", "corrupt")


@pytest.mark.parametrize("spoil", [tamper, corrupt_on_host], ids=["store-tampered", "host-copy"])
async def test_a_digest_mismatch_on_the_host_fails_clearly_and_changes_nothing(
    lab: Lab, lab_ops: HostOps, lab_host: str, spoil: Callable[[Lab, str, str], None]
) -> None:
    expected = lab.package_digests["1.3.9"]
    spoil(lab, lab_host, "1.3.9")
    before = releases_and_site(lab, lab_host)

    with pytest.raises(RemoteScriptFailed) as caught:
        await deploy(lab, lab_ops, "1.3.9", keep=1)

    message = str(caught.value)
    assert "SHA-256 of 'D:\\MCMS\\packages\\MCMS_Setup_1.3.9.zip'" in message
    assert f"expected {expected[:12]}..." in message and lab_host in message
    assert "Nothing was changed" in message
    assert releases_and_site(lab, lab_host) == before


async def test_a_package_the_host_cannot_see_fails_clearly_and_changes_nothing(
    lab: Lab, lab_ops: HostOps, lab_host: str
) -> None:
    before = releases_and_site(lab, lab_host)
    share = "\\\\files\\mcms\\artifacts\\offline"

    with pytest.raises(RemoteScriptFailed, match="is not reachable from lab-web01") as caught:
        await deploy(lab, lab_ops, "1.3.9", package_dir=share)

    assert "check host_package_dir" in str(caught.value)
    assert releases_and_site(lab, lab_host) == before


async def test_a_hanging_host_fails_at_the_deadline_and_changes_nothing(
    lab: Lab, lab_ops: HostOps, lab_host: str
) -> None:
    lab.set_fault(lab_host, "winrm", "hang")
    before = releases_and_site(lab, lab_host)

    with pytest.raises(DeadlineExceeded):
        await deploy(lab, lab_ops, "1.3.9", timeout_s=1)

    assert releases_and_site(lab, lab_host) == before


async def test_switch_release_points_every_component_at_a_kept_release(
    lab: Lab, lab_ops: HostOps, lab_host: str
) -> None:
    paths = await switch_to(lab_ops, "1.4.1")

    assert paths == [
        f"{ROOT}\\1.4.1\\Portal",
        f"{ROOT}\\1.4.1\\Api",
        f'"{ROOT}\\1.4.1\\Worker\\MCMS.Worker.exe" --service',
    ]
    state = lab.state(lab_host)
    assert state["sites"][PORTAL]["physical_path"] == paths[0]
    assert state["services"][WORKER]["image_path"] == paths[2]
    assert (await health(lab, lab_host))["version"] == "1.4.1"
    # Pointing them where they already point is not an error, and changes nothing.
    done = await lab_ops.switch_release(
        [(PORTAL, paths[0])], [(WORKER, paths[2])], releases_root=ROOT, timeout_s=5
    )
    assert [s.changed for s in done] == [False, False]


async def test_switch_release_refuses_a_release_folder_that_does_not_exist(
    lab: Lab, lab_ops: HostOps, lab_host: str
) -> None:
    before = releases_and_site(lab, lab_host)
    with pytest.raises(RemoteScriptFailed) as caught:
        await switch_to(lab_ops, "1.3.9")

    message = str(caught.value)
    assert (
        "folder 'D:\\MCMS\\releases\\1.3.9\\Portal' for site 'MCMS.Portal' does not exist"
        in message
    )
    assert "deploy the release first. Nothing was changed" in message
    assert releases_and_site(lab, lab_host) == before


async def test_switch_release_refuses_a_path_outside_the_releases_root(
    lab: Lab, lab_ops: HostOps, lab_host: str
) -> None:
    with pytest.raises(RemoteScriptFailed, match="not under the releases root"):
        await lab_ops.switch_release(
            [(PORTAL, "D:\\Elsewhere\\Portal")], [], releases_root=ROOT, timeout_s=5
        )
    assert lab.state(lab_host)["current_release"] == "1.4.2"


async def test_switch_release_fails_after_retries_while_the_config_stays_locked(
    lab: Lab, lab_ops: HostOps, lab_host: str
) -> None:
    """timeout 1.5 s → the script's TimeoutSec is 1: three attempts, 0.75 s of pauses."""
    lab.set_fault(lab_host, "site", "config_locked")
    started = time.monotonic()

    with pytest.raises(RemoteScriptFailed) as caught:
        await switch_to(lab_ops, "1.4.1", timeout_s=1.5)

    assert 0.7 <= time.monotonic() - started < 1.5
    message = str(caught.value)
    assert "could not switch site 'MCMS.Portal' on lab-web01 after 3 attempt(s)" in message
    assert "Cannot write configuration file" in message
    assert "nothing else was switched" in message
    assert lab.state(lab_host)["current_release"] == "1.4.2"


async def test_rollback_deploy_step_serves_the_target_once_sites_and_pools_run(
    lab: Lab, lab_ops: HostOps, lab_host: str
) -> None:
    """Playbook §6: stop, deploy the previous release, point everything at it, start."""
    for name in (PORTAL, API):
        await lab_ops.stop_site(name, timeout_s=5)
        await lab_ops.stop_pool(name, timeout_s=5)

    deployed = await deploy(lab, lab_ops, "1.3.9", keep=3, protect=("1.4.2",))
    paths = await switch_to(lab_ops, "1.3.9")
    for name in (PORTAL, API):
        await lab_ops.start_pool(name, timeout_s=5)
        await lab_ops.start_site(name, timeout_s=5)

    assert paths[0] == deployed.release_path + "\\Portal"
    state = lab.state(lab_host)
    assert {s["release"] for s in state["sites"].values()} == {"1.3.9"}
    assert state["serving"]
    assert (await health(lab, lab_host))["version"] == "1.3.9"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sha256", "abc123"),
        ("sha256", "g" * 64),
        ("package_dir", "D:\\MCMS\\..\\Windows"),
        ("package_dir", "packages"),
        ("package_dir", "D:"),
        ("package_dir", "\\\\files"),
        ("package_dir", "\\\\files\\mcms\\$(calc)"),
        ("package_dir", "D:\\MCMS\\packages‘"),
        ("releases_root", "\\\\files\\mcms\\releases"),
        ("version", "1.4.2; Remove-Item"),
        ("protect", ("1.4.2", "$(calc)")),
        ("keep", 0),
    ],
    ids=lambda v: repr(v)[:24],
)
async def test_unsafe_deploy_values_are_refused_before_any_winrm_request(
    lab: Lab, lab_ops: HostOps, lab_host: str, field: str, value: Any
) -> None:
    args: dict[str, Any] = {
        "version": "1.3.9",
        "sha256": lab.package_digests["1.3.9"],
        "package_dir": lab.host_package_dir(lab_host),
        "releases_root": ROOT,
        "keep": 3,
        "protect": (),
        "timeout_s": 5,
    }
    args[field] = value

    with pytest.raises(InvalidName, match="Nothing was sent"):
        await lab_ops.deploy_release(**args)
    assert lab.winrm_requests(lab_host) == 0


async def test_a_unc_share_is_read_as_the_host_sees_it(tmp_path: Path) -> None:
    """A host whose package store is a share: the same zip, reached by its UNC path."""
    share = "\\\\files\\mcms\\artifacts\\offline"
    spec = LabHostSpec("web02", "Lab", ("1.4.0", "1.4.1"), package_dir=share)
    with Lab([spec], tmp_path / "lab", package_versions=["1.4.2"]) as lab:
        shell = WinRMShell(lab.winrm_url("web02"), "basic", DEMO_USERNAME, DEMO_PASSWORD)
        ops = HostOps(shell, host="web02")
        assert lab.host_package_dir("web02") == share

        result = await deploy(lab, ops, "1.4.2", keep=2)

        assert (result.copied, result.removed) == (True, ("1.4.0",))
        assert lab.state("web02")["releases"] == ["1.4.1", "1.4.2"]


async def test_an_admin_share_passes_the_edge_and_the_host_says_what_it_cannot_see(
    lab: Lab, lab_ops: HostOps, lab_host: str
) -> None:
    with pytest.raises(RemoteScriptFailed, match=r"'\\\\files\\D\$\\packages\\MCMS_Setup"):
        await deploy(lab, lab_ops, "1.3.9", package_dir="\\\\files\\D$\\packages")
    assert lab.winrm_requests(lab_host) > 0
