"""The bot's configuration schema (pydantic): read by every layer, so it has a room of its own.

model.py holds the whole file's shape and `load_config`; environment.py one environment;
pair.py a blue/green slot pair; alerts.py where alerts go; base.py the name patterns and the
strict base model.
"""

from commands.config.alerts import (
    Alerts,
    GrafanaInbound,
    OpsGenie,
    Priority,
    Retention,
    WebhookSink,
)
from commands.config.base import (
    ENV_NAME_PATTERN,
    ENV_VAR_PATTERN,
    NAME_PATTERN,
    VERSION_PATTERN,
    Role,
    is_loopback_host,
)
from commands.config.components import Components, Iis, Service, Site, Worker
from commands.config.dr import DrRunner, DrTests
from commands.config.environment import (
    Approval,
    Environment,
    Host,
    QueueDepthCheck,
    SmokeCheck,
    Timeouts,
    Watch,
)
from commands.config.model import (
    AuditSettings,
    Config,
    ConfigError,
    Group,
    Logging,
    LogLevel,
    Metrics,
    Paths,
    Person,
    Server,
    Teams,
    format_validation_error,
    load_config,
    secret,
)
from commands.config.pair import Pair, PairRouter, PairWatch
from commands.config.scripts import ScriptParam, ScriptStep

__all__ = [
    "ENV_NAME_PATTERN",
    "ENV_VAR_PATTERN",
    "NAME_PATTERN",
    "VERSION_PATTERN",
    "Alerts",
    "Approval",
    "AuditSettings",
    "Components",
    "Config",
    "ConfigError",
    "DrRunner",
    "DrTests",
    "Environment",
    "GrafanaInbound",
    "Group",
    "Host",
    "Iis",
    "LogLevel",
    "Logging",
    "Metrics",
    "OpsGenie",
    "Pair",
    "PairRouter",
    "PairWatch",
    "Paths",
    "Person",
    "Priority",
    "QueueDepthCheck",
    "Retention",
    "Role",
    "ScriptParam",
    "ScriptStep",
    "Server",
    "Service",
    "Site",
    "SmokeCheck",
    "Teams",
    "Timeouts",
    "Watch",
    "WebhookSink",
    "Worker",
    "format_validation_error",
    "is_loopback_host",
    "load_config",
    "secret",
]
