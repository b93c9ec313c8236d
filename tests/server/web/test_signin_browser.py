"""Issue 10, the browser side of sign-in: headless Chromium against a live server.

The session is an HttpOnly, SameSite=Strict cookie: nothing in localStorage, no key in
any URL (the event stream included), and a revoked session closes the live stream and
brings the sign-in form back.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from jitstock.server.app import ServerApp
from tests.server.web.conftest import ADMIN_KEY, _server, sign_in
from tests.services import Mosquitto
from tests.waits import BROWSER_WAIT_MS

COOKIE = "jitstock_session"
PASSWORD = "floor-shift-2"


@dataclass
class Site:
    """A running server without plant: enough for signing in."""

    app: ServerApp
    url: str

    def api(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """A request with the bootstrap admin key."""
        return httpx.request(
            method,
            self.url + path,
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            timeout=30,
            **kw,
        )

    def add_user(self, name: str, role: str = "manager") -> None:
        """A dashboard user with PASSWORD."""
        r = self.api(
            "POST",
            "/api/v1/users",
            json={"username": name, "password": PASSWORD, "role": role},
        )
        assert r.status_code == 201, r.text


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp: Path = tmp_path_factory.mktemp("signin-site")
    (tmp / "mosquitto").mkdir()
    broker = Mosquitto(tmp / "mosquitto")
    broker.start()
    try:
        with _server(tmp, f"sqlite:///{tmp / 'state.db'}", broker.url) as (app, url):
            yield Site(app, url)
    finally:
        broker.stop()


class Recorder:
    """Every request the page makes: URL and headers."""

    def __init__(self, page: Any) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        page.on("request", lambda req: self.requests.append((req.url, req.headers)))

    def urls(self) -> list[str]:
        return [u for u, _h in self.requests]


def new_page(browser: Any, site: Site) -> tuple[Any, Recorder]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    rec = Recorder(page)
    page.goto(site.url + "/")
    return page, rec


def session_cookie(page: Any) -> dict[str, Any]:
    cookies = [c for c in page.context.cookies() if c["name"] == COOKIE]
    assert len(cookies) == 1, page.context.cookies()
    return cookies[0]  # type: ignore[no-any-return]


def test_password_sign_in_keeps_the_session_in_an_httponly_cookie_only(
    browser: Any, site: Site
) -> None:
    site.add_user("rita")
    page, rec = new_page(browser, site)
    try:
        sign_in(page, user="rita", password=PASSWORD)
        page.locator("#live.on").wait_for(timeout=BROWSER_WAIT_MS)
        assert page.locator("#who").inner_text() == "login:rita · manager"

        cookie = session_cookie(page)
        assert cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Strict"
        assert cookie["path"] == "/"
        assert COOKIE not in page.evaluate("() => document.cookie")
        assert page.evaluate("() => localStorage.length") == 0
        assert page.evaluate("() => sessionStorage.length") == 0
        # the form keeps nothing either
        assert page.input_value("#signin-pass") == ""

        urls = rec.urls()
        assert any(u.endswith("/api/v1/stream") for u in urls), urls
        assert not [u for u in urls if "key=" in u]
        for url, headers in rec.requests:
            assert "authorization" not in headers, url
            assert "x-api-key" not in headers, url
        # the cookie is the session: a manager's request through the page works
        status = page.evaluate(
            """async () => (await fetch('/api/v1/floor', {headers: {'X-Requested-With': 'jitstock'}})).status"""
        )
        assert status == 200
    finally:
        page.context.close()


def test_an_api_key_opens_a_cookie_session_of_its_own_and_sign_out_ends_it(
    browser: Any, site: Site
) -> None:
    page, rec = new_page(browser, site)
    try:
        sign_in(page, key=ADMIN_KEY)
        page.locator("#live.on").wait_for(timeout=BROWSER_WAIT_MS)
        assert page.locator("#who").inner_text() == "session:bootstrap-admin · admin"
        cookie = session_cookie(page)
        assert cookie["httpOnly"] is True
        assert cookie["value"] != ADMIN_KEY
        assert page.input_value("#signin-key") == ""
        assert page.evaluate("() => localStorage.length") == 0
        # the key crossed the wire once, as a header of the session request
        with_key = [u for u, h in rec.requests if ADMIN_KEY in str(h)]
        assert len(with_key) == 1
        assert with_key[0].endswith("/api/v1/session")
        assert not [u for u in rec.urls() if ADMIN_KEY in u or "key=" in u]

        page.click("#signout")
        page.locator("#signin").wait_for(state="visible", timeout=BROWSER_WAIT_MS)
        assert not [c for c in page.context.cookies() if c["name"] == COOKIE]
        r = httpx.get(
            site.url + "/api/v1/me", cookies={COOKIE: cookie["value"]}, timeout=10
        )
        assert r.status_code == 401
        assert site.api("GET", "/api/v1/me").status_code == 200  # the API key lives on
    finally:
        page.context.close()


def test_disabling_the_user_closes_the_live_stream_and_asks_for_sign_in(
    browser: Any, site: Site
) -> None:
    site.add_user("sam", role="viewer")
    page, _rec = new_page(browser, site)
    try:
        sign_in(page, user="sam", password=PASSWORD)
        page.locator("#live.on").wait_for(timeout=BROWSER_WAIT_MS)
        r = site.api("PATCH", "/api/v1/users/sam", json={"disabled": True})
        assert r.status_code == 200, r.text
        page.locator("#signin").wait_for(state="visible", timeout=BROWSER_WAIT_MS)
        assert page.locator("#live").get_attribute("class") == "live off"
    finally:
        page.context.close()


def test_a_user_changes_their_own_password_on_the_page(
    browser: Any, site: Site
) -> None:
    site.add_user("tess", role="viewer")
    page, _rec = new_page(browser, site)
    try:
        sign_in(page, user="tess", password=PASSWORD)
        page.click("#account-link")
        page.fill("#pw-old", PASSWORD)
        page.fill("#pw-new", "a longer passphrase")
        page.fill("#pw-again", "a longer passphrase")
        page.click("#password-form button[type=submit]")
        page.locator("#password-result").filter(has_text="password changed").wait_for(
            timeout=BROWSER_WAIT_MS
        )
        assert page.locator("#who").inner_text() == "login:tess · viewer"
        login = {"username": "tess", "session": "bearer"}
        r = httpx.post(
            site.url + "/api/v1/login",
            json={**login, "password": "a longer passphrase"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        r = httpx.post(
            site.url + "/api/v1/login", json={**login, "password": PASSWORD}, timeout=30
        )
        assert r.status_code == 401
    finally:
        page.context.close()
