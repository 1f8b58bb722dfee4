"""The `chat` fixture: the whole bot, as Teams and the servers see it, on loopback.

The real aiohttp app and CloudAdapter receive activities built from recorded Teams payloads;
replies go to a fake Bot Connector; commands reach the simulated lab over real WinRM and
HTTP. Tests read like a conversation: `await chat.say("smoke Lab")`, then `chat.cards[-1]`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.server import EXECUTOR_KEY, QUEUE_KEY, build_app
from bot.services import Runtime, open_runtime
from bot.teams.outbound_queue import RetryPolicy
from commands.config import Config
from tests.lab_dr import point_dr_at_lab
from tests.lab_pairs import point_pairs_at_lab
from tests.teams_factory import ALEX, TENANT, User, make_invoke, make_message

if TYPE_CHECKING:
    from adapters.store import Store
    from adapters.store.rows import Request
    from commands.context import GroupMembership
    from lab.core import Lab
    from tests.fake_connector import ConnectorCall, FakeConnector

pytest_plugins = [
    "tests.fake_connector",
    "tests.jwt_fixtures",
    "tests.lab_fixtures",
    "tests.pg_fixtures",
    "tests.tls_fixtures",
]

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / "lab" / "demo-bot.toml"
FAST_TIMEOUTS = {
    "preflight_s": 4,
    "stop_s": 3,
    "start_s": 3,
    "deploy_s": 10,
    "smoke_s": 4,
    "precheck_s": 4,
    "restore_s": 6,
}
ADAPTIVE = "application/vnd.microsoft.card.adaptive"

MEGAN = User("Megan Bowen", "00000000-0000-0000-0000-0000000000021", id="user-id-1")
# Approver only, and only for InternalProd: proves roles are per role AND per environment.
ADELE = User("Adele Vance", "00000000-0000-0000-0000-0000000000022", id="user-id-2")
STRANGER = User("Nobody Known", "00000000-0000-0000-0000-0000000000099", id="user-id-9")
FOREIGN_TENANT = "99999999-0000-0000-0000-000000000009"
# The audit chain's HMAC key in tests (MCMS_AUDIT_KEY); verify(dir, [AUDIT_KEY_BYTES]).
AUDIT_KEY = "test-audit-key-0123456789abcdef0123456789"
AUDIT_KEY_BYTES = AUDIT_KEY.encode()


def paths_under(root: Path) -> dict[str, str]:
    """The config's [paths], every file of the bot under `root`."""
    return {
        "database": str(root / "var" / "mcms-bot.db"),
        "audit_dir": str(root / "logs" / "deploy" / "notifications"),
        "app_logs_dir": str(root / "logs" / "app"),
        "smoke_logs_dir": str(root / "artifacts" / "offline" / "logs"),
        "timeline_dir": str(root / "docs" / "logs"),
    }


ConfigEdit = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class ChatSetup:
    """What one test changes in the `chat` fixture (`@pytest.mark.parametrize("chat",
    [ChatSetup(...)], indirect=True)`): `tweak` edits the raw config after the module's
    `config_edit`; `groups` replaces the group membership lookup (e.g. Graph on loopback)."""

    tweak: ConfigEdit | None = None
    groups: GroupMembership | None = None


def lab_config(lab: Lab, tmp_path: Path, edit: ConfigEdit | None = None) -> Config:
    """The demo config, pointed at this lab's ephemeral ports and at files under tmp_path;
    `edit` may change the raw TOML data before it is validated."""
    raw: dict[str, Any] = tomllib.loads(DEMO_CONFIG.read_text(encoding="utf-8"))
    for name, env in raw["environments"].items():
        host = lab.host_for(name)
        env["package_store"] = str(lab.packages_dir)
        for h in env["hosts"]:
            h["name"] = host
            h["winrm_url"] = lab.winrm_url(host)
        # Short deadlines keep failure tests fast; the lab answers in milliseconds.
        env["timeouts"] = dict(FAST_TIMEOUTS)
        env["disk_margin_mb"] = 1
        for check in env["smoke"]:
            path = check["url"].split("/", 3)[3]
            check["url"] = f"{lab.check_base(host, check['name'])}/{path}"
    point_pairs_at_lab(raw, lab)
    point_dr_at_lab(raw, lab)
    raw["paths"] = paths_under(tmp_path)
    # Production's two-person rule, as in docs/config.example.toml.
    raw["environments"]["InternalProd"]["approval"]["self_approval"] = False
    raw["people"].append(
        {
            "name": ADELE.name,
            "aad_object_id": ADELE.aad_object_id,
            "roles": ["approver"],
            "environments": ["InternalProd"],
        }
    )
    if edit is not None:
        edit(raw)
    return Config.model_validate(raw)


