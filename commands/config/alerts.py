"""Where alerts go (OpsGenie, a webhook, Grafana inbound) and how long logs are kept."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    AnyHttpUrl,
    Field,
    field_validator,
)

from commands.config.base import EnvVarName, _check_env_var, _Strict

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
    # After `attempts` failed, a create is tried again after this long (doubling, at most
    # 15 min) until OpsGenie accepts it or the alert resolves.
    resend_s: float = Field(default=60.0, gt=0, le=900)

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
    """Playbook §7: smoke logs 14 days, the notifications (audit) 30 days; the bot's own
    application logs (logs/app/, one file per day) as long as the smoke logs."""

    smoke_log_days: int = Field(default=14, ge=1, le=3650)
    notification_days: int = Field(default=30, ge=1, le=3650)
    app_log_days: int = Field(default=14, ge=1, le=3650)
