"""The simulated lab itself: each site's endpoints follow the site and its pool, faults and
their filters, the hold barrier, scenes over HTTP, packages, CLI."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.winrm.scripts import compose
from lab.core import Lab
from lab.demo import DEMO_CONTROL_PORT, demo_hosts
from lab.model import LabHostSpec, SimHost
from lab.packages import build_package_store
from lab.powershell import run_script

pytest_plugins = ["tests.lab_fixtures"]

CHECKS = {"health": "/health", "swagger": "/swagger/index.html", "kerberos": "/api/auth/kerberos"}
SERVING = {"health": 200, "swagger": 200, "kerberos": 401}
REFUSED = dict.fromkeys(CHECKS, "refused")
PORTAL, API, WORKER = "MCMS.Portal", "MCMS.Api", "MCMS.Worker"
ROOT = "D:\\MCMS\\releases"


async def probe(url: str) -> int | str:
    """What a smoke probe sees: an HTTP status, "refused" or "dropped"."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
            session.get(url) as response,
        ):
            return response.status
    except aiohttp.ClientConnectorError as exc:
        return "refused" if isinstance(exc.os_error, ConnectionRefusedError) else "no-connect"
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
        return "dropped"


async def portal(lab: Lab, host: str) -> dict[str, int | str]:
    """Each smoke check at the site that answers it (the demo: Portal health, API the rest)."""
    return {name: await probe(lab.check_base(host, name) + path) for name, path in CHECKS.items()}


async def control(lab: Lab, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, lab.control_url + path, json=body) as response,
    ):
        return response.status, await response.json()


def scene(lab: Lab, host: str, op: str, **params: Any) -> None:
    result = lab.apply(host, op, params)
    assert result["ok"], result


async def test_portal_answers_like_mcms_while_site_and_pool_are_started(
    lab: Lab, lab_host: str
) -> None:
    assert await portal(lab, lab_host) == SERVING
    async with (
        aiohttp.ClientSession() as session,
        session.get(lab.check_base(lab_host, "health") + "/health") as r,
    ):
        assert (await r.json())["version"] == "1.4.2"
    # A site answers only its own checks.
    assert await probe(lab.http_base(lab_host, PORTAL) + "/swagger/index.html") == 404


@pytest.mark.parametrize(
    ("op", "params", "seen"),
    [
        ("site-control", {"Site": API, "Action": "Stop"}, {**SERVING, "swagger": "refused",
                                                           "kerberos": "refused"}),
        ("pool-control", {"AppPool": PORTAL, "Action": "Stop"}, {**SERVING, "health": "refused"}),
    ],
    ids=["api-site-stopped", "portal-pool-stopped"],
)  # fmt: skip
async def test_a_site_refuses_connections_while_it_or_its_pool_is_stopped(
    lab: Lab, lab_host: str, op: str, params: dict[str, str], seen: dict[str, int | str]
) -> None:
    scene(lab, lab_host, op, **params)
    assert await portal(lab, lab_host) == seen

    scene(lab, lab_host, op, **{**params, "Action": "Start"})
    assert await portal(lab, lab_host) == SERVING


async def test_stopping_the_worker_service_leaves_the_portal_up(lab: Lab, lab_host: str) -> None:
    scene(lab, lab_host, "service-control", Service=WORKER, Action="Stop")
    assert await portal(lab, lab_host) == SERVING


async def test_faults_on_one_host_leave_the_others_alone(lab: Lab) -> None:
    stage, prod = lab.host_for("InternalStage"), lab.host_for("InternalProd")
    lab.set_fault(stage, "http", "down")

    assert await portal(lab, stage) == REFUSED
    assert await portal(lab, prod) == SERVING


