"""Labs and bot configs of any shape: many environments, or one environment on many hosts.

The sweeps run one scenario per environment, all at once against one bot (a failure, or a
kill, at a different step in each), and the farm tests put 16 hosts in one environment.
Every host has the demo's components (Portal and API sites, the Worker service) and
releases; every environment is the demo's Lab environment with other hosts.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from commands.config import Config
from lab.core import Lab
from lab.demo import demo_hosts
from lab.model import LabHostSpec
from tests.conftest import DEMO_CONFIG, FAST_TIMEOUTS, paths_under

TEMPLATE = "Lab"


def farm_hosts(layout: Mapping[str, Sequence[str]], **spec: Any) -> list[LabHostSpec]:
    """Lab hosts for environment → host names, each like the demo's lab-web01."""
    template = next(h for h in demo_hosts(fixed_ports=False) if h.environment == TEMPLATE)
    return [
        replace(template, name=host, environment=env, **spec)
        for env, hosts in layout.items()
        for host in hosts
    ]


def farm_config(
    lab: Lab,
    tmp_path: Path,
    layout: Mapping[str, Sequence[str]],
    *,
    timeouts: Mapping[str, float] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Config:
    """The demo's Lab environment once per entry of `layout`, on those hosts. Smoke checks
    go to the environment's first host (in a real farm: the load balancer in front)."""
    return Config.model_validate(farm_raw(lab, tmp_path, layout, timeouts=timeouts, extra=extra))


def farm_raw(
    lab: Lab,
    tmp_path: Path,
    layout: Mapping[str, Sequence[str]],
    *,
    timeouts: Mapping[str, float] | None = None,
    extra: Mapping[str, Any] | None = None,
    per_environment: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """`farm_config` as the TOML's data (a subprocess bot reads it from a file);
    `per_environment` overrides keys of single environments (their `timeouts` merge)."""
    raw: dict[str, Any] = tomllib.loads(DEMO_CONFIG.read_text(encoding="utf-8"))
    template = raw["environments"][TEMPLATE]
    environments: dict[str, Any] = {}
    for name, hosts in layout.items():
        env = copy.deepcopy(template)
        host_template = env["hosts"][0]
        env["hosts"] = [
            {**host_template, "name": host, "winrm_url": lab.winrm_url(host)} for host in hosts
        ]
        env["package_store"] = str(lab.packages_dir)
        env["timeouts"] = {**FAST_TIMEOUTS, **(timeouts or {})}
        env["disk_margin_mb"] = 1
        env["watch"] = {**env.get("watch", {}), "enabled": False}
        for check in env["smoke"]:
            path = check["url"].split("/", 3)[3]
            check["url"] = f"{lab.check_base(hosts[0], check['name'])}/{path}"
        env.update(extra or {})
        own = dict((per_environment or {}).get(name, {}))
        env["timeouts"] = {**env["timeouts"], **own.pop("timeouts", {})}
        env.update(own)
        environments[name] = env
    raw["environments"] = environments
    raw.pop("pairs", None)  # the demo's blue/green pair names environments not here
    raw["paths"] = paths_under(tmp_path)
    return raw


def write_toml(raw: Mapping[str, Any], path: Path) -> Path:
    """The config as a TOML file: every top-level table inline (tomllib reads it back)."""
    from tests.browser_stack import toml_value

    path.write_text(
        "\n".join(f"{key} = {toml_value(value)}" for key, value in raw.items()) + "\n",
        encoding="utf-8",
    )
    return path


def components(lab_state: Mapping[str, Any]) -> dict[str, tuple[str, str | None]]:
    """Every component of a lab host as (state, path): what a restore must give back."""
    out: dict[str, tuple[str, str | None]] = {}
    for name, site in lab_state["sites"].items():
        out[f"site {name}"] = (site["state"], site["physical_path"])
    for name, pool in lab_state["app_pools"].items():
        out[f"pool {name}"] = (pool["state"], None)
    for name, service in lab_state["services"].items():
        out[f"service {name}"] = (service["state"], service["image_path"])
    return out
