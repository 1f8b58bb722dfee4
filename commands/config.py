"""The bot's configuration: one TOML file, validated by pydantic at start.

Secrets never live in the file: it names the environment variables that hold them
(`*_env` keys), and `secret()` reads them at the moment of use. Every validation error
names its key as a dotted path (`environments.Lab.smoke[0].url`) and says why, so
`mcms-bot check-config` can print them all at once.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

# Names end up in XPath filters and IIS:\ paths on the host (notes/winrm-iis.md): ASCII only,
# because PowerShell treats U+2018..U+201B as quote characters.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")
VERSION_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+){1,3}(-[A-Za-z0-9]+)?$")
ENV_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
ENV_VAR_PATTERN = re.compile(r"^[A-Z_][A-Z0-9_]*$")

Role = Literal["operator", "approver"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_name(value: str, what: str) -> str:
    if not NAME_PATTERN.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} must be 1-64 ASCII letters, digits, space, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def _check_env_var(value: str) -> str:
    if not ENV_VAR_PATTERN.fullmatch(value):
        raise ValueError(
            f"{value!r} is not an environment variable name (upper-case letters, digits, _)"
        )
    return value


EnvVarName = Annotated[str, Field(min_length=1)]


class SmokeCheck(_Strict):
    """One HTTP probe of the playbook's run-smoke.ps1 (Health 200, Swagger 200, Kerberos 401)."""

    name: str
    url: AnyHttpUrl
    expect: list[int] = Field(default_factory=lambda: [200], min_length=1)
    timeout_s: float = Field(default=5.0, gt=0, le=120)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, "check name")

    @field_validator("expect")
    @classmethod
    def _statuses(cls, v: list[int]) -> list[int]:
        for status in v:
            if not 100 <= status <= 599:
                raise ValueError(f"{status} is not an HTTP status (100-599)")
        return v


class Host(_Strict):
    """A Windows server reached over WinRM; credentials come from the named env vars."""

    name: str
    winrm_url: AnyHttpUrl
    transport: Literal["basic", "ntlm", "kerberos", "credssp", "ssl"] = "ntlm"
    username_env: EnvVarName
    password_env: EnvVarName
    allow_insecure_transport: bool = False
    server_cert_validation: Literal["validate", "ignore"] = "validate"
    operation_timeout_s: float = Field(default=10.0, gt=0, le=60)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, "host name")

    @field_validator("username_env", "password_env")
    @classmethod
    def _env(cls, v: str) -> str:
        return _check_env_var(v)

    @model_validator(mode="after")
    def _transport_is_safe(self) -> Host:
        plain_http = self.winrm_url.scheme == "http"
        # NTLM/Kerberos/CredSSP encrypt the message body even over http; basic does not.
        if plain_http and self.transport in ("basic", "ssl") and not self.allow_insecure_transport:
            raise ValueError(
                f"transport {self.transport!r} over plain http sends credentials in clear text; "
                "use https, ntlm or kerberos, or set allow_insecure_transport = true (lab only)"
            )
        return self


class Iis(_Strict):
    site: str
    app_pool: str
    # Playbook §6 says "stop the site and recycle the app pool"; some hosts prefer a full stop.
    pool_action: Literal["recycle", "stop"] = "stop"

    @field_validator("site", "app_pool")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, "IIS name")


class Worker(_Strict):
    service: str

    @field_validator("service")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, "service name")


class Approval(_Strict):
    required: bool = True
    self_approval: bool = False
    ttl_minutes: int = Field(default=15, ge=1, le=24 * 60)


