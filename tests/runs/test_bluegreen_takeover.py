"""kill -9 of the instance driving a blue/green switch, with a second instance on the same
PostgreSQL: the survivor's lease loop takes the flow over once the dead one's lease has run
out — no restart of anything — marks it interrupted, reads the router and tells the
conversation which slot is live; nothing is switched by the takeover (the lab's farm shows
it) and the pair is free again.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.core import Lab
from tests.fake_connector import FakeConnector
from tests.lab_fixtures import write_lab_config
from tests.runs.test_bluegreen_kill import drive_to_the_drain, farm, wait_for
from tests.runs.test_restart import BotProcess, _free_port
from tests.runs.test_two_instances import LEASE_S, fetch

pytestmark = pytest.mark.slow


def instance(lab: Lab, tmp_path: Path, name: str, url: str) -> BotProcess:
    port = _free_port()
    store = f'\n[store]\nurl = "{url}"\ninstance_id = "{name}"\nlease_s = {LEASE_S}\n'
    config = write_lab_config(lab, tmp_path / name, port=port, extra=store)
    return BotProcess(config, port, tmp_path / f"{name}.log")


async def test_a_survivor_takes_over_a_flow_whose_instance_died_mid_switch(
    lab: Lab, fake_connector: FakeConnector, tmp_path: Path, pg_url: str
) -> None:
    a = instance(lab, tmp_path, "bot-a", pg_url)
    b = instance(lab, tmp_path, "bot-b", pg_url)
    router = lab.router_for("prod")
    lab.hold(router, "arr-wait-drain")  # the drain wait stays on the router: a dies in it
    try:
        await a.start()
        await b.start()
        await drive_to_the_drain(a, fake_connector, lab, router, wait_s=60)
        (row,) = await fetch(pg_url, "SELECT id, state FROM bluegreen")
        assert row["state"] == "switching"

        a.kill()
        lab.release(router)  # the script finishes on the router, whoever waits for it
        after_kill = farm(lab)
        told_from = len(fake_connector.calls)
        told = await wait_for(
            fake_connector, told_from,
            lambda c: c.method == "POST" and row["id"] in c.text and "Interrupted" in c.text,
            "the survivor's message about the interrupted flow", timeout=60,
        )  # fmt: skip
        assert "when another instance took it over" in told.text, told.text
        assert "InternalStage is live" in told.text and "prod-web01 is draining" in told.text
        assert "`switchback prod`" in told.text
        (after,) = await fetch(pg_url, "SELECT state, active, owner FROM bluegreen")
        assert (after["state"], after["active"]) == ("interrupted", 0)
        assert after["owner"].startswith("bot-b"), after["owner"]
        assert farm(lab) == after_kill  # nothing switched by the takeover
    finally:
        await b.stop()
        await a.stop()
