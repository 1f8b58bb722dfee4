"""Inbound JWT validation and outbound credentials for the Bot Framework.

`make_authentication()` turns our config into botbuilder's ConfigurationBotFrameworkAuthentication
and wraps it so that every inbound authentication failure is a PermissionError, which
CloudAdapter answers with 401. Stock botbuilder 4.17.1 lets a bad signature, an expired
token, an unknown `kid`, a key not endorsed for the channel or a malformed token escape as
other exceptions (jwt errors, IndexError...), i.e. HTTP 500; with overridden endpoints
(AuthOverrides) a missing header does too (AttributeError).

After the token, the activity is admitted or refused (bot/teams/admission.py: channel,
tenant, serviceUrl); a refusal is `ActivityRefused`, which the endpoint answers with 403.

Local mode (`[server] mode = "local"`, said explicitly in the config) gives botbuilder no
app id, so it accepts every request unsigned: loopback only, for the demo and tests. Teams
mode with an app id, password or tenant id missing refuses to start (`AuthConfigError`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from botbuilder.integration.aiohttp import ConfigurationBotFrameworkAuthentication
from botframework.connector.auth import (
    AppCredentials,
    ClaimsIdentity,
    ConnectorFactory,
    ServiceClientCredentialsFactory,
    UserTokenClient,
)

from bot.teams.admission import Mode, Refusal, admission_refusal
from bot.teams.connector import AsyncConnectorFactory, ConnectorPool
from commands.config import Teams, secret

log = logging.getLogger(__name__)

# Teams gives up on a request after ~15 s; fail the check well before that.
AUTH_TIMEOUT_S = 10.0

AppType = Literal["SingleTenant", "MultiTenant", "UserAssignedMSI"]


class AuthConfigError(ValueError):
    """The Teams credentials in the environment do not fit the mode; one line naming the
    variable to set (or unset)."""


class ActivityRefused(Exception):
    """The token was fine (or not needed), but the activity is not let in (403)."""

    def __init__(self, refusal: Refusal, activity: Any) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal
        self.activity = activity


@dataclass(frozen=True)
class BotCredentials:
    """The bot's identity, read from the environment variables named in config.teams."""

    app_id: str | None
    app_password: str | None = field(repr=False)  # never in a log line or a traceback
    app_tenant_id: str | None
    app_type: AppType

    @classmethod
    def from_config(cls, teams: Teams, mode: Mode) -> BotCredentials:
        """The credentials `mode` needs, or AuthConfigError naming what is missing (teams
        mode) or what must not be set (local mode)."""
        if mode == "local":
            if secret(teams.app_id_env):
                raise AuthConfigError(
                    f'{teams.app_id_env} is set but the config says [server] mode = "local" '
                    '(no authentication): unset it, or set mode = "teams" to serve Teams'
                )
            return cls(None, None, None, "MultiTenant")
        creds = cls(
            app_id=secret(teams.app_id_env),
            app_password=secret(teams.app_password_env),
            app_tenant_id=secret(teams.app_tenant_id_env),
            app_type=teams.app_type,
        )
        creds._check(teams)
        return creds

    @property
    def authenticated(self) -> bool:
        """False in local mode: botbuilder then validates no token at all."""
        return bool(self.app_id)

    def _check(self, teams: Teams) -> None:
        # botbuilder would accept an empty app id as "authentication off", and raises a bare
        # Exception("Property 'APP_PASSWORD' is expected...") for the rest; we refuse and
        # name the environment variable the operator has to set instead.
        missing = [] if self.app_id else [teams.app_id_env]
        if self.app_type != "UserAssignedMSI" and not self.app_password:
            missing.append(teams.app_password_env)
        if self.app_type != "MultiTenant" and not self.app_tenant_id:
            missing.append(teams.app_tenant_id_env)
        if missing:
            raise AuthConfigError(
                f'{" and ".join(missing)} not set: [server] mode = "teams" ({self.app_type} '
                "bot) needs the Azure Bot's app id, client secret and tenant id in the "
                "environment; refusing to start without Teams authentication"
            )


