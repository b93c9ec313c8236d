"""Issue 10, sign-in: throttling with back-off, user management, expiring session keys,
the session cookie with its CSRF rule, and event streams that close when their key dies —
all over HTTP against a real server whose clock the test moves."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from jitstock.server.api.signin_throttle import (
    ADDRESS_FREE_FAILURES,
    BACKOFF_BASE_S,
    USER_FREE_FAILURES,
)
from jitstock.server.db.models import ApiKey
from jitstock.server.db.session import transaction
from jitstock.server.live import LiveHub
from tests.server.api.conftest import Api
from tests.server.server_support import wait_until

PASSWORD = "correct horse battery"
COOKIE = "jitstock_session"
CSRF = {"X-Requested-With": "test"}
BURST = 60


def add_user(
    api: Api, name: str, role: str = "viewer", password: str = PASSWORD
) -> None:
    r = api.client(api.admin_key).post(
        "/api/v1/users", json={"username": name, "password": password, "role": role}
    )
    assert r.status_code == 201, r.text


def login(api: Api, name: str, password: str = PASSWORD, **body: Any) -> httpx.Response:
    """A password sign-in that returns the session key in the body."""
    return httpx.post(
        api.url + "/api/v1/login",
        json={"username": name, "password": password, "session": "bearer", **body},
        timeout=30,
    )


def session_key(api: Api, name: str, password: str = PASSWORD) -> str:
    r = login(api, name, password)
    assert r.status_code == 200, r.text
    return str(r.json()["key"])


def advance(api: Api, seconds: float) -> None:
    api.ctx.clock.now_ms += int(seconds * 1000)


def me_status(api: Api, key: str) -> int:
    return api.client(key).get("/api/v1/me").status_code


# --- throttling --------------------------------------------------------------------------


def test_a_burst_of_wrong_passwords_is_cut_off_and_the_right_one_waits_out_the_backoff(
    api: Api,
) -> None:
    add_user(api, "alice")
    # all at once: the attempts inside scrypt must not let the others through
    with ThreadPoolExecutor(BURST) as pool:
        answers = list(
            pool.map(lambda i: login(api, "alice", f"guess-{i}"), range(BURST))
        )
    codes = sorted(r.status_code for r in answers)
    assert codes.count(401) == USER_FREE_FAILURES, codes
    assert codes.count(429) == BURST - USER_FREE_FAILURES, codes
    refused = next(r for r in answers if r.status_code == 429)
    assert int(refused.headers["Retry-After"]) == BACKOFF_BASE_S

    # the right password right after the burst is refused too, until the back-off passes
    r = login(api, "alice")
    assert r.status_code == 429, r.text
    wait_s = int(r.headers["Retry-After"])
    advance(api, wait_s - 1)
    assert login(api, "alice").status_code == 429
    advance(api, 1)
    r = login(api, "alice")
    assert r.status_code == 200, r.text
    # a success starts the name afresh: one mistake is a mistake again, not a lock
    assert login(api, "alice", "typo").status_code == 401
    assert login(api, "alice").status_code == 200


def test_each_further_failure_doubles_the_lock(api: Api) -> None:
    add_user(api, "bob")
    for i in range(USER_FREE_FAILURES):
        assert login(api, "bob", f"wrong-{i}").status_code == 401
    waits = []
    for _ in range(3):
        r = login(api, "bob", "still wrong")
        assert r.status_code == 429
        waits.append(int(r.headers["Retry-After"]))
        advance(api, waits[-1])
        assert login(api, "bob", "wrong again").status_code == 401
    assert waits == [BACKOFF_BASE_S, 2 * BACKOFF_BASE_S, 4 * BACKOFF_BASE_S]


def test_unknown_names_cost_the_same_and_lock_the_address(api: Api) -> None:
    add_user(api, "carol")
    # one guess per made-up name never locks a name, but the address runs out of tries
    for i in range(ADDRESS_FREE_FAILURES):
        r = login(api, f"nobody-{i}", "x")
        assert r.status_code == 401, r.text
        assert r.json()["detail"] == "wrong user name or password"
    r = login(api, "nobody-else", "x")
    assert r.status_code == 429
    assert "address" in r.json()["detail"]
    # the address is locked for everyone behind it, right password or not
    assert login(api, "carol").status_code == 429
    advance(api, int(r.headers["Retry-After"]))
    assert login(api, "carol").status_code == 200


def test_an_admin_password_reset_lifts_the_lock_on_the_name(api: Api) -> None:
    add_user(api, "dave")
    for i in range(USER_FREE_FAILURES):
        login(api, "dave", f"w{i}")
    assert login(api, "dave").status_code == 429
    r = api.client(api.admin_key).put(
        "/api/v1/users/dave/password", json={"password": "a new password"}
    )
    assert r.status_code == 204, r.text
    assert login(api, "dave", "a new password").status_code == 200


# --- user management ---------------------------------------------------------------------


def test_admin_disables_enables_and_deletes_users_and_each_ends_their_sessions(
    api: Api,
) -> None:
    admin = api.client(api.admin_key)
    add_user(api, "erin", role="manager")
    key = session_key(api, "erin")
    assert api.client(key).get("/api/v1/me").json()["role"] == "manager"

    r = admin.patch("/api/v1/users/erin", json={"disabled": True})
    assert r.status_code == 200, r.text
    assert r.json()["disabled"] is True
    assert me_status(api, key) == 401
    assert login(api, "erin").status_code == 401  # right password, disabled user

    assert (
        admin.patch("/api/v1/users/erin", json={"disabled": False}).status_code == 200
    )
    key = session_key(api, "erin")
    assert me_status(api, key) == 200

    # a role change ends the sessions too (a session key carries the role it was issued with)
    r = admin.patch("/api/v1/users/erin", json={"role": "viewer"})
    assert r.json()["role"] == "viewer"
    assert me_status(api, key) == 401
    key = session_key(api, "erin")
    assert api.client(key).get("/api/v1/me").json()["role"] == "viewer"

    users = admin.get("/api/v1/users").json()
    assert [u["username"] for u in users] == ["erin"]
    assert "password_hash" not in users[0]

    assert admin.delete("/api/v1/users/erin").status_code == 204
    assert me_status(api, key) == 401
    assert login(api, "erin").status_code == 401
    assert admin.get("/api/v1/users").json() == []
    assert admin.delete("/api/v1/users/erin").status_code == 404
    actions = [a["action"] for a in admin.get("/api/v1/audit").json()]
    assert {"user.create", "user.update", "user.delete", "user.login"} <= set(actions)


def test_admin_sets_a_password_old_one_and_all_sessions_stop_working(api: Api) -> None:
    add_user(api, "frank")
    keys = [session_key(api, "frank") for _ in range(2)]
    r = api.client(api.admin_key).put(
        "/api/v1/users/frank/password", json={"password": "brand new secret"}
    )
    assert r.status_code == 204, r.text
    assert [me_status(api, k) for k in keys] == [401, 401]
    assert login(api, "frank").status_code == 401
    assert login(api, "frank", "brand new secret").status_code == 200


def test_user_management_is_for_admins_only(api: Api) -> None:
    add_user(api, "gina")
    manager = api.client(api.new_key("manager"))
    gina = api.client(session_key(api, "gina"))
    for client in (manager, gina):
        assert client.get("/api/v1/users").status_code == 403
        assert (
            client.patch("/api/v1/users/gina", json={"disabled": True}).status_code
            == 403
        )
        assert (
            client.put(
                "/api/v1/users/gina/password", json={"password": "takeover!!"}
            ).status_code
            == 403
        )
        assert client.delete("/api/v1/users/gina").status_code == 403


def test_new_passwords_have_a_minimum_length_and_bodies_are_strict(api: Api) -> None:
    admin = api.client(api.admin_key)
    r = admin.post(
        "/api/v1/users", json={"username": "h", "password": "short", "role": "viewer"}
    )
    assert r.status_code == 422
    assert "password" in r.text
    add_user(api, "hank")
    r = admin.patch("/api/v1/users/hank", json={"disabled": "yes"})
    assert r.status_code == 422
    r = admin.patch("/api/v1/users/hank", json={"password": "sneaky-change"})
    assert r.status_code == 422


def test_users_change_their_own_password_with_the_old_one(api: Api) -> None:
    add_user(api, "ivy")
    mine, other = session_key(api, "ivy"), session_key(api, "ivy")
    me = api.client(mine)
    r = me.post(
        "/api/v1/me/password",
        json={"old_password": "not it", "new_password": "my new password"},
    )
    assert r.status_code == 403, r.text
    r = me.post(
        "/api/v1/me/password",
        json={"old_password": PASSWORD, "new_password": "my new password"},
    )
    assert r.status_code == 204, r.text
    # this session stays, the other one ends, and only the new password signs in
    assert me_status(api, mine) == 200
    assert me_status(api, other) == 401
    assert login(api, "ivy").status_code == 401
    assert login(api, "ivy", "my new password").status_code == 200
    # a machine key has no password to change
    r = api.client(api.admin_key).post(
        "/api/v1/me/password", json={"old_password": "x", "new_password": "yyyyyyyy"}
    )
    assert r.status_code == 409


def test_guessing_the_old_password_through_a_stolen_session_is_throttled(
    api: Api,
) -> None:
    add_user(api, "jack")
    me = api.client(session_key(api, "jack"))
    codes = [
        me.post(
            "/api/v1/me/password",
            json={"old_password": f"guess {i}", "new_password": "whatever-new"},
        ).status_code
        for i in range(USER_FREE_FAILURES + 2)
    ]
    assert codes == [403] * USER_FREE_FAILURES + [429, 429]


# --- expiry --------------------------------------------------------------------------------


def test_session_keys_expire_after_the_configured_ttl_machine_keys_do_not(
    make_api: Any,
) -> None:
    api = make_api(session_ttl_s=3600)
    add_user(api, "kim")
    r = login(api, "kim")
    key, expires_ms = r.json()["key"], r.json()["expires_ms"]
    assert expires_ms == api.ctx.clock.now_ms + 3_600_000
    assert api.client(key).get("/api/v1/me").json()["expires_ms"] == expires_ms
    advance(api, 3599)
    assert me_status(api, key) == 200
    advance(api, 1)
    assert me_status(api, key) == 401
    assert me_status(api, api.admin_key) == 200
    advance(api, 365 * 86400)
    assert me_status(api, api.admin_key) == 200


def test_the_default_session_lasts_a_shift_not_forever(api: Api) -> None:
    add_user(api, "lea")
    r = login(api, "lea")
    assert r.json()["expires_ms"] - api.ctx.clock.now_ms == 12 * 3600 * 1000
    advance(api, 12 * 3600)
    assert me_status(api, r.json()["key"]) == 401


# --- the session cookie ---------------------------------------------------------------------


def cookie_login(
    api: Api, name: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.post(
        api.url + "/api/v1/login",
        json={"username": name, "password": PASSWORD},
        headers=CSRF if headers is None else headers,
        timeout=30,
    )


def test_cookie_sign_in_sets_an_httponly_samesite_cookie_and_no_key_in_the_body(
    make_api: Any,
) -> None:
    api = make_api(session_ttl_s=7200)
    add_user(api, "max", role="manager")
    # a cross-site form cannot add a custom header: a cookie sign-in without it is refused
    assert cookie_login(api, "max", headers={}).status_code == 403
    r = cookie_login(api, "max")
    assert r.status_code == 200, r.text
    assert r.json()["key"] is None
    assert r.json()["role"] == "manager"
    set_cookie = r.headers["set-cookie"]
    attrs = [a.strip().lower() for a in set_cookie.split(";")]
    assert attrs[0].startswith(COOKIE + "=")
    assert {"httponly", "samesite=strict", "path=/", "max-age=7200"} <= set(attrs)
    assert "secure" not in attrs  # plain http here; behind TLS the cookie is Secure

    cookie = r.cookies[COOKIE]
    browser = httpx.Client(base_url=api.url, cookies={COOKIE: cookie}, timeout=10)
    assert browser.get("/api/v1/me").json()["name"] == "login:max"
    assert browser.get("/api/v1/floor").status_code == 200


def test_cookie_requests_that_change_state_need_the_header_and_a_same_origin(
    api: Api,
) -> None:
    add_user(api, "nina")
    cookie = cookie_login(api, "nina").cookies[COOKIE]
    browser = httpx.Client(base_url=api.url, cookies={COOKIE: cookie}, timeout=10)
    body = {"old_password": PASSWORD, "new_password": "changed by csrf"}
    r = browser.post("/api/v1/me/password", json=body)
    assert r.status_code == 403
    assert "X-Requested-With" in r.json()["detail"]
    r = browser.post(
        "/api/v1/me/password",
        json=body,
        headers={**CSRF, "Origin": "http://evil.example"},
    )
    assert r.status_code == 403
    assert login(api, "nina").status_code == 200  # password unchanged
    # a machine sending its key as a header needs neither
    assert api.client(api.admin_key).get("/api/v1/users").status_code == 200
    r = browser.post("/api/v1/logout", headers={**CSRF, "Origin": api.url})
    assert r.status_code == 204
    cleared = r.headers["set-cookie"].lower()
    assert cleared.startswith(COOKIE + "=")
    assert "max-age=0" in cleared
    assert browser.get("/api/v1/me").status_code == 401


def test_an_api_key_opens_a_browser_session_that_ends_with_the_key(api: Api) -> None:
    admin = api.client(api.admin_key)
    created = admin.post("/api/v1/keys", json={"name": "tablet", "role": "viewer"})
    key_id, key = created.json()["id"], created.json()["key"]
    r = httpx.post(
        api.url + "/api/v1/session",
        headers={"Authorization": f"Bearer {key}", **CSRF},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    cookie = r.cookies[COOKIE]
    assert cookie != key  # the machine key itself never sits in the browser
    browser = httpx.Client(base_url=api.url, cookies={COOKIE: cookie}, timeout=10)
    assert browser.get("/api/v1/me").json()["name"] == "session:tablet"
    assert admin.delete(f"/api/v1/keys/{key_id}").status_code == 204
    assert browser.get("/api/v1/me").status_code == 401
    # a session cannot mint further sessions
    other = admin.post("/api/v1/keys", json={"name": "t2", "role": "viewer"}).json()
    cookie = httpx.post(
        api.url + "/api/v1/session",
        headers={"Authorization": f"Bearer {other['key']}"},
        timeout=10,
    ).cookies[COOKIE]
    r = httpx.post(
        api.url + "/api/v1/session",
        headers={"Authorization": f"Bearer {cookie}"},
        timeout=10,
    )
    assert r.status_code == 409


# --- event streams -------------------------------------------------------------------------


class Stream:
    """An SSE response read in a thread: the lines so far and whether the server ended it."""

    def __init__(self, api: Api, **client: Any) -> None:
        self.lines: list[str] = []
        self.status: int | None = None
        self.ended = threading.Event()
        self._client = httpx.Client(
            base_url=api.url, timeout=httpx.Timeout(10, read=120), **client
        )
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            with self._client.stream("GET", "/api/v1/stream") as r:
                self.status = r.status_code
                for line in r.iter_lines():
                    self.lines.append(line)
        finally:
            self.ended.set()
            self._client.close()

    def wait_open(self) -> None:
        wait_until(lambda: "event: hello" in self.lines, what="the hello event")

    def wait_ended(self) -> None:
        wait_until(self.ended.is_set, what="the stream to end")


def with_hub(api: Api, key_check_s: float) -> LiveHub:
    """Give the test server a live hub (ServerApp has one; the API fixture does not)."""
    hub = LiveHub(api.ctx.session_factory, clock=api.ctx.clock, key_check_s=key_check_s)
    api.ctx.live = hub  # type: ignore[attr-defined]
    return hub


# An hour: only the push on revocation can end the stream within the test's wait.
NO_RECHECK_S = 3600.0


@pytest.mark.parametrize(
    "revoke", ["logout", "disable", "delete", "admin_password", "own_password"]
)
def test_revoking_the_session_closes_its_open_event_stream_at_once(
    api: Api, revoke: str
) -> None:
    hub = with_hub(api, NO_RECHECK_S)
    add_user(api, "olga")
    key = session_key(api, "olga")
    other = session_key(api, "olga")
    stream = Stream(api, headers={"Authorization": f"Bearer {key}"})
    stream.wait_open()
    assert hub.subscribers == 1
    admin = api.client(api.admin_key)
    if revoke == "logout":
        assert api.client(key).post("/api/v1/logout").status_code == 204
    elif revoke == "disable":
        admin.patch("/api/v1/users/olga", json={"disabled": True})
    elif revoke == "delete":
        admin.delete("/api/v1/users/olga")
    elif revoke == "admin_password":
        admin.put("/api/v1/users/olga/password", json={"password": "reset by admin"})
    else:  # the user changes the password from another session: this one ends
        r = api.client(other).post(
            "/api/v1/me/password",
            json={"old_password": PASSWORD, "new_password": "changed elsewhere"},
        )
        assert r.status_code == 204
    stream.wait_ended()
    assert stream.status == 200
    wait_until(lambda: hub.subscribers == 0, what="the subscriber gone")
    assert me_status(api, key) == 401


def test_a_cookie_stream_closes_when_its_api_key_is_revoked(api: Api) -> None:
    with_hub(api, NO_RECHECK_S)
    created = api.client(api.admin_key).post(
        "/api/v1/keys", json={"name": "wallboard", "role": "viewer"}
    )
    cookie = httpx.post(
        api.url + "/api/v1/session",
        headers={"Authorization": f"Bearer {created.json()['key']}"},
        timeout=10,
    ).cookies[COOKIE]
    stream = Stream(api, cookies={COOKIE: cookie})
    stream.wait_open()
    api.client(api.admin_key).delete(f"/api/v1/keys/{created.json()['id']}")
    stream.wait_ended()


def test_a_stream_notices_a_revocation_it_was_not_told_about_and_its_expiry(
    make_api: Any,
) -> None:
    api = make_api(session_ttl_s=600)
    with_hub(api, key_check_s=0.05)
    add_user(api, "pia")
    # revoked behind the hub's back (another server process on the same DB)
    key = session_key(api, "pia")
    stream = Stream(api, headers={"Authorization": f"Bearer {key}"})
    stream.wait_open()
    with transaction(api.ctx.session_factory) as s:
        s.execute(update(ApiKey).where(ApiKey.username == "pia").values(revoked=True))
    stream.wait_ended()
    # and a session that simply runs out
    key = session_key(api, "pia")
    stream = Stream(api, headers={"Authorization": f"Bearer {key}"})
    stream.wait_open()
    advance(api, 600)
    stream.wait_ended()


def test_the_stream_takes_no_key_in_its_url(api: Api) -> None:
    with_hub(api, NO_RECHECK_S)
    r = httpx.get(api.url + "/api/v1/stream", params={"key": api.admin_key}, timeout=10)
    assert r.status_code == 401


def test_with_auth_off_the_page_needs_no_session_and_the_stream_stays_open(
    make_api: Any,
) -> None:
    api = make_api(auth="off", bootstrap_admin_key=None)
    hub = with_hub(api, key_check_s=0.05)
    me = httpx.get(api.url + "/api/v1/me", timeout=10).json()
    assert (me["auth"], me["username"], me["expires_ms"]) == ("off", None, None)
    stream = Stream(api)
    stream.wait_open()
    # several key re-checks later it is still open: there is no key to expire
    wait_until(lambda: ": keepalive" in stream.lines, what="a keep-alive")
    assert not stream.ended.is_set()
    hub.stop()  # as the server does on shutdown: every open stream ends
    stream.wait_ended()