class ShiftableClock:
    """The real UTC clock, plus an offset a test can advance (expiry without waiting)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta)


@dataclass
class Chat:
    """Say things as a Teams user; read what the bot posted to the connector."""

    client: TestClient[Any, Any]
    connector: FakeConnector
    runtime: Runtime
    lab: Lab
    config: Config
    clock: ShiftableClock
    http_statuses: list[int] = field(default_factory=list)

    async def say(
        self,
        text: str,
        *,
        user: User = ALEX,
        tenant: str = TENANT,
        conversation_type: str = "personal",
        conversation_id: str | None = None,
    ) -> ConnectorCall:
        """Send one message; returns the bot's reply (exactly one is expected)."""
        activity = make_message(
            text,
            user=user,
            tenant=tenant,
            conversation_type=conversation_type,  # type: ignore[arg-type]
            service_url=self.connector.url,
            conversation_id=conversation_id,
        )
        response = await self.client.post("/api/messages", json=activity)
        self.http_statuses.append(response.status)
        assert response.status < 300, await response.text()
        # The reply is POSTed to .../activities/<the message's id>; a run may post meanwhile.
        for _ in range(200):
            replies = [
                c
                for c in self.connector.activities
                if c.method == "POST" and c.activity_id == activity["id"]
            ]
            if replies:
                break
            await asyncio.sleep(0.01)
        assert len(replies) == 1, f"expected one reply to {text!r}, got {len(replies)}"
        return replies[0]

    @property
    def replies(self) -> list[ConnectorCall]:
        return [c for c in self.connector.activities if c.method == "POST"]

    @property
    def cards(self) -> list[dict[str, Any]]:
        out = []
        for call in self.replies:
            for att in call.body.get("attachments") or []:
                if att.get("contentType") == ADAPTIVE:
                    out.append(att["content"])
        return out

    def winrm_requests(self) -> int:
        return sum(self.lab.winrm_requests(h) for h in [*self.lab.hosts, *self.lab.routers])

    @property
    def store(self) -> Store:
        return self.runtime.store

    async def click(
        self,
        verb: str,
        card: dict[str, Any],
        *,
        user: User = ALEX,
        tenant: str = TENANT,
        data: dict[str, Any] | None = None,
        reply_to_id: str | None = None,
    ) -> dict[str, Any]:
        """Click a card's button (Action.Execute); returns the invoke response body."""
        action = next(a for a in card.get("actions", []) if a.get("verb") == verb)
        sent = dict(action["data"]) if data is None else data
        activity = make_invoke(
            verb,
            sent,
            reply_to_id=reply_to_id or self.card_message_id(card),
            user=user,
            tenant=tenant,
            service_url=self.connector.url,
        )
        response = await self.client.post("/api/messages", json=activity)
        self.http_statuses.append(response.status)
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body

    def card_message_id(self, card: dict[str, Any]) -> str:
        """The id the connector gave the message that carries `card`."""
        for call in self.replies:
            for att in call.body.get("attachments") or []:
                if att.get("content") == card and call.assigned_id:
                    return call.assigned_id
        raise AssertionError("that card was never posted")

    async def wait_request(self, request_id: str, *states: str, timeout: float = 20) -> Request:
        """Wait until the request reaches one of `states`; then until chat is quiet."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            request = await self.store.get_request(request_id)
            idle = self.client.server.app[EXECUTOR_KEY].running == 0
            if request is not None and request.state in states and idle:
                break
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{request_id} stuck in {request and request.state}")
            await asyncio.sleep(0.05)
        await self.settle()
        return request

    async def eventually(self, check: Callable[[], object], timeout: float = 5) -> None:
        """Wait until `check()` is truthy (work done by background tasks), else fail."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not check():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"not true within {timeout} s")
            await asyncio.sleep(0.02)
        await self.settle()

    async def settle(self) -> None:
        """Wait until every queued outbound message was delivered."""
        await self.client.server.app[QUEUE_KEY].drain()

    def puts(self, activity_id: str) -> list[ConnectorCall]:
        return [
            c
            for c in self.connector.activities
            if c.method == "PUT" and c.activity_id == activity_id
        ]