@dataclass(frozen=True)
class AuthOverrides:
    """Replacements for the Bot Framework's well-known endpoints, so tests stay on loopback.

    `static_token` replaces the login to Microsoft Entra for outbound calls: the connector
    gets `Authorization: Bearer <static_token>`.
    """

    openid_metadata_url: str
    issuer: str = "https://api.botframework.com"
    login_url: str = "http://127.0.0.1:9/login"  # never called when static_token is set
    oauth_scope: str = "https://api.botframework.com"
    oauth_url: str = "http://127.0.0.1:9/oauth"
    static_token: str | None = None


class _Settings:
    """The attribute bag ConfigurationBotFrameworkAuthentication reads (upper-snake names)."""

    def __init__(self, creds: BotCredentials, overrides: AuthOverrides | None) -> None:
        self.APP_ID = creds.app_id or ""
        self.APP_PASSWORD = creds.app_password or ""
        self.APP_TENANTID = creds.app_tenant_id or ""
        # Without an app id, SingleTenant makes botbuilder demand one: local mode is MultiTenant.
        self.APP_TYPE = creds.app_type if creds.authenticated else "MultiTenant"
        if overrides is not None:
            self.TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL = overrides.openid_metadata_url
            self.TO_BOT_FROM_EMULATOR_OPENID_METADATA_URL = overrides.openid_metadata_url
            self.TO_BOT_FROM_CHANNEL_TOKEN_ISSUER = overrides.issuer
            self.TO_CHANNEL_FROM_BOT_LOGIN_URL = overrides.login_url
            self.TO_CHANNEL_FROM_BOT_OAUTH_SCOPE = overrides.oauth_scope
            self.OAUTH_URL = overrides.oauth_url
            self.VALIDATE_AUTHORITY = False


class _StaticTokenCredentials(AppCredentials):  # type: ignore[misc]
    def __init__(self, app_id: str, token: str) -> None:
        super().__init__(app_id=app_id)
        self._token = token

    def get_access_token(self, force_refresh: bool = False) -> str:
        return self._token


class _StaticTokenCredentialsFactory(ServiceClientCredentialsFactory):  # type: ignore[misc]
    """Outbound credentials that never call the Microsoft login service (tests only)."""

    def __init__(self, app_id: str, token: str) -> None:
        self._app_id = app_id
        self._token = token

    async def is_valid_app_id(self, app_id: str) -> bool:
        return bool(self._app_id) and app_id == self._app_id

    async def is_authentication_disabled(self) -> bool:
        return not self._app_id

    async def create_credentials(
        self, app_id: str, oauth_scope: str, login_endpoint: str, validate_authority: bool
    ) -> AppCredentials:
        return _StaticTokenCredentials(app_id, self._token)


Admit = Callable[[Any], "Refusal | None"]


