"""The package share: status says what each host's share lacks, preflight refuses a run
whose package is not there as verified, and a sync step copies it first when configured.

A host is given a share of its own that lags behind the store (`Lab.use_own_share`); each
test reads that folder itself — the bytes the host would deploy — not the bot's words.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from lab.core import Lab
from tests.conftest import ChatSetup, card_texts, open_chat, shown
from tests.farm import farm_config, farm_hosts
from tests.runs.failing import fails_leaving_lab_as_before
from tests.runs.test_preflight import mutations
from tests.runs.test_rollback_flow import audit_events, request_rollback

if TYPE_CHECKING:
    from tests.conftest import Chat
    from tests.fake_connector import FakeConnector

pytestmark = pytest.mark.slow

NEWEST = "1.4.3"  # in the store, on no Lab host (lab.demo.DEMO_EXTRA_PACKAGES)
SOURCE = "\\\\files\\mcms\\offline"  # the store as the lab's hosts reach it


def syncing(raw: dict[str, Any]) -> None:
    raw["environments"]["Lab"]["package_source_dir"] = SOURCE


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def status_texts(chat: Chat) -> str:
    reply = await chat.say("status Lab")
    return shown(" ".join(card_texts(reply.body["attachments"][0]["content"])))


# --- status --------------------------------------------------------------------------------


async def test_status_names_the_version_a_hosts_share_lacks_or_holds_differently(
    chat: Chat,
) -> None:
    host = chat.lab.host_for("Lab")
    share = chat.lab.use_own_share(host, ["1.4.1", "1.4.2"])

    texts = await status_texts(chat)
    assert f"share stale: {NEWEST} missing on {host}" in texts
    assert "copy the package there before a run (or set package_source_dir)" in texts

    (share / f"MCMS_Setup_{NEWEST}.zip").write_bytes(b"an older build of the same version")
    texts = await status_texts(chat)
    assert f"share stale: {NEWEST} differs on {host} (SHA-256" in texts

    (share / f"MCMS_Setup_{NEWEST}.zip").write_bytes(chat.lab.package_path(NEWEST).read_bytes())
    texts = await status_texts(chat)
    assert f"{NEWEST} (newest) on every host, SHA-256 verified on each" in texts
    assert "share stale" not in texts


# --- preflight, without a sync -------------------------------------------------------------


async def test_preflight_refuses_a_run_whose_package_is_not_on_the_share(chat: Chat) -> None:
    host = chat.lab.host_for("Lab")
    chat.lab.use_own_share(host, ["1.4.2"])

    run = await fails_leaving_lab_as_before(chat, "unchanged", f"deploy Lab {NEWEST}")

    assert mutations(chat.lab, host) == []
    assert not any(c.op == "sync-package" for c in chat.lab.calls(host))
    assert f"MCMS_Setup_{NEWEST}.zip' is not reachable from {host}" in (run.error or "")


# --- the sync step -------------------------------------------------------------------------


@pytest.mark.parametrize("chat", [ChatSetup(tweak=syncing)], indirect=True, ids=["sync"])
async def test_a_sync_step_copies_the_verified_package_before_anything_stops(
    chat: Chat,
) -> None:
    host = chat.lab.host_for("Lab")
    share = chat.lab.use_own_share(host, ["1.4.2"])
    card, request_id = await request_rollback(chat, f"deploy Lab {NEWEST}")
    texts = shown(" ".join(card_texts(card)))
    assert f"1. Sync package {NEWEST} from {SOURCE} to every host's package folder" in texts
    await chat.click("approve", card)

    request = await chat.wait_request(request_id, "succeeded", "failed", timeout=60)

    assert request.state == "succeeded", request.reason
    copied = share / f"MCMS_Setup_{NEWEST}.zip"
    assert digest(copied) == chat.lab.package_digests[NEWEST]
    assert not list(share.glob("*.sync-tmp"))
    ops = [c.op for c in chat.lab.calls(host)]
    first_change = min(i for i, op in enumerate(ops) if op.endswith("-control"))
    assert ops.index("sync-package") < ops.index("preflight") < first_change
    steps = {e["step"]: e["detail"] for e in audit_events(chat) if e["event"] == "StepSucceeded"}
    assert steps["sync_package"] == f"{host}: copied (verified)"
    assert {s["release"] for s in chat.lab.state(host)["sites"].values()} == {NEWEST}


@pytest.mark.parametrize("chat", [ChatSetup(tweak=syncing)], indirect=True, ids=["sync"])
async def test_a_copy_that_does_not_verify_on_the_host_fails_before_anything_stops(
    chat: Chat,
) -> None:
    host = chat.lab.host_for("Lab")
    share = chat.lab.use_own_share(host, ["1.4.2"])
    chat.lab.set_fault(host, "share", "corrupt_copy")

    await fails_leaving_lab_as_before(chat, "unchanged", f"deploy Lab {NEWEST}")

    assert mutations(chat.lab, host) == []
    # The damaged copy was never renamed in: the share is as it was.
    assert sorted(p.name for p in share.iterdir()) == [
        "MCMS_Setup_1.4.2.zip",
        "MCMS_Setup_1.4.2.zip.sha256",
    ]
    failed = [e for e in audit_events(chat) if e["event"] == "StepFailed"]
    assert [e["step"] for e in failed] == ["sync_package"]
    assert "the source or the copy is damaged" in failed[0]["detail"]


async def test_the_sync_copies_to_every_host_that_lacks_the_package_at_once(
    tmp_path: Path, fake_connector: FakeConnector, lab_credentials: None
) -> None:
    names = ["farm-web01", "farm-web02", "farm-web03"]
    with Lab(farm_hosts({"Farm": names}), tmp_path / "lab", package_versions=[NEWEST]) as lab:
        shares = {
            "farm-web01": lab.use_own_share("farm-web01", ["1.4.2"]),
            "farm-web02": lab.use_own_share("farm-web02", ["1.4.2", NEWEST]),
            "farm-web03": lab.use_own_share("farm-web03", ["1.4.2"]),
        }
        config = farm_config(lab, tmp_path, {"Farm": names}, extra={"package_source_dir": SOURCE})
        async with open_chat(lab, fake_connector, config) as chat:
            card, request_id = await request_rollback(chat, f"deploy Farm {NEWEST}")
            for name in names:
                lab.hold(name, "sync-package")
            await chat.click("approve", card)
            # Every host has started its sync before any has finished: all at once.
            await chat.eventually(lambda: all(lab.held(n) for n in names), timeout=15)
            for name in names:
                lab.release(name)
            request = await chat.wait_request(request_id, "succeeded", "failed", timeout=60)
            assert request.state == "succeeded", request.reason
            steps = {e["step"]: e for e in audit_events(chat) if e["event"] == "StepSucceeded"}
            assert steps["sync_package"]["detail"] == (
                "farm-web01: copied (verified); farm-web02: already there (SHA-256 matches); "
                "farm-web03: copied (verified)"
            )
        for name, share in shares.items():
            assert digest(share / f"MCMS_Setup_{NEWEST}.zip") == lab.package_digests[NEWEST], name
