"""The bot's configuration: one TOML file, validated by pydantic at start.

Secrets never live in the file: it names the environment variables that hold them
(`*_env` keys), and `secret()` reads them at the moment of use. Every validation error
names its key as a dotted path (`environments.Lab.smoke[0].url`) and says why, so
`mcms-bot check-config` can print them all at once.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AnyHttpUrl,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from commands.config.alerts import (
    Alerts,
    Retention,
)
from commands.config.base import (
    ENV_NAME_PATTERN,
    OBJECT_ID_PATTERN,
    EnvVarName,
    Role,
    _check_env_var,
    _Strict,
    is_loopback_host,
)
from commands.config.dr import BOT_HOST
from commands.config.environment import (
    Environment,
    Host,
)
from commands.config.pair import Pair, pair_problems
from commands.config.scripts import HOSTS


class Person(_Strict):
    """Somebody allowed to talk to the bot, identified by Entra object id (from.aadObjectId)."""

    name: str = Field(min_length=1)
    aad_object_id: str = Field(min_length=1, pattern=OBJECT_ID_PATTERN)
    roles: list[Role] = Field(min_length=1)
    # Environment names, or ["*"] for all of them.
    environments: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    # The login on the bot's host that the break-glass CLI (`mcms-bot rollback ...`) maps to
    # this person; "*" (any login on this machine) only in local mode, for the demo.
    os_user: str | None = Field(default=None, pattern=r"^(\*|[A-Za-z0-9._\\@-]{1,64})$")


class Teams(_Strict):
    app_id_env: EnvVarName = "MCMS_BOT_APP_ID"
    app_password_env: EnvVarName = "MCMS_BOT_APP_PASSWORD"  # noqa: S105 - a variable's name
    app_tenant_id_env: EnvVarName = "MCMS_BOT_APP_TENANT_ID"
    app_type: Literal["SingleTenant", "MultiTenant", "UserAssignedMSI"] = "SingleTenant"
    allowed_tenants: list[str] = Field(min_length=1)
    # Microsoft Graph resolves approver groups (checkMemberGroups) with the bot's own
    # credentials; other clouds have other hosts (graph.microsoft.us...).
    graph_url: AnyHttpUrl = AnyHttpUrl("https://graph.microsoft.com")
    login_url: AnyHttpUrl = AnyHttpUrl("https://login.microsoftonline.com")
    group_cache_s: float = Field(default=300.0, ge=0, le=24 * 3600)

    @field_validator("app_id_env", "app_password_env", "app_tenant_id_env")
    @classmethod
    def _env(cls, v: str) -> str:
        return _check_env_var(v)


class Server(_Strict):
    """The Teams listener. mode = "teams": every request needs a valid Bot Framework token
    (the app id and password must be set, or the bot refuses to start); "local": no
    authentication at all, for the demo and Agents Playground — loopback only."""

    mode: Literal["teams", "local"] = "teams"
    host: str = "127.0.0.1"
    port: int = Field(default=3978, ge=0, le=65535)

    @model_validator(mode="after")
    def _local_is_loopback(self) -> Server:
        if self.mode == "local" and not is_loopback_host(self.host):
            raise ValueError(
                f'mode = "local" accepts every request without a token, so host must be '
                f'loopback (127.0.0.1, ::1 or localhost), not {self.host!r}; use mode = "teams" '
                "to serve Teams"
            )
        return self


class Metrics(_Strict):
    """GET /metrics, on a listener of its own (never the Teams one); a bearer token is
    required when token_env is set, and a non-loopback host requires one."""

    host: str = "127.0.0.1"
    port: int = Field(default=9464, ge=0, le=65535)
    token_env: EnvVarName | None = None

    @field_validator("token_env")
    @classmethod
    def _env(cls, v: str | None) -> str | None:
        return None if v is None else _check_env_var(v)

    @model_validator(mode="after")
    def _exposed_needs_token(self) -> Metrics:
        if not is_loopback_host(self.host) and self.token_env is None:
            raise ValueError(
                f"host {self.host!r} exposes /metrics beyond this machine: set token_env "
                "(scrapers then send Authorization: Bearer <token>), or listen on 127.0.0.1"
            )
        return self


class AuditSettings(_Strict):
    """The audit chain is keyed (HMAC-SHA-256): the key comes from `key_env`; keys used
    before a rotation stay verifiable through `previous_key_envs`."""

    key_env: EnvVarName = "MCMS_AUDIT_KEY"
    previous_key_envs: list[EnvVarName] = Field(default_factory=list, max_length=10)

    @field_validator("key_env")
    @classmethod
    def _env(cls, v: str) -> str:
        return _check_env_var(v)

    @field_validator("previous_key_envs")
    @classmethod
    def _envs(cls, v: list[str]) -> list[str]:
        return [_check_env_var(x) for x in v]


class Group(_Strict):
    """An Entra group by object id. `members` is used in local mode only (no Graph there);
    in teams mode Microsoft Graph answers who is a member."""

    id: str = Field(pattern=OBJECT_ID_PATTERN)
    name: str = ""
    members: list[Annotated[str, Field(pattern=OBJECT_ID_PATTERN)]] = Field(default_factory=list)


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class Logging(_Strict):
    """The application log (logs/app/): its level; `mcms-bot run --log-level` overrides it."""

    level: LogLevel = "INFO"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, v: object) -> object:
        return v.upper() if isinstance(v, str) else v


class Paths(_Strict):
    """Where state and records go; relative paths are resolved against the working directory."""

    database: Path = Path("var/mcms-bot.db")
    audit_dir: Path = Path("logs/deploy/notifications")
    app_logs_dir: Path = Path("logs/app")
    smoke_logs_dir: Path = Path("artifacts/offline/logs")
    timeline_dir: Path = Path("docs/logs")


class StoreSettings(_Strict):
    """Where the state lives: SQLite at `paths.database` (the default: one instance), or a
    PostgreSQL database shared by two or more instances (`url`)."""

    # postgresql://user@host:5432/db — no password here: PGPASSWORD or ~/.pgpass holds it.
    url: str | None = None
    # This instance's name among those sharing the database; unique per running process
    # (default: the host name). A restart under the same name takes its own runs back at once.
    instance_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,64}$")
    # How long an instance's runs, locks and watcher stay its own without renewal (it renews
    # every third of this): after it dies, another instance takes over within this time.
    lease_s: float = Field(default=15.0, ge=3.0, le=600.0)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from urllib.parse import urlsplit

        parts = urlsplit(v)
        if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
            raise ValueError("must be a postgresql://user@host:port/database URL")
        if parts.password:
            raise ValueError(
                "holds a password: leave it out and give it in PGPASSWORD or ~/.pgpass"
            )
        return v


class Config(_Strict):
    timezone: str = "Asia/Seoul"
    server: Server = Server()
    metrics: Metrics = Metrics()
    audit: AuditSettings = AuditSettings()
    paths: Paths = Paths()
    store: StoreSettings = StoreSettings()
    teams: Teams
    environments: dict[str, Environment] = Field(min_length=1)
    people: list[Person] = Field(min_length=1)
    groups: list[Group] = Field(default_factory=list)
    alerts: Alerts = Alerts()
    retention: Retention = Retention()
    # Blue/green slot pairs by name (commands/config/pair.py); none is fine.
    pairs: dict[str, Pair] = Field(default_factory=dict)
    # Windows hosts the DR suites run on (`runs_on` of a runner), reached over WinRM.
    runner_hosts: list[Host] = Field(default_factory=list)
    logging: Logging = Logging()

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r} (use an IANA name like Asia/Seoul)") from exc
        return v

    @field_validator("environments")
    @classmethod
    def _env_names(cls, v: dict[str, Environment]) -> dict[str, Environment]:
        lowered: dict[str, str] = {}
        for name in v:
            if not ENV_NAME_PATTERN.fullmatch(name):
                raise ValueError(f"environment name {name!r} must be a letter then letters/digits")
            if name.lower() in lowered:
                raise ValueError(
                    f"environments {lowered[name.lower()]!r} and {name!r} differ only in case; "
                    "commands match names case-insensitively"
                )
            lowered[name.lower()] = name
        return v

    @model_validator(mode="after")
    def _people_reference_known_environments(self) -> Config:
        errors: list[str] = []
        for i, person in enumerate(self.people):
            for j, env in enumerate(person.environments):
                if env != "*" and env not in self.environments:
                    errors.append(
                        f"people[{i}].environments[{j}]: unknown environment {env!r} "
                        f"(known: {', '.join(self.environments)})"
                    )
        ids = [p.aad_object_id.lower() for p in self.people]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            errors.append(f"people: aad_object_id listed twice: {', '.join(dupes)}")
        logins = [p.os_user.casefold() for p in self.people if p.os_user]
        twice = sorted({u for u in logins if logins.count(u) > 1})
        if twice:
            errors.append(f"people: os_user listed twice: {', '.join(twice)}")
        if "*" in logins and self.server.mode != "local":
            errors.append(
                'people: os_user = "*" (any login on this machine) is for the local-mode demo '
                "only; name the login of each person who may use the break-glass CLI"
            )
        opsgenie = self.alerts.opsgenie
        for env in opsgenie.priority if opsgenie else ():
            if env not in self.environments:
                errors.append(
                    f"alerts.opsgenie.priority.{env}: unknown environment "
                    f"(known: {', '.join(self.environments)})"
                )
        errors += pair_problems(self.pairs, self.environments)
        if errors:
            raise ValueError("; ".join(errors))
        return self

    @model_validator(mode="after")
    def _dr_runners_fit_their_hosts(self) -> Config:
        errors: list[str] = []
        names = [h.name for h in self.runner_hosts]
        if BOT_HOST in names or len(set(names)) != len(names):
            errors.append(f"runner_hosts: names must be unique and not {BOT_HOST!r}")
        for env_name, env in self.environments.items():
            for script in env.scripts:
                if script.runs_on != HOSTS and script.runs_on not in names:
                    known = ", ".join([HOSTS, *names])
                    errors.append(
                        f"environments.{env_name}.scripts.{script.name}.runs_on: unknown "
                        f"runner host (known: {known})"
                    )
            if env.dr is None:
                continue
            for key, runner in env.dr.runners().items():
                where = f"environments.{env_name}.dr.{key}"
                if runner.remote and runner.runs_on not in names:
                    known = ", ".join([BOT_HOST, *names])
                    errors.append(f"{where}.runs_on: unknown runner host (known: {known})")
                errors += [f"{where}: {p}" for p in runner.problems(str(env.dr.base_url), env_name)]
        if errors:
            raise ValueError("; ".join(errors))
        return self

    def runner_host(self, name: str) -> Host | None:
        return next((h for h in self.runner_hosts if h.name == name), None)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def find_environment(self, name: str) -> str | None:
        """The configured spelling of an environment name matched case-insensitively."""
        for known in self.environments:
            if known.lower() == name.lower():
                return known
        return None

    def find_pair(self, name: str) -> str | None:
        """The configured spelling of a pair name matched case-insensitively."""
        return next((p for p in self.pairs if p.casefold() == name.casefold()), None)

    def pair_of(self, environment: str) -> str | None:
        """The pair an environment is a slot of, if any."""
        return next((n for n, p in self.pairs.items() if environment in p.slots), None)

    def person(self, aad_object_id: str | None) -> Person | None:
        if not aad_object_id:
            return None
        for p in self.people:
            if p.aad_object_id.lower() == aad_object_id.lower():
                return p
        return None

    def person_for_login(self, login: str) -> Person | None:
        """The person the break-glass CLI acts as for an OS login: named, else "*"."""
        named = next(
            (p for p in self.people if p.os_user and p.os_user.casefold() == login.casefold()),
            None,
        )
        return named or next((p for p in self.people if p.os_user == "*"), None)

    def has_role(self, aad_object_id: str | None, role: Role, environment: str | None) -> bool:
        p = self.person(aad_object_id)
        if p is None or role not in p.roles:
            return False
        return environment is None or "*" in p.environments or environment in p.environments

    def secret_env_names(self) -> list[str]:
        names = [self.teams.app_id_env, self.teams.app_password_env, self.teams.app_tenant_id_env]
        for env in self.environments.values():
            for host in env.hosts:
                names += [host.username_env, host.password_env]
        for pair in self.pairs.values():
            names += [pair.router.host.username_env, pair.router.host.password_env]
        for host in self.runner_hosts:
            names += [host.username_env, host.password_env]
        for env in self.environments.values():
            for runner in env.dr.runners().values() if env.dr else ():
                names += runner.secret_env.values()
        names.append(self.alerts.grafana.token_env)
        if self.alerts.opsgenie is not None:
            names.append(self.alerts.opsgenie.api_key_env)
        if self.alerts.webhook is not None and self.alerts.webhook.token_env:
            names.append(self.alerts.webhook.token_env)
        if self.metrics.token_env:
            names.append(self.metrics.token_env)
        names += [self.audit.key_env, *self.audit.previous_key_envs]
        return sorted(set(names))

    def group_members(self, group_id: str) -> frozenset[str]:
        """The configured members of a group (lower-case object ids): local mode's stand-in
        for Microsoft Graph."""
        return frozenset(
            m.lower() for g in self.groups if g.id.lower() == group_id.lower() for m in g.members
        )


@dataclass(frozen=True)
class ConfigError(Exception):
    """The file could not be read or is invalid; `problems` are 'key: why' lines."""

    path: str
    problems: tuple[str, ...]

    def __str__(self) -> str:
        lines = "\n".join(f"  - {p}" for p in self.problems)
        return f"{self.path}: {len(self.problems)} problem(s)\n{lines}"


def _key_path(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def format_validation_error(err: ValidationError) -> tuple[str, ...]:
    problems = []
    for e in err.errors(include_url=False):
        # pydantic reports union/function validators with a trailing tag in loc; drop those
        # that are not keys of the file so the operator sees the key they can edit.
        loc = [p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "missing":
            msg = "required key is missing"
        elif e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see the commented example config)"
        if not loc:
            # Cross-reference checks of the whole file already name their keys ("a.b: why").
            problems.extend(msg.split("; "))
            continue
        problems.append(f"{_key_path(loc)}: {msg}")
    return tuple(problems)


def load_config(path: str | Path) -> Config:
    """Read and validate a config file; raises ConfigError listing every problem."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(str(p), ("file not found",)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(p), (f"not valid TOML: {exc}",)) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(p), (f"cannot read: {exc.__class__.__name__}",)) from exc
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(str(p), format_validation_error(exc)) from exc


def secret(name: str) -> str | None:
    """Read a secret from the environment at the moment of use (never cached in config)."""
    value = os.environ.get(name)
    return value if value else None