class _LazyUserTokenClient(UserTokenClient):  # type: ignore[misc]
    """botbuilder's user token client, built on first use: CloudAdapter makes one for every
    turn (~20 ms of msrest set-up on the event loop), and the bot signs no user in."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._client: Any = None

    async def _real(self) -> Any:
        if self._client is None:
            self._client = await self._make()
        return self._client

    async def get_user_token(self, *args: Any, **kwargs: Any) -> Any:
        return await (await self._real()).get_user_token(*args, **kwargs)

    async def get_sign_in_resource(self, *args: Any, **kwargs: Any) -> Any:
        return await (await self._real()).get_sign_in_resource(*args, **kwargs)

    async def sign_out_user(self, *args: Any, **kwargs: Any) -> Any:
        return await (await self._real()).sign_out_user(*args, **kwargs)

    async def get_token_status(self, *args: Any, **kwargs: Any) -> Any:
        return await (await self._real()).get_token_status(*args, **kwargs)

    async def get_aad_tokens(self, *args: Any, **kwargs: Any) -> Any:
        return await (await self._real()).get_aad_tokens(*args, **kwargs)

    async def exchange_token(self, *args: Any, **kwargs: Any) -> Any:
        return await (await self._real()).exchange_token(*args, **kwargs)


class StrictBotFrameworkAuthentication(ConfigurationBotFrameworkAuthentication):  # type: ignore[misc]
    """ConfigurationBotFrameworkAuthentication whose inbound failures are all PermissionError,
    and that admits only the activities `admit` lets in (ActivityRefused otherwise).

    Only `authenticate_request` is hardened: it is the one POST /api/messages uses (we serve
    no streaming or skill endpoints). Every connector client it hands CloudAdapter — for a
    turn's replies and for proactive sends — is ours (bot/teams/connector.py), with the
    credentials botbuilder chose; `close()` ends its HTTP session.
    """

    def __init__(self, settings: Any, *, admit: Admit, credentials_factory: Any = None) -> None:
        super().__init__(settings, credentials_factory=credentials_factory)
        self._admit = admit
        self.connectors = ConnectorPool()

    async def close(self) -> None:
        await self.connectors.close()

    async def authenticate_request(self, activity: Any, auth_header: str) -> Any:
        result = await self._authenticate(activity, auth_header)
        # After the token: a refusal is only audited for callers who proved who they are.
        refusal = self._admit(activity)
        if refusal is not None:
            raise ActivityRefused(refusal, activity)
        result.connector_factory = AsyncConnectorFactory(result.connector_factory, self.connectors)
        return result

    def create_connector_factory(self, claims_identity: ClaimsIdentity) -> ConnectorFactory:
        inner = super().create_connector_factory(claims_identity)
        return AsyncConnectorFactory(inner, self.connectors)

    async def create_user_token_client(self, claims_identity: ClaimsIdentity) -> UserTokenClient:
        inner = super().create_user_token_client
        return _LazyUserTokenClient(lambda: inner(claims_identity))

    async def _authenticate(self, activity: Any, auth_header: str) -> Any:
        # CloudAdapter passes "" for a missing header; the parameterized (override) path
        # only recognises None as "no header" and then crashes on "" with AttributeError.
        header = auth_header or None
        try:
            # On a key-cache miss botbuilder fetches the OpenID metadata with blocking
            # `requests` and no timeout; on a worker thread that stalls one request, not the
            # bot's event loop (progress cards, watcher, every other chat).
            return await asyncio.wait_for(
                asyncio.to_thread(self._authenticate_blocking, activity, header),
                AUTH_TIMEOUT_S,
            )
        except PermissionError as exc:
            log.warning("inbound request rejected: %s", exc)
            raise
        except TimeoutError as exc:
            log.error("inbound request rejected: token validation took over %ss", AUTH_TIMEOUT_S)
            raise PermissionError("token validation timed out") from exc
        except Exception as exc:
            # The class name tells a bad token (jwt errors, IndexError for an unknown kid)
            # from unreachable signing keys (requests errors); the token is never logged.
            log.warning(
                "inbound request rejected: token validation failed (%s)", type(exc).__name__
            )
            raise PermissionError("invalid token") from exc

    def _authenticate_blocking(self, activity: Any, header: str | None) -> Any:
        inner = ConfigurationBotFrameworkAuthentication.authenticate_request
        return asyncio.run(inner(self, activity, header))


def make_authentication(
    creds: BotCredentials, mode: Mode, overrides: AuthOverrides | None = None
) -> StrictBotFrameworkAuthentication:
    """The authentication CloudAdapter uses: JWT-checked in teams mode, open in local mode;
    then the admission checks of `mode` (bot/teams/admission.py)."""
    factory = None
    if overrides is not None and overrides.static_token is not None:
        factory = _StaticTokenCredentialsFactory(creds.app_id or "", overrides.static_token)

    def admit(activity: Any) -> Refusal | None:
        return admission_refusal(activity, mode)

    return StrictBotFrameworkAuthentication(
        _Settings(creds, overrides), admit=admit, credentials_factory=factory
    )
