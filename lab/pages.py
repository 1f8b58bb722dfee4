"""The portal's HTML pages: a login page and the releases list, for the DR suites to test.

Real pages a browser renders, so lab/dr-suites can run axe-core and user-flow checks against
them. Clean, they have no accessibility violation axe reports (lang, title, landmarks, a
heading, labelled fields, readable contrast); with the fault `a11y` on a page they carry
the classic ones: an image without alt text and a field without a label (critical), grey
on white text (serious), an empty link (serious).
"""

from __future__ import annotations

import html
import secrets
from collections.abc import Sequence
from typing import Final

# The portal's demo account (lab/README.md); the DR regression suite signs in with it.
PORTAL_USER: Final = "mcms-operator"
PORTAL_PASSWORD: Final = "lab-portal"  # noqa: S105  # demo only, documented
SESSION_COOKIE: Final = "mcms_session"

_STYLE: Final = (
    "body{font-family:sans-serif;margin:0;color:#1b1b1b;background:#fff}"
    "header,main,footer{padding:1rem 2rem}header{background:#0b3d91;color:#fff}"
    "table{border-collapse:collapse}th,td{border:1px solid #555;padding:.3rem .6rem}"
    ".error{color:#a00000}.faint{color:#c8c8c8}"
)


def new_session() -> str:
    return secrets.token_hex(16)


def _page(title: str, host: str, main: str) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)} — MCMS Portal</title><style>{_STYLE}</style></head>"
        f"<body><header><p>MCMS Portal · {html.escape(host)}</p></header>"
        f"<main>{main}</main>"
        "<footer><p>MCMS simulated lab</p></footer></body></html>"
    )


def login_page(host: str, *, error: str | None = None, broken: bool = False) -> str:
    """The sign-in form; `broken` injects the accessibility violations of the a11y fault."""
    alert = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    if broken:
        fields = (
            '<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" width="120" height="40">'
            '<p class="faint">Use your operator account.</p>'
            '<p><input id="username" name="username" autocomplete="username"></p>'
        )
    else:
        fields = (
            "<p>Use your operator account.</p>"
            '<p><label for="username">User name</label> '
            '<input id="username" name="username" autocomplete="username"></p>'
        )
    form = (
        '<form method="post" action="/login">'
        f"{fields}"
        '<p><label for="password">Password</label> '
        '<input id="password" name="password" type="password" '
        'autocomplete="current-password"></p>'
        '<p><button type="submit">Sign in</button></p></form>'
    )
    return _page("Sign in", host, f"<h1>Sign in to MCMS</h1>{alert}{form}")


def releases_page(
    host: str, releases: Sequence[str], current: str | None, *, broken: bool = False
) -> str:
    """The releases kept on the host, the current one marked; `broken` as in login_page."""
    rows = "".join(
        f"<tr><td>{html.escape(r)}</td><td>{'current' if r == current else 'kept'}</td></tr>"
        for r in releases
    )
    extra = '<p><a href="/login"></a></p><p class="faint">Read only.</p>' if broken else ""
    main = (
        f"<h1>Releases on {html.escape(host)}</h1>"
        f'<p id="current">Current release: {html.escape(current or "none")}</p>'
        '<table><caption>Release folders</caption><thead><tr><th scope="col">Version</th>'
        f'<th scope="col">State</th></tr></thead><tbody>{rows}</tbody></table>'
        f'{extra}<p><a href="/login">Sign out</a></p>'
    )
    return _page("Releases", host, main)