class QueueDepthCheck(_Strict):
    """An HTTP GET whose JSON answer holds the Worker's queue depth (a number) at `json_path`."""

    url: AnyHttpUrl
    json_path: str = Field(default="depth", pattern=r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")
    timeout_s: float = Field(default=5.0, gt=0, le=60)


class Watch(_Strict):
    """The watcher's schedule for one environment (playbook §7: alert after 2 failures)."""

    enabled: bool = True
    interval_s: float = Field(default=60.0, ge=5)
    failure_threshold: int = Field(default=2, ge=1)
    reminder_minutes: int = Field(default=30, ge=1)
    # The app pool is read over WinRM, which costs the host a PowerShell process: slower
    # than the HTTP checks.
    app_pool_interval_s: float = Field(default=300.0, ge=5)
    queue_depth: QueueDepthCheck | None = None


class Timeouts(_Strict):
    """Deadlines of the run's steps, in seconds; a step past its deadline fails the run."""

    stop_s: float = Field(default=90, gt=0, le=1800)
    start_s: float = Field(default=120, gt=0, le=1800)
    deploy_s: float = Field(default=600, gt=0, le=3600)
    smoke_s: float = Field(default=180, gt=0, le=3600)
    precheck_s: float = Field(default=30, gt=0, le=600)


# What the host scripts accept (adapters/ps_scripts.py): releases live on a local drive;
# the package store may be a local folder or a share (`$` only ends a share name: D$).
_DRIVE_DIR = re.compile(r"[A-Za-z]:\\[A-Za-z0-9 ._\\-]*")
_SHARE_DIR = re.compile(r"\\\\[A-Za-z0-9._-]+\\[A-Za-z0-9._-]+\$?(\\[A-Za-z0-9 ._-]+)*\\?")


def _check_windows_dir(v: str, *, share_ok: bool) -> str:
    ok = _DRIVE_DIR.fullmatch(v) or (share_ok and _SHARE_DIR.fullmatch(v))
    if not ok or ".." in v.split("\\"):
        shapes = "D:\\MCMS\\releases" + (" or \\\\server\\share\\dir" if share_ok else "")
        raise ValueError(f"{v!r} must be an absolute Windows path like {shapes} (ASCII, no '..')")
    return v.rstrip("\\")


class Environment(_Strict):
    description: str = ""
    hosts: list[Host] = Field(min_length=1)
    iis: Iis
    worker: Worker
    releases_root: str = Field(min_length=3)
    keep_releases: int = Field(default=3, ge=2, le=20)
    # Where the bot verifies packages (MCMS_Setup_VERSION.zip + .sha256)...
    package_store: Path
    # ...and the same store as the hosts see it (a share or a synced local folder).
    host_package_dir: str = "D:\\MCMS\\packages"
    smoke: list[SmokeCheck] = Field(min_length=1)
    approval: Approval = Approval()
    watch: Watch = Watch()
    timeouts: Timeouts = Timeouts()

    @field_validator("releases_root")
    @classmethod
    def _root(cls, v: str) -> str:
        return _check_windows_dir(v, share_ok=False)

    @field_validator("host_package_dir")
    @classmethod
    def _package_dir(cls, v: str) -> str:
        return _check_windows_dir(v, share_ok=True)

    @model_validator(mode="after")
    def _unique(self) -> Environment:
        for what, names in (
            ("host", [h.name for h in self.hosts]),
            ("smoke check", [c.name for c in self.smoke]),
        ):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"duplicate {what} name(s): {', '.join(dupes)}")
        return self


class Person(_Strict):
    """Somebody allowed to talk to the bot, identified by Entra object id (from.aadObjectId)."""

    name: str = Field(min_length=1)
    aad_object_id: str = Field(min_length=1, pattern=r"^[0-9A-Fa-f-]{8,64}$")
    roles: list[Role] = Field(min_length=1)
    # Environment names, or ["*"] for all of them.
    environments: list[str] = Field(default_factory=lambda: ["*"], min_length=1)


class Teams(_Strict):
    app_id_env: EnvVarName = "MCMS_BOT_APP_ID"
    app_password_env: EnvVarName = "MCMS_BOT_APP_PASSWORD"  # noqa: S105 - a variable's name
    app_tenant_id_env: EnvVarName = "MCMS_BOT_APP_TENANT_ID"
    app_type: Literal["SingleTenant", "MultiTenant", "UserAssignedMSI"] = "SingleTenant"
    allowed_tenants: list[str] = Field(min_length=1)

    @field_validator("app_id_env", "app_password_env", "app_tenant_id_env")
    @classmethod
    def _env(cls, v: str) -> str:
        return _check_env_var(v)


class Server(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=3978, ge=0, le=65535)


