"""The `alert_bot` fixture (see tests/alert_helpers.py for what it gives).

Use it from a test module with `pytest_plugins = ["tests.alert_fixtures"]`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.alert_helpers import (
    GRAFANA_TOKEN,
    OPSGENIE_KEY,
    OPSGENIE_KEY_ENV,
    AlertBot,
    watch_config,
)
from tests.conftest import AUDIT_KEY, lab_config

if TYPE_CHECKING:
    from lab.core import Lab
    from tests.fake_connector import FakeConnector
    from tests.fake_opsgenie import FakeOpsGenie

pytest_plugins = ["tests.fake_opsgenie"]


@pytest.fixture
async def alert_bot(
    lab: Lab,
    fake_connector: FakeConnector,
    fake_opsgenie: FakeOpsGenie,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[AlertBot]:
    from lab.demo import DEMO_PASSWORD, DEMO_USERNAME

    monkeypatch.setenv("MCMS_LAB_WINRM_USER", DEMO_USERNAME)
    monkeypatch.setenv("MCMS_LAB_WINRM_PASSWORD", DEMO_PASSWORD)
    monkeypatch.setenv(OPSGENIE_KEY_ENV, OPSGENIE_KEY)
    monkeypatch.setenv("MCMS_GRAFANA_TOKEN", GRAFANA_TOKEN)
    monkeypatch.setenv("MCMS_AUDIT_KEY", AUDIT_KEY)
    for name in ("MCMS_BOT_APP_ID", "MCMS_BOT_APP_PASSWORD", "MCMS_BOT_APP_TENANT_ID"):
        monkeypatch.delenv(name, raising=False)
    config = watch_config(lab_config(lab, tmp_path), fake_opsgenie.url)
    bot = AlertBot(lab, fake_connector, fake_opsgenie, config)
    try:
        yield bot
    finally:
        await bot.stop()
