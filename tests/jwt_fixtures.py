"""A local Bot Framework token authority: OpenID metadata + JWKS on loopback, PyJWT minting.

botbuilder fetches signing keys with blocking `requests` from inside the event loop, so the
server runs in its own thread (an aiohttp server on the test's loop would deadlock). It
caches keys per metadata URL for 24 h, process-wide, so every `jwt_authority` publishes its
keys under a fresh URL: one test's keys can never satisfy another test.

Use: `pytest_plugins = ["tests.jwt_fixtures"]`, then the `jwt_authority` fixture:
`make_app(..., auth_overrides=jwt_authority.overrides())` and
`headers={"Authorization": jwt_authority.bearer(service_url=...)}`.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from bot.teams.auth import AuthOverrides

ISSUER = "https://api.botframework.com"  # what real Teams tokens carry
APP_ID = "11111111-2222-3333-4444-555555555555"
OUTBOUND_TOKEN = "static-outbound-token"


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: rsa.RSAPrivateKey

    def jwk(self, endorsements: list[str]) -> dict[str, Any]:
        public: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.private_key.public_key()))
        return {**public, "kid": self.kid, "use": "sig", "endorsements": endorsements}


@cache
def _rsa_key(name: str) -> rsa.RSAPrivateKey:
    # Generating a 2048-bit key costs ~50 ms: one per role, shared by the whole session.
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class OpenIdServer:
    """Serves key sets at /<set>/.well-known/openidconfiguration and /<set>/keys."""

    def __init__(self) -> None:
        self._sets: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                body = server._answer(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps(body or {}).encode())

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep pytest output clean

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def publish(self, keys: list[dict[str, Any]]) -> str:
        """Serve `keys` under a fresh path; returns its OpenID metadata URL."""
        name = uuid.uuid4().hex
        self._sets[name] = keys
        return f"{self.base_url}/{name}/.well-known/openidconfiguration"

    def _answer(self, path: str) -> dict[str, Any] | None:
        name, _, rest = path.strip("/").partition("/")
        if name not in self._sets:
            return None
        if rest == ".well-known/openidconfiguration":
            return {
                "issuer": ISSUER,
                "jwks_uri": f"{self.base_url}/{name}/keys",
                "id_token_signing_alg_values_supported": ["RS256"],
            }
        if rest == "keys":
            return {"keys": self._sets[name]}
        return None

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


@dataclass(frozen=True)
class JwtAuthority:
    """One test's authority: `key` (endorsed for msteams), `webchat_key` and
    `directline_key` are published; `foreign_key` is not, so a token it signs is refused."""

    metadata_url: str
    key: SigningKey
    webchat_key: SigningKey
    foreign_key: SigningKey
    directline_key: SigningKey
    app_id: str = APP_ID

    def overrides(self) -> AuthOverrides:
        return AuthOverrides(
            openid_metadata_url=self.metadata_url, issuer=ISSUER, static_token=OUTBOUND_TOKEN
        )

    def token(
        self,
        *,
        service_url: str,
        audience: str | None = None,
        issuer: str = ISSUER,
        expires_in: float = 3600,
        key: SigningKey | None = None,
        kid: str | None = None,
    ) -> str:
        """A token as Teams mints it (RS256, aud = app id, serviceurl claim), varied as told."""
        signer = key or self.key
        now = int(time.time())
        claims = {
            "iss": issuer,
            "aud": audience if audience is not None else self.app_id,
            "serviceurl": service_url,
            "nbf": now - 60,
            "iat": now - 60,
            "exp": now + int(expires_in),
        }
        headers = {"kid": kid if kid is not None else signer.kid}
        return jwt.encode(claims, signer.private_key, algorithm="RS256", headers=headers)

    def bearer(self, **kwargs: Any) -> str:
        return f"Bearer {self.token(**kwargs)}"


@pytest.fixture(scope="session")
def openid_server() -> Iterator[OpenIdServer]:
    server = OpenIdServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def jwt_authority(openid_server: OpenIdServer) -> JwtAuthority:
    """Fresh key ids under a fresh metadata URL (botbuilder caches keys per URL for 24 h)."""
    suffix = uuid.uuid4().hex[:8]
    key = SigningKey(f"teams-{suffix}", _rsa_key("teams"))
    webchat_key = SigningKey(f"webchat-{suffix}", _rsa_key("webchat"))
    # Same kid as the published key, different private key: only the signature is wrong.
    foreign_key = SigningKey(key.kid, _rsa_key("foreign"))
    directline_key = SigningKey(f"directline-{suffix}", _rsa_key("directline"))
    url = openid_server.publish(
        [key.jwk(["msteams"]), webchat_key.jwk(["webchat"]), directline_key.jwk(["directline"])]
    )
    return JwtAuthority(url, key, webchat_key, foreign_key, directline_key)
