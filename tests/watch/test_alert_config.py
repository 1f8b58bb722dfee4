"""The alerting part of the config: OpsGenie, webhook, Grafana token, retention, watch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from commands.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "lab" / "demo-bot.toml"
EXAMPLE = ROOT / "docs" / "config.example.toml"


def with_extra(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "bot.toml"
    path.write_text(DEMO.read_text(encoding="utf-8") + "\n" + extra, encoding="utf-8")
    return path


def test_the_example_configures_opsgenie_grafana_and_retention() -> None:
    config = load_config(EXAMPLE)
    og = config.alerts.opsgenie
    assert og is not None and og.priority["InternalProd"] == "P1"
    assert config.retention.smoke_log_days == 14 and config.retention.notification_days == 30
    names = config.secret_env_names()
    assert {"MCMS_OPSGENIE_API_KEY", "MCMS_GRAFANA_TOKEN"} <= set(names)


def test_defaults_follow_the_playbook() -> None:
    config = load_config(DEMO)
    watch = config.environments["Lab"].watch
    assert (watch.failure_threshold, watch.reminder_minutes, watch.enabled) == (2, 30, True)
    assert config.alerts.opsgenie is None and config.alerts.webhook is None
    assert (config.retention.smoke_log_days, config.retention.notification_days) == (14, 30)


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (
            '[alerts.opsgenie]\npriority = { Prodd = "P1" }',
            "alerts.opsgenie.priority.Prodd: unknown environment",
        ),
        ('[alerts.opsgenie]\ndefault_priority = "P9"', "alerts.opsgenie.default_priority"),
        ('[alerts.opsgenie]\napi_key_env = "lower-case"', "alerts.opsgenie.api_key_env"),
        ('[alerts.webhook]\ntoken_env = "X"', "alerts.webhook.url: required key is missing"),
        ("[retention]\nsmoke_log_days = 0", "retention.smoke_log_days"),
        ("[alerts]\nopsgnie = {}", "alerts.opsgnie: unknown key"),
    ],
    ids=["priority-env", "priority-value", "key-env-name", "webhook-url", "retention", "typo"],
)
def test_alert_settings_are_checked_by_key(tmp_path: Path, extra: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(with_extra(tmp_path, extra))
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


def test_watch_interval_has_a_floor_and_queue_depth_a_path(tmp_path: Path) -> None:
    text = DEMO.read_text(encoding="utf-8").replace(
        "watch = { interval_s = 60, failure_threshold = 2, reminder_minutes = 30 }",
        'watch = { interval_s = 1, queue_depth = { url = "http://w/s", json_path = "a..b" } }',
    )
    path = tmp_path / "bot.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    problems: Any = caught.value.problems
    assert any(p.startswith("environments.Lab.watch.interval_s") for p in problems)
    assert any(p.startswith("environments.Lab.watch.queue_depth.json_path") for p in problems)
