"""Wire the concrete adapters to the commands: the one place that knows both sides."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adapters.audit import AuditLog
from adapters.audit.chain import MIN_KEY_LENGTH
from adapters.entra import GraphGroups
from adapters.errors import AuthenticationFailed
from adapters.router.arr import ArrRouter
from adapters.router.farm import TrafficRouter
from adapters.smoke import CheckResult, run_checks
from adapters.smoke_log import write_smoke_log
from adapters.store import Store
from adapters.store.owners import ProcessMark
from adapters.timeline import Timeline
from adapters.winrm.hostops import HostOps, RemoteShell
from adapters.winrm.scripts import JsonValue
from adapters.winrm.transport import WinRMShell
from bot.logs import make_redactor
from commands.bluegreen.flows import BlueGreenFlows
from commands.config import Config, Host, PairRouter, secret
from commands.context import GroupMembership, Services
from commands.dr.checks import DrChecks
from commands.groups import ConfigGroups


def utc_now() -> datetime:
    return datetime.now(UTC)


class _NoCredentialsShell:
    """Stands in for a host whose credential env vars are unset: every call fails clearly,
    before any network traffic."""

    def __init__(self, host: Host, missing: list[str]) -> None:
        self.host = host.name
        self._missing = missing

    async def run(
        self, op: str, params: Mapping[str, JsonValue], *, timeout_s: float
    ) -> dict[str, Any]:
        raise AuthenticationFailed(
            f"{self.host}: no WinRM credentials — set {' and '.join(self._missing)} "
            "in the bot's environment and restart it",
            host=self.host,
        )


def remote_shell(host: Host) -> RemoteShell:
    """The WinRM shell to a configured host, or one that fails clearly without credentials."""
    user, password = secret(host.username_env), secret(host.password_env)
    if user is None or password is None:
        missing = [
            n for n, v in ((host.username_env, user), (host.password_env, password)) if not v
        ]
        return _NoCredentialsShell(host, missing)
    return WinRMShell(
        str(host.winrm_url),
        host.transport,
        user,
        password,
        operation_timeout_s=host.operation_timeout_s,
        server_cert_validation=host.server_cert_validation,
        ca_trust_path=str(host.ca_trust_path) if host.ca_trust_path else None,
        host=host.name,
    )


def host_ops(host: Host) -> HostOps:
    return HostOps(remote_shell(host), host=host.name)


def traffic_router(router: PairRouter) -> TrafficRouter:
    """The router of a pair; ARR is the only kind so far (config checks `kind`)."""
    return ArrRouter(remote_shell(router.host), router.farm, host=router.host.name)


class AuditKeyMissing(ValueError):
    """The audit key is not in the environment (or too short); the message names the variable."""


def audit_key(config: Config) -> bytes:
    """The key the audit chain is written with, from `audit.key_env`; AuditKeyMissing if unset."""
    name = config.audit.key_env
    value = secret(name)
    if value is None or len(value) < MIN_KEY_LENGTH:
        what = "not set" if value is None else f"shorter than {MIN_KEY_LENGTH} characters"
        raise AuditKeyMissing(
            f"{name} {what}: the audit chain is keyed (HMAC-SHA-256); put a random key of "
            f"{MIN_KEY_LENGTH}+ characters there (e.g. `openssl rand -hex 32`) and keep it: "
            "`audit verify` needs it"
        )
    return value.encode("utf-8")


def redactor_for(config: Config) -> Callable[[str], str]:
    return make_redactor(v for n in config.secret_env_names() if (v := secret(n)) is not None)


@dataclass
class Runtime:
    """The opened adapters, closed together at shutdown."""

    services: Services
    store: Store
    timeline: Timeline
    # Resolved folders the retention pass prunes (paths.smoke_logs_dir, paths.audit_dir).
    smoke_dir: Path | None = None
    audit_dir: Path | None = None
    # This process's owner token: its runs are not "interrupted" by another process's start.
    owner: ProcessMark | None = None

    async def close(self) -> None:
        await self.store.close()
        if self.owner is not None:
            self.owner.close()
        groups = self.services.groups
        if isinstance(groups, GraphGroups):
            await groups.close()


def group_membership(config: Config) -> GroupMembership:
    """Microsoft Graph in teams mode when some environment names approver groups (with the
    bot's own app credentials); the config's [[groups]] otherwise."""
    wanted = any(e.approval.approver_groups for e in config.environments.values())
    teams = config.teams
    client_id, client_secret = secret(teams.app_id_env), secret(teams.app_password_env)
    if config.server.mode == "local" or not wanted or not client_id or not client_secret:
        return ConfigGroups(config)
    return GraphGroups(
        client_id=client_id,
        client_secret=client_secret,
        default_tenant=secret(teams.app_tenant_id_env),
        login_url=str(teams.login_url),
        graph_url=str(teams.graph_url),
        cache_s=teams.group_cache_s,
    )


async def open_runtime(
    config: Config, base: Path | None = None, clock: Callable[[], datetime] = utc_now
) -> Runtime:
    def at(path: Path) -> Path:
        return path if path.is_absolute() or base is None else base / path

    redact = redactor_for(config)
    key = audit_key(config)  # before anything is opened: nothing to close when it is missing
    settings = config.store
    instance = settings.instance_id or socket.gethostname()
    # This process's owner token, written on its runs and locks (and leased on PostgreSQL);
    # its lock file lives beside paths.database, which stays local even with [store] url.
    owner = ProcessMark(at(config.paths.database), instance)
    try:
        store = await Store.open(
            settings.url or at(config.paths.database),
            owner=owner.token,
            marks=at(config.paths.database),
            lease_s=settings.lease_s,
        )
    except BaseException:
        owner.close()
        raise
    audit_dir = at(config.paths.audit_dir)
    if settings.url is not None:
        # Instances sharing a database keep one chain each (one writer per chain, no lock
        # across machines): <audit_dir>/<instance id>/; `audit verify` checks them all.
        audit_dir = audit_dir / instance
    audit = AuditLog(audit_dir, config.tz, redact=redact, key=key)
    # A log this key did not write last (first keyed start, a rotation) says so first.
    await asyncio.to_thread(audit.ensure_keyed)
    timeline = Timeline(at(config.paths.timeline_dir), config.tz)
    smoke_dir = at(config.paths.smoke_logs_dir)

    def smoke_log(environment: str, results: Sequence[CheckResult], when: datetime) -> Path:
        return write_smoke_log(smoke_dir, environment, results, when, config.tz)

    services = Services(
        config=config,
        audit=audit,
        store=store,
        timeline=timeline,
        probe=run_checks,
        hosts=host_ops,
        write_smoke_log=smoke_log,
        now=clock,
        routers=traffic_router,
        checks=DrChecks(smoke_dir / "dr"),
        groups=group_membership(config),
        bluegreen=BlueGreenFlows(),
    )
    return Runtime(services, store, timeline, smoke_dir, audit_dir, owner)