@asynccontextmanager
async def open_chat(
    lab: Lab,
    connector: FakeConnector,
    config: Config,
    policy: RetryPolicy | None = None,
    prepare: Callable[[Runtime], Awaitable[Runtime]] | None = None,
) -> AsyncIterator[Chat]:
    """The bot on `config` (files where its paths say), talking to `lab` and `connector`.

    `prepare` may swap adapters for test twins before the app is built (fault injection).
    """
    clock = ShiftableClock()
    runtime = await open_runtime(config, clock=clock)
    if prepare is not None:
        runtime = await prepare(runtime)
    # Fast pacing keeps the suite quick; tests/teams/test_outbound.py proves the real pacing.
    policy = policy or RetryPolicy(min_interval_s=0.02, backoff_base_s=0.05, retry_after_cap_s=2)
    app = build_app(runtime, sweep_s=0.2, outbound_policy=policy)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield Chat(client, connector, runtime, lab, config, clock)
    finally:
        await client.close()
        await runtime.close()


@pytest.fixture
def lab_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lab's WinRM credentials and the audit key in the environment, and no Teams app id
    (local mode)."""
    from lab.demo import DEMO_PASSWORD, DEMO_USERNAME

    monkeypatch.setenv("MCMS_LAB_WINRM_USER", DEMO_USERNAME)
    monkeypatch.setenv("MCMS_LAB_WINRM_PASSWORD", DEMO_PASSWORD)
    monkeypatch.setenv("MCMS_AUDIT_KEY", AUDIT_KEY)
    for name in ("MCMS_BOT_APP_ID", "MCMS_BOT_APP_PASSWORD", "MCMS_BOT_APP_TENANT_ID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def config_edit() -> ConfigEdit | None:
    """Override in a test module to change the `chat` fixture's config (raw TOML data)."""
    return None


@pytest.fixture
async def chat(
    lab: Lab,
    fake_connector: FakeConnector,
    tmp_path: Path,
    lab_credentials: None,
    config_edit: ConfigEdit | None,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Chat]:
    setup: ChatSetup = getattr(request, "param", None) or ChatSetup()

    def edits(raw: dict[str, Any]) -> None:
        for edit in (config_edit, setup.tweak):
            if edit is not None:
                edit(raw)

    async def prepare(runtime: Runtime) -> Runtime:
        if setup.groups is not None:
            runtime.services = dataclasses.replace(runtime.services, groups=setup.groups)
        return runtime

    config = lab_config(lab, tmp_path, edits)
    async with open_chat(lab, fake_connector, config, prepare=prepare) as opened:
        yield opened


def card_texts(card: dict[str, Any]) -> list[str]:
    """Every visible text of a card, flattened in reading order (TextBlocks, facts, cells)."""
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "TextBlock":
                out.append(str(node.get("text", "")))
            if node.get("type") == "FactSet":
                out.extend(f"{f['title']}: {f['value']}" for f in node.get("facts", []))
            for value in node.values():
                if isinstance(value, list | dict):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(card.get("body", []))
    return out


def shown(text: str) -> str:
    """`text` as Teams shows it: markdown backslash escapes (cards.plain) removed."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text)


def table_rows(card: dict[str, Any]) -> list[list[str]]:
    """The rows of every Table in a card (header rows included), as lists of cell texts."""
    rows: list[list[str]] = []
    for element in card.get("body", []):
        if element.get("type") == "Table":
            for row in element["rows"]:
                rows.append(
                    [" ".join(i.get("text", "") for i in cell["items"]) for cell in row["cells"]]
                )
    return rows
