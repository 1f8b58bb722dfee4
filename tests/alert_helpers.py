"""A bot whose watcher runs every few hundred milliseconds, and that can be restarted.

`AlertBot` (made by the `alert_bot` fixture in tests/alert_fixtures.py) runs the demo config
against the lab (like the `chat` fixture) with the Lab environment watched fast, OpsGenie
pointed at a fake on loopback, and a Grafana token set. `await bot.start()` returns a
`Chat`; `await bot.restart()` stops the app (its watcher and queue drain as at a real
shutdown) and starts a new one on the same database and files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp.test_utils import TestClient, TestServer

from bot.server import WATCHER_KEY, build_app
from bot.services import open_runtime
from bot.teams.outbound_queue import RetryPolicy
from bot.watch.watcher import Watcher, WatchRun
from commands.config import Alerts, Config, OpsGenie, Watch
from tests.conftest import Chat, ShiftableClock

if TYPE_CHECKING:
    from lab.core import Lab
    from tests.fake_connector import FakeConnector
    from tests.fake_opsgenie import FakeOpsGenie

OPSGENIE_KEY_ENV = "MCMS_TEST_OPSGENIE_KEY"
OPSGENIE_KEY = "test-genie-key"
GRAFANA_TOKEN = "grafana-test-token"
INTERVAL_S = 0.3
ALERT_VERB = "start_rollback"


def fast_watch(**overrides: Any) -> Watch:
    """A Watch below the config's 5 s floor: model_copy skips validation, tests only."""
    values = {"interval_s": INTERVAL_S, "app_pool_interval_s": 0.5, **overrides}
    return Watch().model_copy(update=values)


def watch_config(
    base: Config,
    opsgenie_url: str | None,
    *,
    watched: tuple[str, ...] = ("Lab",),
    watch: Watch | None = None,
    opsgenie: dict[str, Any] | None = None,
) -> Config:
    environments = {
        name: env.model_copy(
            update={"watch": (watch or fast_watch()) if name in watched else Watch(enabled=False)}
        )
        for name, env in base.environments.items()
    }
    alerts = Alerts()
    if opsgenie_url is not None:
        settings: dict[str, Any] = {
            "base_url": opsgenie_url,
            "api_key_env": OPSGENIE_KEY_ENV,
            "priority": {"Lab": "P4", "InternalProd": "P1"},
            "tags": ["mcms", "playbook"],
            "timeout_s": 2,
            "attempts": 3,
            "backoff_s": 0.05,
            **(opsgenie or {}),
        }
        alerts = Alerts(opsgenie=OpsGenie.model_validate(settings))
    return base.model_copy(update={"environments": environments, "alerts": alerts})


@dataclass
class AlertBot:
    lab: Lab
    connector: FakeConnector
    opsgenie: FakeOpsGenie
    config: Config
    clock: ShiftableClock = field(default_factory=ShiftableClock)
    chat: Chat | None = None

    async def start(self) -> Chat:
        runtime = await open_runtime(self.config, clock=self.clock)
        policy = RetryPolicy(min_interval_s=0.02, backoff_base_s=0.05, retry_after_cap_s=2)
        app = build_app(runtime, sweep_s=0.2, outbound_policy=policy)
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        self.chat = Chat(client, self.connector, runtime, self.lab, self.config, self.clock)
        return self.chat

    async def stop(self) -> None:
        if self.chat is not None:
            await self.chat.client.close()
            await self.chat.runtime.close()
            self.chat = None

    async def restart(self) -> Chat:
        await self.stop()
        return await self.start()

    @property
    def watcher(self) -> Watcher:
        assert self.chat is not None
        return self.chat.client.server.app[WATCHER_KEY]

    async def runs_until(
        self, done: Callable[[list[WatchRun]], bool], timeout: float = 10
    ) -> list[WatchRun]:
        return await self.watcher.wait_for(done, timeout)

    def alert_cards(self) -> list[dict[str, Any]]:
        """Alert cards as posted (new messages), not edits."""
        assert self.chat is not None
        return [
            c
            for c in self.chat.cards
            if any(a.get("verb") == ALERT_VERB for a in c.get("actions", []))
        ]


def lab_runs(runs: list[WatchRun], environment: str = "Lab") -> list[WatchRun]:
    return [r for r in runs if r.environment == environment]
