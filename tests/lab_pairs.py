"""Point a raw demo config's `[pairs.*]` at a running lab (a helper, not a pytest plugin)."""

from __future__ import annotations

from typing import Any

from lab.core import Lab


def point_pairs_at_lab(raw: dict[str, Any], lab: Lab) -> None:
    """Point the `[pairs.*]` of a raw demo config at this lab's router (ephemeral ports)."""
    for name, pair in raw.get("pairs", {}).items():
        router = lab.router_for(name)
        pair["router"]["host"]["name"] = router
        pair["router"]["host"]["winrm_url"] = lab.winrm_url(router)
        pair["router"]["public_url"] = lab.public_url(router)
        # Short deadlines keep failure tests fast; the lab answers in milliseconds.
        pair["router"]["step_timeout_s"] = 5
        pair["router"]["drain_deadline_s"] = 5
