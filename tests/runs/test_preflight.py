"""Preflight: every check that can fail without changing anything runs before the first stop.

Reproduced in the issue: `rollback Lab 1.3.9` with the lab fault `package=corrupt` stopped
the site, pool and Worker and then failed at the deploy, leaving the service down. Now the
run fails at step 1 "Preflight" with every host's reason, and nothing is stopped.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from adapters.audit import verify
from lab.core import Lab
from lab.demo import API, PORTAL
from lab.model import LabSite
from tests.conftest import AUDIT_KEY_BYTES, card_texts, open_chat, table_rows
from tests.farm import components, farm_config, farm_hosts
from tests.runs.test_rollback_bad_paths import MUTATING_OPS
from tests.runs.test_rollback_flow import audit_events, request_rollback

if TYPE_CHECKING:
    from tests.conftest import Chat
    from tests.fake_connector import FakeConnector


def mutations(lab: Lab, host: str) -> list[str]:
    return [c.op for c in lab.calls(host) if c.op in MUTATING_OPS]


async def test_a_corrupt_package_on_the_host_fails_preflight_and_stops_nothing(
    chat: Chat,
) -> None:
    host = chat.lab.host_for("Lab")
    before = components(chat.lab.state(host))
    chat.lab.set_fault(host, "package", "corrupt")
    card, request_id = await request_rollback(chat, "rollback Lab 1.3.9")
    await chat.click("approve", card)

    request = await chat.wait_request(request_id, "failed", "succeeded")
    assert request.state == "failed"
    run = await chat.store.run_for_request(request_id)
    assert run is not None and run.restore == "unchanged"
    assert mutations(chat.lab, host) == [], "nothing may be stopped before the preflight passes"
    assert components(chat.lab.state(host)) == before
    assert chat.lab.state(host)["serving"]

    final = chat.puts(run.progress_activity_id or "")[-1].body["attachments"][0]["content"]
    texts = " ".join(card_texts(final))
    assert "Failed at step 1 'Preflight on every host" in texts
    assert f"{host}: SHA-256 of 'D:\\MCMS\\packages\\MCMS_Setup_1.3.9.zip' on {host}" in texts
    assert "nothing was stopped or changed" in texts
    assert "Nothing was changed on any host." in texts
    assert [r[2] for r in table_rows(final)[1:3]] == ["❌ failed", "⏭️ skipped"]
    assert await chat.store.lock_holder("Lab") is None
    failed = [e for e in audit_events(chat) if e["event"] == "StepFailed"]
    assert [e["step"] for e in failed] == ["preflight"]
    assert verify(Path(chat.config.paths.audit_dir), [AUDIT_KEY_BYTES]).ok


async def test_preflight_says_every_hosts_reason_at_once(
    tmp_path: Path, fake_connector: FakeConnector, lab_credentials: None
) -> None:
    """Two hosts, two different problems: both are named, neither host is touched."""
    hosts = farm_hosts({"Farm": ["farm-web01", "farm-web02"]})
    # web02 lacks the API site (a host someone built by hand).
    hosts[1] = hosts[1].__class__(
        **{**vars(hosts[1]), "sites": tuple(s for s in hosts[1].sites if s.name != API)}
    )
    with Lab(hosts, tmp_path / "lab", package_versions=["1.3.9"]) as lab:
        lab.set_fault("farm-web01", "disk", "full")
        config = farm_config(lab, tmp_path, {"Farm": ["farm-web01", "farm-web02"]})
        async with open_chat(lab, fake_connector, config) as chat:
            card, request_id = await request_rollback(chat, "rollback Farm 1.3.9")
            await chat.click("approve", card)
            await chat.wait_request(request_id, "failed", "succeeded")
            run = await chat.store.run_for_request(request_id)
            assert run is not None and run.error is not None
            assert "farm-web01: only 0 MB free on the releases volume" in run.error
            assert f"farm-web02: IIS site '{API}' does not exist on farm-web02" in run.error
            for host in ("farm-web01", "farm-web02"):
                assert mutations(lab, host) == []


async def test_a_package_without_a_components_folder_is_refused_before_any_request(
    chat: Chat,
) -> None:
    """The bot reads its own copy of the zip: a release that cannot serve the API site is
    not even planned."""
    store = chat.lab.packages_dir
    path = store / "MCMS_Setup_9.0.0.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("Portal/web.config", "<configuration/>")
        archive.writestr("Worker/MCMS.Worker.exe", "MZ")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (store / "MCMS_Setup_9.0.0.zip.sha256").write_text(f"{digest}  {path.name}\n")

    reply = await chat.say("deploy Lab 9.0.0")

    assert "Package 9.0.0 does not hold folder Api (site MCMS.Api)" in reply.text
    assert "Nothing was requested" in reply.text
    assert not [e for e in audit_events(chat) if e["event"] == "Requested"]


def test_every_demo_site_has_its_own_folder(lab: Lab) -> None:
    """The demo's sites really live in folders of the release (not the release root)."""
    sites = {s.name: s for s in lab.specs[lab.host_for("Lab")].sites}
    assert isinstance(sites[PORTAL], LabSite) and sites[PORTAL].folder == "Portal"
    assert sites[API].folder == "Api"
