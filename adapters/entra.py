"""Entra group membership through Microsoft Graph, for approvers named by group.

The Teams token and activity carry no groups, so the bot asks Graph itself:
`POST {graph}/v1.0/directoryObjects/{user}/checkMemberGroups {"groupIds": [...]}` (transitive
membership, up to 20 groups per call), with an app-only token from the client-credentials
flow of the bot's own Entra app (`POST {login}/{tenant}/oauth2/v2.0/token`, scope
`{graph}/.default`). The app needs the application permission GroupMember.Read.All.

Answers are cached per (tenant, user, groups) for `cache_s`, tokens until shortly before they
expire. Failures are never cached and never guessed: every one is a GroupLookupFailed whose
message is our own words (never a token, a secret or `str()` of a library error), and the
caller refuses the approval.

    GroupLookupFailed     membership unknown: the login or Graph refused, failed or did not answer
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx

# Graph object ids are GUIDs; anything else never reaches a URL path.
_OBJECT_ID = re.compile(
    r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"
)
TOKEN_MARGIN_S = 120.0
MAX_GROUPS_PER_CALL = 20


class GroupLookupFailed(Exception):
    """Group membership could not be determined; the message says why, in our words."""


@dataclass
class _Token:
    value: str
    expires: float


@dataclass
class GraphGroups:
    """`GroupMembership` over Microsoft Graph (see the module docstring)."""

    client_id: str
    client_secret: str = field(repr=False)
    default_tenant: str | None
    login_url: str = "https://login.microsoftonline.com"
    graph_url: str = "https://graph.microsoft.com"
    cache_s: float = 300.0
    timeout_s: float = 10.0
    clock: Callable[[], float] = time.monotonic
    transport: httpx.AsyncBaseTransport | None = None
    _tokens: dict[str, _Token] = field(default_factory=dict, init=False)
    _answers: dict[tuple[str, str, frozenset[str]], tuple[frozenset[str], float]] = field(
        default_factory=dict, init=False
    )
    _client: httpx.AsyncClient | None = field(default=None, init=False)

    async def member_of(
        self, user_id: str, group_ids: Sequence[str], tenant_id: str | None
    ) -> frozenset[str]:
        groups = frozenset(g.lower() for g in group_ids)
        if not groups:
            return frozenset()
        if not _OBJECT_ID.fullmatch(user_id) or not all(_OBJECT_ID.fullmatch(g) for g in groups):
            return frozenset()  # not an Entra object id: member of nothing
        tenant = self.default_tenant or tenant_id
        if not tenant or not _OBJECT_ID.fullmatch(tenant):
            raise GroupLookupFailed("no tenant id to ask Microsoft Graph in")
        key = (tenant.lower(), user_id.lower(), groups)
        cached = self._answers.get(key)
        if cached is not None and cached[1] > self.clock():
            return cached[0]
        found = await self._check(tenant, user_id, sorted(groups))
        self._answers[key] = (found, self.clock() + self.cache_s)
        return found

    async def _check(self, tenant: str, user_id: str, groups: list[str]) -> frozenset[str]:
        found: set[str] = set()
        for start in range(0, len(groups), MAX_GROUPS_PER_CALL):
            chunk = groups[start : start + MAX_GROUPS_PER_CALL]
            found |= await self._check_chunk(tenant, user_id, chunk, retry=True)
        return frozenset(found)

    async def _check_chunk(
        self, tenant: str, user_id: str, groups: list[str], *, retry: bool
    ) -> set[str]:
        token = await self._token(tenant)
        url = f"{self.graph_url.rstrip('/')}/v1.0/directoryObjects/{user_id}/checkMemberGroups"
        response = await self._post(
            url,
            json={"groupIds": groups},
            headers={"Authorization": f"Bearer {token}"},
            what="Microsoft Graph",
        )
        if response.status_code == 401 and retry:
            self._tokens.pop(tenant, None)  # revoked or rotated: one fresh token, once
            return await self._check_chunk(tenant, user_id, groups, retry=False)
        if response.status_code == 404:
            return set()  # no such user in this tenant: member of nothing
        if response.status_code != 200:
            raise GroupLookupFailed(
                f"Microsoft Graph answered HTTP {response.status_code} to checkMemberGroups"
                + (
                    " (does the app have GroupMember.Read.All?)"
                    if response.status_code == 403
                    else ""
                )
            )
        try:
            value = response.json()["value"]
        except (ValueError, KeyError, TypeError) as exc:
            raise GroupLookupFailed("Microsoft Graph's answer was not a group list") from exc
        if not isinstance(value, list):
            raise GroupLookupFailed("Microsoft Graph's answer was not a group list")
        return {v.lower() for v in value if isinstance(v, str)} & set(groups)

    async def _token(self, tenant: str) -> str:
        cached = self._tokens.get(tenant)
        if cached is not None and cached.expires > self.clock():
            return cached.value
        url = f"{self.login_url.rstrip('/')}/{tenant}/oauth2/v2.0/token"
        response = await self._post(
            url,
            data={
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "scope": f"{self.graph_url.rstrip('/')}/.default",
            },
            what="the Microsoft Entra login",
        )
        if response.status_code != 200:
            raise GroupLookupFailed(
                f"the Microsoft Entra login answered HTTP {response.status_code} "
                "(check the bot's app id, client secret and tenant)"
            )
        try:
            body = response.json()
            value, lifetime = body["access_token"], float(body.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError) as exc:
            raise GroupLookupFailed("the Microsoft Entra login gave no access token") from exc
        if not isinstance(value, str) or not value:
            raise GroupLookupFailed("the Microsoft Entra login gave no access token")
        self._tokens[tenant] = _Token(value, self.clock() + max(0.0, lifetime - TOKEN_MARGIN_S))
        return value

    async def _post(self, url: str, *, what: str, **kwargs: object) -> httpx.Response:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_s, transport=self.transport)
        try:
            return await self._client.post(url, **kwargs)  # type: ignore[arg-type]
        except httpx.TimeoutException as exc:
            raise GroupLookupFailed(f"{what} did not answer within {self.timeout_s:g} s") from exc
        except httpx.HTTPError as exc:
            raise GroupLookupFailed(f"cannot reach {what} ({type(exc).__name__})") from exc

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
