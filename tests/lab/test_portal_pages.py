"""The portal's HTML pages: sign in, the releases list, and the faults the DR suites look for."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import pytest

from lab.core import Lab
from lab.pages import PORTAL_PASSWORD, PORTAL_USER, SESSION_COOKIE

pytest_plugins = ["tests.lab_fixtures"]


async def fetch(
    session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, str, dict[str, str]]:
    async with session.request(method, url, allow_redirects=False, **kwargs) as r:
        return r.status, await r.text(), dict(r.headers)


async def sign_in(lab: Lab, host: str, session: aiohttp.ClientSession) -> str:
    status, _, headers = await fetch(
        session,
        "POST",
        lab.http_base(host) + "/login",
        data={"username": PORTAL_USER, "password": PORTAL_PASSWORD},
    )
    assert (status, headers["Location"]) == (303, "/releases")
    cookie = re.search(rf"{SESSION_COOKIE}=([0-9a-f]+)", headers["Set-Cookie"])
    assert cookie and "HttpOnly" in headers["Set-Cookie"]
    return cookie.group(1)


async def test_signing_in_opens_the_releases_list_with_the_current_release_marked(
    lab: Lab, lab_host: str
) -> None:
    async with aiohttp.ClientSession() as session:
        status, page, _ = await fetch(session, "GET", lab.http_base(lab_host) + "/login")
        assert status == 200
        assert '<label for="username">User name</label>' in page and '<html lang="en">' in page
        token = await sign_in(lab, lab_host, session)
        status, page, _ = await fetch(
            session,
            "GET",
            lab.http_base(lab_host) + "/releases",
            headers={"Cookie": f"{SESSION_COOKIE}={token}"},
        )
    assert status == 200
    assert "<h1>Releases on lab-web01</h1>" in page
    assert re.findall(r"<td>([\d.]+)</td><td>(\w+)</td>", page) == [
        ("1.4.0", "kept"),
        ("1.4.1", "kept"),
        ("1.4.2", "current"),
    ]


async def test_a_wrong_password_or_no_session_gets_nothing(lab: Lab, lab_host: str) -> None:
    base = lab.http_base(lab_host)
    async with aiohttp.ClientSession() as session:
        status, page, _ = await fetch(
            session, "POST", base + "/login", data={"username": PORTAL_USER, "password": "x"}
        )
        assert status == 401 and 'role="alert">Wrong user name or password.' in page
        status, _, headers = await fetch(session, "GET", base + "/releases")
        assert (status, headers["Location"]) == (303, "/login")


async def test_a_restarted_site_forgets_its_sessions_as_a_recycled_pool_does(
    lab: Lab, lab_host: str
) -> None:
    async with aiohttp.ClientSession() as session:
        token = await sign_in(lab, lab_host, session)
        lab.apply(lab_host, "site-control", {"Site": "MCMS.Portal", "Action": "Stop"})
        lab.apply(lab_host, "site-control", {"Site": "MCMS.Portal", "Action": "Start"})
        status, _, _ = await fetch(
            session,
            "GET",
            lab.http_base(lab_host) + "/releases",
            headers={"Cookie": f"{SESSION_COOKIE}={token}"},
        )
    assert status == 303


@pytest.mark.parametrize(
    ("page", "present", "absent"),
    [
        ("login", ['<img src="data:image/gif', 'class="faint"'], ['<label for="username">']),
        ("releases", ['<a href="/login"></a>', 'class="faint"'], []),
    ],
)
async def test_the_a11y_fault_puts_violations_on_that_page_only(
    lab: Lab, lab_host: str, page: str, present: list[str], absent: list[str]
) -> None:
    async with aiohttp.ClientSession() as session:
        token = await sign_in(lab, lab_host, session)
        status, _, _ = await fetch(
            session,
            "PUT",
            f"{lab.control_url}/faults/{lab_host}/{page}",
            json={"mode": "a11y"},
        )
        assert status == 200
        pages = {}
        for name in ("login", "releases"):
            _, pages[name], _ = await fetch(
                session,
                "GET",
                f"{lab.http_base(lab_host)}/{name}",
                headers={"Cookie": f"{SESSION_COOKIE}={token}"},
            )
    assert all(p in pages[page] for p in present)
    assert not any(a in pages[page] for a in absent)
    other = "releases" if page == "login" else "login"
    assert 'class="faint"' not in pages[other]


async def test_page_faults_break_one_page_and_unknown_modes_are_refused(
    lab: Lab, lab_host: str
) -> None:
    async with aiohttp.ClientSession() as session:
        status, body, _ = await fetch(
            session, "PUT", f"{lab.control_url}/faults/{lab_host}/login", json={"mode": "hang"}
        )
        assert status == 400 and "a11y | down | error | slow" in body
        lab.set_fault(lab_host, "releases", "error")
        token = await sign_in(lab, lab_host, session)
        status, _, _ = await fetch(
            session,
            "GET",
            lab.http_base(lab_host) + "/releases",
            headers={"Cookie": f"{SESSION_COOKIE}={token}"},
        )
        assert status == 500
        status, _, _ = await fetch(session, "GET", lab.http_base(lab_host) + "/health")
        assert status == 200