async def test_fault_api_makes_one_check_slow_failing_or_dropped(lab: Lab, lab_host: str) -> None:
    status, _ = await control(
        lab, "PUT", f"/faults/{lab_host}/health", {"mode": "slow", "delay_s": 0.5}
    )
    assert status == 200
    started = time.monotonic()
    assert await probe(lab.http_base(lab_host) + "/health") == 200
    assert time.monotonic() - started >= 0.5

    await control(lab, "PUT", f"/faults/{lab_host}/swagger", {"mode": "error"})
    await control(lab, "PUT", f"/faults/{lab_host}/kerberos", {"mode": "down"})
    assert await portal(lab, lab_host) == {"health": 200, "swagger": 500, "kerberos": "dropped"}

    status, state = await control(lab, "DELETE", "/faults")
    assert status == 200 and state[lab_host]["faults"] == {}
    assert await portal(lab, lab_host) == SERVING


async def test_fault_api_closes_the_whole_portal_port(lab: Lab, lab_host: str) -> None:
    await control(lab, "PUT", f"/faults/{lab_host}/http", {"mode": "down"})
    assert await portal(lab, lab_host) == REFUSED

    status, state = await control(lab, "DELETE", f"/faults/{lab_host}/http")
    assert status == 200 and state["sites"][PORTAL]["listening"] is True
    assert await portal(lab, lab_host) == SERVING


async def test_fault_api_reports_state_and_refuses_unknown_faults(lab: Lab, lab_host: str) -> None:
    status, state = await control(lab, "GET", f"/state/{lab_host}")
    assert status == 200
    assert state["current_release"] == "1.4.2" and state["releases"] == ["1.4.0", "1.4.1", "1.4.2"]
    assert {k: v for k, v in state["sites"][API].items() if k != "http_port"} == {
        "state": "Started",
        "physical_path": "D:\\MCMS\\releases\\1.4.2\\Api",
        "app_pool": API,
        "release": "1.4.2",
        "serving": True,
        "listening": True,
    }
    assert state["services"][WORKER] == {
        "state": "Running",
        "image_path": '"D:\\MCMS\\releases\\1.4.2\\Worker\\MCMS.Worker.exe" --service',
        "release": "1.4.2",
    }

    status, body = await control(lab, "PUT", f"/faults/{lab_host}/winrm", {"mode": "explode"})
    assert status == 400 and "hang" in body["error"]
    status, body = await control(lab, "PUT", f"/faults/{lab_host}/dns", {"mode": "down"})
    assert status == 400 and "unknown fault target" in body["error"]
    status, body = await control(lab, "GET", "/state/no-such-host")
    assert status == 404
    status, body = await control(
        lab, "PUT", f"/faults/{lab_host}/site", {"mode": "stuck", "colour": "red"}
    )
    assert status == 400 and "unknown key(s) colour" in body["error"]
    status, body = await control(lab, "PUT", f"/faults/{lab_host}/op", {"mode": "hold"})
    assert status == 400 and '"name"' in body["error"]


async def test_fault_api_sets_the_deploy_faults_and_state_shows_markers(
    lab: Lab, lab_host: str
) -> None:
    for target, mode in (("package", "corrupt"), ("site", "config_locked")):
        status, state = await control(lab, "PUT", f"/faults/{lab_host}/{target}", {"mode": mode})
        assert status == 200 and state["faults"][target]["mode"] == mode

    assert state["package_dir"] == "D:\\MCMS\\packages"
    assert state["release_markers"] == {v: lab.package_digests[v] for v in state["releases"]}
    status, body = await control(lab, "PUT", f"/faults/{lab_host}/package", {"mode": "down"})
    assert status == 400 and "corrupt" in body["error"]


def test_a_locked_site_config_does_not_make_start_or_stop_stuck(lab: Lab, lab_host: str) -> None:
    """config_locked only fails physicalPath writes; stuck is the mode for start/stop."""
    lab.set_fault(lab_host, "site", "config_locked")
    scene(lab, lab_host, "site-control", Site=PORTAL, Action="Stop")
    assert lab.state(lab_host)["sites"][PORTAL]["state"] == "Stopped"


async def test_portal_health_reports_the_release_the_site_points_at(
    lab: Lab, lab_host: str
) -> None:
    scene(lab, lab_host, "switch-release", SiteNames=[PORTAL], SitePaths=[f"{ROOT}\\1.4.0\\Portal"])
    async with (
        aiohttp.ClientSession() as session,
        session.get(lab.check_base(lab_host, "health") + "/health") as r,
    ):
        body = await r.json()
    assert body == {"status": "Healthy", "host": lab_host, "site": PORTAL, "version": "1.4.0"}


