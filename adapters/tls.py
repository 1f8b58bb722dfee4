"""TLS for every outbound HTTPS call: the operating system's certificate store (truststore).

An internal site signed by the organisation's own CA (AD CS) is trusted wherever the OS
trusts it — the Windows certificate store, the macOS keychain, or on Linux OpenSSL's default
store (/etc/ssl/certs, which `update-ca-certificates` fills; the SSL_CERT_FILE and
SSL_CERT_DIR variables override it) — instead of certifi's public list, which no internal
CA is on. Our own HTTP clients (smoke, queue depth, OpsGenie, webhooks) pass
`client_context()`; the libraries whose clients we do not build (botbuilder's connector
client, MSAL, pywinrm's requests) get the same store from `use_os_trust_store()`, called
once when the bot starts.
"""

from __future__ import annotations

import ssl

import truststore


def client_context() -> ssl.SSLContext:
    """A client context that verifies against the OS store (read at each handshake)."""
    return truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def use_os_trust_store() -> None:
    """Make every `ssl.SSLContext` the process creates from now on verify against the OS
    store (truststore's injection, meant for applications, never for a library)."""
    truststore.inject_into_ssl()