class Paths(_Strict):
    """Where state and records go; relative paths are resolved against the working directory."""

    database: Path = Path("var/mcms-bot.db")
    audit_dir: Path = Path("logs/deploy/notifications")
    app_logs_dir: Path = Path("logs/app")
    smoke_logs_dir: Path = Path("artifacts/offline/logs")
    timeline_dir: Path = Path("docs/logs")


Priority = Literal["P1", "P2", "P3", "P4", "P5"]


class OpsGenie(_Strict):
    """Alerts API v2 target: create on raise (alias = environment + incident), close on recovery."""

    api_key_env: EnvVarName = "MCMS_OPSGENIE_API_KEY"
    base_url: AnyHttpUrl = AnyHttpUrl("https://api.opsgenie.com")  # EU: api.eu.opsgenie.com
    default_priority: Priority = "P3"
    priority: dict[str, Priority] = Field(default_factory=dict)  # per environment name
    tags: list[str] = Field(default_factory=lambda: ["mcms"])
    timeout_s: float = Field(default=10.0, gt=0, le=120)
    attempts: int = Field(default=4, ge=1, le=10)
    backoff_s: float = Field(default=2.0, gt=0, le=60)

    @field_validator("api_key_env")
    @classmethod
    def _env(cls, v: str) -> str:
        return _check_env_var(v)


class WebhookSink(_Strict):
    """A generic JSON webhook that gets the same raise/resolve events as OpsGenie."""

    url: AnyHttpUrl
    token_env: EnvVarName | None = None  # sent as `Authorization: Bearer <token>` when set
    timeout_s: float = Field(default=10.0, gt=0, le=120)
    attempts: int = Field(default=4, ge=1, le=10)
    backoff_s: float = Field(default=2.0, gt=0, le=60)

    @field_validator("token_env")
    @classmethod
    def _env(cls, v: str | None) -> str | None:
        return None if v is None else _check_env_var(v)


class GrafanaInbound(_Strict):
    """POST /api/alerts: Grafana's webhook contact point, with this bearer token."""

    token_env: EnvVarName = "MCMS_GRAFANA_TOKEN"  # noqa: S105 - a variable's name

    @field_validator("token_env")
    @classmethod
    def _env(cls, v: str) -> str:
        return _check_env_var(v)


class Alerts(_Strict):
    """Where alerts go besides the subscribed conversations (`subscribe ENVIRONMENT`)."""

    # Used for an environment nobody subscribed to; the bot must have been addressed there.
    default_conversation_id: str | None = None
    opsgenie: OpsGenie | None = None
    webhook: WebhookSink | None = None
    grafana: GrafanaInbound = GrafanaInbound()


class Retention(_Strict):
    """Playbook §7: smoke logs 14 days, the notifications (audit) 30 days."""

    smoke_log_days: int = Field(default=14, ge=1, le=3650)
    notification_days: int = Field(default=30, ge=1, le=3650)


class Config(_Strict):
    timezone: str = "Asia/Seoul"
    server: Server = Server()
    paths: Paths = Paths()
    teams: Teams
    environments: dict[str, Environment] = Field(min_length=1)
    people: list[Person] = Field(min_length=1)
    alerts: Alerts = Alerts()
    retention: Retention = Retention()

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
        opsgenie = self.alerts.opsgenie
        for env in opsgenie.priority if opsgenie else ():
            if env not in self.environments:
                errors.append(
                    f"alerts.opsgenie.priority.{env}: unknown environment "
                    f"(known: {', '.join(self.environments)})"
                )
        if errors:
            raise ValueError("; ".join(errors))
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def find_environment(self, name: str) -> str | None:
        """The configured spelling of an environment name matched case-insensitively."""
        for known in self.environments:
            if known.lower() == name.lower():
                return known
        return None

    def person(self, aad_object_id: str | None) -> Person | None:
        if not aad_object_id:
            return None
        for p in self.people:
            if p.aad_object_id.lower() == aad_object_id.lower():
                return p
        return None

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
        names.append(self.alerts.grafana.token_env)
        if self.alerts.opsgenie is not None:
            names.append(self.alerts.opsgenie.api_key_env)
        if self.alerts.webhook is not None and self.alerts.webhook.token_env:
            names.append(self.alerts.webhook.token_env)
        return sorted(set(names))


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