async def test_apply_over_http_sets_the_playbook_section_4_scene(lab: Lab, lab_host: str) -> None:
    """POST /apply/{host} runs an op as Lab.apply does: here everything stopped."""
    for op, key, name in (
        ("site-control", "Site", PORTAL),
        ("site-control", "Site", API),
        ("pool-control", "AppPool", PORTAL),
        ("pool-control", "AppPool", API),
        ("service-control", "Service", WORKER),
    ):
        status, body = await control(
            lab, "POST", f"/apply/{lab_host}", {"op": op, "params": {key: name, "Action": "Stop"}}
        )
        assert status == 200 and body["state"] == "Stopped", body
    assert await portal(lab, lab_host) == REFUSED
    state = lab.state(lab_host)
    assert state["services"][WORKER]["state"] == "Stopped" and not state["serving"]

    status, body = await control(lab, "POST", f"/apply/{lab_host}", {"op": "nope", "params": {}})
    assert status == 200 and body == {"ok": False, "error": "lab: no simulation for op 'nope'"}
    status, body = await control(lab, "POST", f"/apply/{lab_host}", {"params": {}})
    assert status == 400 and "op" in body["error"]
    status, _ = await control(lab, "POST", "/apply/no-such-host", {"op": "echo"})
    assert status == 404


def test_a_fault_narrowed_to_one_component_and_action_fires_once(lab: Lab, lab_host: str) -> None:
    lab.set_fault(lab_host, "site", "stuck", name=API, action="Start", times=1)

    assert lab.apply(lab_host, "site-control", {"Site": PORTAL, "Action": "Stop"})["reached"]
    assert lab.apply(lab_host, "site-control", {"Site": API, "Action": "Stop"})["reached"]
    stuck = lab.apply(lab_host, "site-control", {"Site": API, "Action": "Start", "TimeoutSec": 1})
    assert (stuck["state"], stuck["reached"]) == ("Starting", False)
    assert lab.state(lab_host)["faults"] == {}, "a one-shot fault disarms after firing"
    again = lab.apply(lab_host, "site-control", {"Site": API, "Action": "Start"})
    assert (again["state"], again["reached"]) == ("Started", True)


async def test_an_error_fault_for_one_version_breaks_only_that_release(
    lab: Lab, lab_host: str
) -> None:
    """A broken build: health answers 500 while the Portal serves 1.4.1, 200 otherwise."""
    lab.set_fault(lab_host, "health", "error", version="1.4.1")
    assert (await portal(lab, lab_host))["health"] == 200
    scene(lab, lab_host, "switch-release", SiteNames=[PORTAL], SitePaths=[f"{ROOT}\\1.4.1\\Portal"])
    assert (await portal(lab, lab_host))["health"] == 500


def test_disk_full_and_a_failing_expand_fail_the_deploy_and_change_nothing(
    lab: Lab, lab_host: str
) -> None:
    params = {
        "Version": "1.3.9",
        "Sha256": lab.package_digests["1.3.9"],
        "PackageDir": lab.host_package_dir(lab_host),
        "ReleasesRoot": ROOT,
        "KeepCount": 3,
    }
    for target, mode in (("package", "expand_fail"), ("disk", "full")):
        lab.set_fault(lab_host, target, mode)
        failed = lab.apply(lab_host, "deploy-release", params)
        assert failed["ok"] is False and "not enough space on the disk" in failed["error"]
        assert "1.3.9" not in lab.state(lab_host)["releases"]
        lab.clear_faults()
    assert lab.state(lab_host)["free_bytes"] > 0


async def test_a_hold_keeps_a_started_script_waiting_until_released(
    lab: Lab, lab_host: str, lab_ops: Any
) -> None:
    """The barrier a kill -9 test needs: the op has reached the host and waits there."""
    lab.hold(lab_host, "site-control", Action="Stop", Site=API)
    task = asyncio.create_task(lab_ops.stop_site(API, timeout_s=10))
    for _ in range(200):
        if lab.held(lab_host):
            break
        await asyncio.sleep(0.01)
    assert lab.held(lab_host) == [f"site-control {API} Stop"]
    assert lab.state(lab_host)["sites"][API]["state"] == "Started"
    # Other calls pass the hold.
    assert (await lab_ops.stop_site(PORTAL, timeout_s=5)).state == "Stopped"

    lab.release(lab_host)
    assert (await asyncio.wait_for(task, 5)).state == "Stopped"
    assert lab.held(lab_host) == []


