"""Who approves: people with the approver role, and members of the environment's approver
groups — asked of Microsoft Graph in teams mode, read from the config in local mode."""

from __future__ import annotations

from collections.abc import Sequence

from commands.config import Config
from commands.context import Services
from commands.types import Actor


class ConfigGroups:
    """`GroupMembership` from `[[groups]] members` (local mode: there is no Graph to ask)."""

    def __init__(self, config: Config) -> None:
        self._config = config

    async def member_of(
        self, user_id: str, group_ids: Sequence[str], tenant_id: str | None
    ) -> frozenset[str]:
        user = user_id.lower()
        return frozenset(g.lower() for g in group_ids if user in self._config.group_members(g))


async def is_approver(
    services: Services, actor: Actor, environment: str, tenant_id: str | None
) -> bool:
    """True for the approver role in `environment`, or membership of one of its approver
    groups; raises adapters.entra.GroupLookupFailed when the groups cannot be asked."""
    config = services.config
    if config.has_role(actor.aad_object_id, "approver", environment):
        return True
    groups = config.environments[environment].approval.approver_groups
    if not groups or not actor.aad_object_id:
        return False
    return bool(await services.groups.member_of(actor.aad_object_id, groups, tenant_id))
