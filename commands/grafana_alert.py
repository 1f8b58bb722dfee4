"""Grafana's alerting webhook, read and rendered (pure): which environment, which card.

Grafana (unified alerting) POSTs {"status": "firing" | "resolved", "alerts": [{"status",
"labels", "annotations", "startsAt", "endsAt", "generatorURL", ...}], "commonLabels", ...}.
Each alert names its environment in the `environment` label (matched case-insensitively
against the config, falling back to commonLabels). Everything is validated before anything
is posted: one alert with an unknown or missing environment refuses the whole payload, so
a half-posted batch never has to be explained.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from commands.cards import elements as cards
from commands.config import Config
from commands.timefmt import show

ENV_LABEL = "environment"
Status = Literal["firing", "resolved"]


class GrafanaAlert(BaseModel):
    # Grafana sends more than we read (fingerprint, values, silenceURL...): ignored, not refused.
    model_config = ConfigDict(extra="ignore", frozen=True)

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    # Grafana's own camelCase field names, so the payload validates as sent.
    startsAt: datetime | None = None
    endsAt: datetime | None = None
    generatorURL: str | None = None
    dashboardURL: str | None = None
    panelURL: str | None = None
    valueString: str | None = None


class GrafanaPayload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    status: Literal["firing", "resolved"]
    alerts: list[GrafanaAlert] = Field(min_length=1, max_length=500)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    title: str | None = None


@dataclass(frozen=True)
class Batch:
    """The alerts of one environment with one status: one card."""

    environment: str
    status: Status
    alerts: tuple[GrafanaAlert, ...]


def parse(body: Any) -> GrafanaPayload | str:
    """The payload, or what is wrong with it (for a 400)."""
    try:
        return GrafanaPayload.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "(body)"
        return f"not a Grafana alert webhook: {where}: {first['msg']}"


def route(payload: GrafanaPayload, config: Config) -> list[Batch] | str:
    """Group by (environment, status); a message naming every unknown environment instead."""
    groups: dict[tuple[str, Status], list[GrafanaAlert]] = {}
    problems: list[str] = []
    for i, alert in enumerate(payload.alerts):
        label = alert.labels.get(ENV_LABEL) or payload.commonLabels.get(ENV_LABEL)
        name = alert.labels.get("alertname", f"alerts[{i}]")
        if not label:
            problems.append(f"{name}: no `{ENV_LABEL}` label")
            continue
        env = config.find_environment(label)
        if env is None:
            problems.append(f"{name}: unknown environment {label!r}")
            continue
        groups.setdefault((env, alert.status), []).append(alert)
    if problems:
        known = ", ".join(config.environments)
        return (
            "nothing was posted: " + "; ".join(problems) + f". Label each alert rule with "
            f"`{ENV_LABEL}` = one of: {known}."
        )
    return [Batch(env, status, tuple(alerts)) for (env, status), alerts in groups.items()]


def _links(alert: GrafanaAlert) -> list[cards.Element]:
    out = []
    for title, url in (("Panel", alert.panelURL), ("Dashboard", alert.dashboardURL),
                       ("Alert rule", alert.generatorURL)):  # fmt: skip
        if url and url.startswith(("https://", "http://")):
            out.append({"type": "Action.OpenUrl", "title": title, "url": url})
    return out


def _facts(alert: GrafanaAlert, tz: ZoneInfo) -> list[tuple[str, str]]:
    pairs = []
    if alert.startsAt:
        pairs.append(("Since", show(alert.startsAt, tz)))
    if alert.status == "resolved" and alert.endsAt:
        pairs.append(("Resolved", show(alert.endsAt, tz)))
    if alert.valueString:
        pairs.append(("Values", cards.plain(alert.valueString, 300)))
    return pairs


def render_grafana_card(batch: Batch, tz: ZoneInfo) -> tuple[str, cards.Card]:
    """(summary text, card) for one batch."""
    firing = batch.status == "firing"
    # Everything from the payload is the alert rule author's text: escaped, never markdown.
    names = ", ".join(
        dict.fromkeys(cards.plain(a.labels.get("alertname", "alert"), 100) for a in batch.alerts)
    )
    icon, color = ("🔥", "Attention") if firing else ("✅", "Good")
    head = f"{icon} Grafana {batch.status}: {names} ({batch.environment})"
    body: list[cards.Element] = [cards.title(head, color)]
    actions: list[cards.Element] = []
    for alert in batch.alerts[:10]:  # a card stays far below Teams' size limit
        summary = alert.annotations.get("summary") or alert.labels.get("alertname", "alert")
        body.append(cards.text(f"**{cards.plain(summary, 200)}**"))
        description = alert.annotations.get("description")
        if description:
            body.append(cards.text(cards.plain(description, 1000)))
        pairs = _facts(alert, tz)
        if pairs:
            body.append(cards.facts(pairs))
        actions += _links(alert)
    if len(batch.alerts) > 10:
        body.append(cards.text(f"…and {len(batch.alerts) - 10} more in Grafana.", subtle=True))
    if firing:
        body.append(
            cards.text(
                f"Check `status {batch.environment}` and `smoke {batch.environment}`; "
                f"`rollback {batch.environment}` asks for a rollback.",
                subtle=True,
            )
        )
    unique = list({a["url"]: a for a in actions}.values())[:5]
    return head, cards.card(body, unique)


def summary_of(batches: Sequence[Batch]) -> Mapping[str, list[str]]:
    """environment → alert names, for the audit line."""
    out: dict[str, list[str]] = {}
    for b in batches:
        out.setdefault(b.environment, []).extend(
            f"{a.labels.get('alertname', 'alert')}:{b.status}" for a in b.alerts
        )
    return out