def test_host_reads_its_package_dir_from_the_labs_store(lab: Lab, lab_host: str) -> None:
    """The host's view (D:\\MCMS\\packages) is the lab's real packages_dir, read on each deploy."""
    digest = lab.package_digests["1.3.9"]
    params = {
        "Version": "1.3.9",
        "Sha256": digest,
        "PackageDir": lab.host_package_dir(lab_host),
        "ReleasesRoot": "D:\\MCMS\\releases",
        "KeepCount": 5,
    }
    lab.package_path("1.3.9").unlink()
    assert "is not reachable" in lab.apply(lab_host, "deploy-release", params)["error"]

    build_package_store(lab.packages_dir, ["1.3.9"])
    assert lab.apply(lab_host, "deploy-release", params)["copied"] is True


def test_package_store_has_a_zip_and_its_sha256_for_every_version(lab: Lab) -> None:
    versions = {v for spec in demo_hosts() for v in spec.releases}
    for version in versions:
        package = lab.package_path(version)
        digest, _, name = (lab.packages_dir / f"{package.name}.sha256").read_text().partition("  ")
        assert hashlib.sha256(package.read_bytes()).hexdigest() == digest
        assert name.strip() == f"MCMS_Setup_{version}.zip"
        with zipfile.ZipFile(package) as archive:
            assert archive.read("VERSION").decode().strip() == version
            assert archive.read("Worker/VERSION").decode().strip() == version
            assert "Worker/MCMS.Worker.exe" in archive.namelist()


def test_packages_are_identical_across_labs(tmp_path: Path, lab: Lab) -> None:
    """Deterministic zips: a version's digest does not depend on when the lab started."""
    with Lab([LabHostSpec("other01", "Lab")], tmp_path / "other") as other:
        assert other.package_digests["1.4.2"] == lab.package_digests["1.4.2"]


def test_powershell_double_binds_parameters_against_the_received_param_block() -> None:
    host = SimHost.from_spec(LabHostSpec("web01", "Lab"))
    script = compose("web01", "echo", {"Text": "hi"}).replace("[string]$Text", "[string]$Other")
    run = run_script(host, script.encode("ascii"))

    assert run.exit_code == 1
    assert "cannot be found that matches parameter name 'Text'" in json.loads(run.stdout)["error"]


def test_powershell_double_refuses_non_ascii_stdin() -> None:
    host = SimHost.from_spec(LabHostSpec("web01", "Lab"))
    run = run_script(host, "# mcms-op: echo\n‘x’".encode())
    assert run.exit_code == 1 and "code page" in json.loads(run.stdout)["error"]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.slow
def test_demo_cli_serves_the_fixed_ports_and_stops_on_sigterm(tmp_path: Path) -> None:
    ports = [DEMO_CONTROL_PORT, 15985, 15986, 15987, 15988, 18080, 18081, 18082, 18083]
    ports += [18091, 18092, 18093]
    if not all(_port_free(p) for p in ports):
        pytest.skip("a demo lab already runs on this machine")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab", "--demo", "--root", str(tmp_path / "lab")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert proc.stdout is not None
        banner = [proc.stdout.readline() for _ in range(5)]
        assert "control API http://127.0.0.1:15900" in banner[0]
        assert "http://127.0.0.1:15985/wsman" in banner[1] and "18081" in banner[1]
        assert "pair prod" in banner[4] and "http://127.0.0.1:15988/wsman" in banner[4]
        assert "public http://127.0.0.1:18080" in banner[4]
        assert "MCMS.Api http://127.0.0.1:18091" in banner[1]
        for port in (18083, 18093, 18080):
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                pass
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "lab stopped" in out
    assert all(_port_free(p) for p in ports)
