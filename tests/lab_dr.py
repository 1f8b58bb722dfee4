"""Helper for tests (not a pytest plugin): point a raw demo config's `[environments.*.dr]`
at a running lab — its portal's ephemeral port, the suites' folder as an absolute path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab.core import Lab

ROOT = Path(__file__).resolve().parents[1]


def point_dr_at_lab(raw: dict[str, Any], lab: Lab) -> None:
    for name, env in raw["environments"].items():
        dr = env.get("dr")
        if dr is None:
            continue
        dr["base_url"] = lab.http_base(lab.host_for(name)) + "/"
        for key in ("axe", "e2e", "zap"):
            if key in dr and not dr[key].get("runs_on"):
                dr[key]["working_dir"] = str(ROOT / dr[key]["working_dir"])
