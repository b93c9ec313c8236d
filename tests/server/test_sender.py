"""Webhook POSTs from a child process (jitstock.server.sender): the dispatcher's retries,
verdicts and signatures work through it exactly as through an httpx.Client."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from jitstock.clock import REAL_CLOCK
from jitstock.server import reorder_batch
from jitstock.server.db.models import Bin
from jitstock.server.db.session import transaction
from jitstock.server.dispatch import Dispatcher, RetryPolicy
from jitstock.server.sender import ProcessClient
from tests.server.db_factories import seed
from tests.server.pki import Pki
from tests.server.test_dispatch import (
    FAST,
    _attempts,
    _create_order,
    _order,
    _wait_state,
)
from tests.services import free_port
from tests.waits import WAIT_S


@pytest.fixture
def client() -> Iterator[ProcessClient]:
    c = ProcessClient(timeout=2.0)
    c.start()
    yield c
    c.close()


def test_retries_then_delivery_through_the_child(
    db: Any, receiver: Any, webhook_secret: str, client: ProcessClient
) -> None:
    (bin_id,) = seed(
        db.factory, webhook_url=receiver.url, webhook_secret=webhook_secret
    )
    receiver.script(503, 429)
    order_id = _create_order(db.factory, bin_id, REAL_CLOCK.time_ms())
    with Dispatcher(db.factory, client, retry=FAST) as dispatcher:
        dispatcher.wake()
        _wait_state(db.factory, order_id, "sent")
    got = receiver.wait_for(3)
    assert [r.status for r in got] == [503, 429, 200]
    assert all(r.verified for r in got)
    assert {r.headers["webhook-id"] for r in got} == {order_id}
    assert [a.status_code for a in _attempts(db.factory, order_id)] == [503, 429, 200]


def test_transport_errors_come_back_as_the_same_httpx_exception(
    client: ProcessClient,
) -> None:
    with pytest.raises(httpx.ConnectError):
        client.post(f"http://127.0.0.1:{free_port()}/hook", content=b"{}", headers={})
    with pytest.raises(httpx.UnsupportedProtocol):
        client.post("ftp://127.0.0.1/hook", content=b"{}", headers={})


def test_a_dead_child_is_started_again(receiver: Any, client: ProcessClient) -> None:
    r = client.post(receiver.url, content=b"{}", headers={})
    assert r.status_code in (
        200,
        400,
        401,
    )  # answered (no signature: the receiver says so)
    assert client._child is not None
    client._child.proc.kill()
    client._child.proc.join(10)
    r = client.post(receiver.url, content=b"{}", headers={})
    assert r.status_code in (200, 400, 401)


class _Gate:
    """A webhook endpoint that holds every request until the test opens the gate."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.ids: list[str] = []
        self.cond = threading.Condition()
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                with gate.cond:
                    gate.ids.append(self.headers["webhook-id"])
                    gate.cond.notify_all()
                gate.open.wait(WAIT_S)
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/orders"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, n: int) -> list[str]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.ids) >= n, WAIT_S), self.ids
            return list(self.ids)

    def close(self) -> None:
        self.open.set()
        self.server.shutdown()
        self.server.server_close()


def _decide_and_claim(
    factory: Any, dispatcher: Dispatcher, bins: list[str]
) -> tuple[list[str], list[Any]]:
    """What a flush does: the bins drop to 0, their orders are decided and claimed in one
    transaction (invisible to the dispatcher's own claims until the commit)."""
    with transaction(factory) as s:
        s.execute(update(Bin).where(Bin.id.in_(bins)).values(on_hand=0))
        made = reorder_batch.decide(s, bins, REAL_CLOCK.time_ms())
        ids = [o.id for o in made]
        return ids, dispatcher.claim_created(s, ids)


def test_orders_a_flush_hands_over_leave_at_once_even_with_every_sender_busy(
    db: Any, webhook_secret: str, client: ProcessClient
) -> None:
    """Orders claimed in a flush's transaction and submitted after its commit are on
    the wire at once: their POSTs leave from the submitting thread, not after a free
    sender thread (here the only one waits for an answer the supplier holds back)."""
    gate = _Gate()
    try:
        bins = seed(
            db.factory, bins=3, webhook_url=gate.url, webhook_secret=webhook_secret
        )
        # a request timeout far longer than the test's steps: a held request is answered,
        # never timed out (a timeout would be a second attempt)
        patient = RetryPolicy(timeout_s=20.0, claim_lease_s=120.0)
        with Dispatcher(db.factory, client, retry=patient, workers=1) as dispatcher:
            ids, jobs = _decide_and_claim(db.factory, dispatcher, bins)
            assert sorted(j.order_id for j in jobs) == sorted(ids)
            dispatcher.submit(jobs)
            # all three reach the supplier while the one sender thread still waits
            assert sorted(gate.wait_for(3)) == sorted(ids)
            assert all(_order(db.factory, i).state == "created" for i in ids)
            gate.open.set()
            for i in ids:
                _wait_state(db.factory, i, "sent")
        assert [[a.n for a in _attempts(db.factory, i)] for i in ids] == [[1]] * 3
    finally:
        gate.close()


def test_a_secret_that_cannot_sign_fails_the_order_through_the_process_client(
    db: Any, receiver: Any, client: ProcessClient
) -> None:
    """An order whose POST cannot be started (its secret does not sign) is not lost in
    the hand-over: the attempt says why, and the order fails with that reason."""
    (bin_id,) = seed(
        db.factory, webhook_url=receiver.url, webhook_secret="whsec_not base64!"
    )
    with Dispatcher(db.factory, client, retry=FAST) as dispatcher:
        (order_id,), jobs = _decide_and_claim(db.factory, dispatcher, [bin_id])
        assert [j.order_id for j in jobs] == [order_id]
        dispatcher.submit(jobs)
        failed = _wait_state(db.factory, order_id, "failed")
    assert "invalid webhook_secret" in (failed.last_error or "")
    assert receiver.received == []


class _Endpoint:
    """A supplier endpoint that misbehaves on purpose, by path (raw sockets, so it can
    answer what no HTTP framework would): counts the connections it accepted."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.tls = tls
        self.connections = 0
        self.requests: list[str] = []
        self._stop = threading.Event()
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            f = conn.makefile("rb")
            while True:
                line = f.readline()
                if not line:
                    return
                path = line.split()[1].decode()
                length = 0
                while (h := f.readline()) not in (b"\r\n", b""):
                    name, _, value = h.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                f.read(length)
                self.requests.append(path)
                if path == "/hang":
                    self._stop.wait(WAIT_S)
                    return
                if path == "/drop":
                    return
                if path == "/garbage":
                    conn.sendall(b"this is not HTTP\r\n\r\n")
                    return
                if path == "/redirect":
                    conn.sendall(
                        b"HTTP/1.1 301 Moved Permanently\r\nLocation: /elsewhere\r\n"
                        b"Content-Length: 0\r\n\r\n"
                    )
                    continue
                body = b"x" * (1 << 20) if path == "/big" else b'{"ok": true}'
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"X-Answer: " + path.encode() + b"\r\n"
                    b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
                )
        except (OSError, ssl.SSLError):
            return
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


@pytest.fixture
def endpoint() -> Iterator[_Endpoint]:
    e = _Endpoint()
    yield e
    e.close()


def _post(client: ProcessClient, url: str, timeout: float = 2.0) -> httpx.Response:
    return client.post(
        url, content=b"{}", headers={"webhook-id": "o1"}, timeout=timeout
    )


def test_answers_come_back_as_httpx_responses_and_the_connection_is_reused(
    endpoint: _Endpoint, client: ProcessClient
) -> None:
    """Status and headers as the endpoint sent them; a redirect is an answer, not
    followed (a moved endpoint must be fixed, not sent a signed POST elsewhere); a
    long answer body does not break anything; the next order reuses the connection."""
    r = _post(client, endpoint.url + "/ok")
    assert (r.status_code, r.headers["x-answer"]) == (200, "/ok")
    r = _post(client, endpoint.url + "/redirect")
    assert (r.status_code, r.headers["location"]) == (301, "/elsewhere")
    r = _post(client, endpoint.url + "/big")
    assert r.status_code == 200
    for _ in range(3):
        assert _post(client, endpoint.url + "/ok").status_code == 200
    assert endpoint.requests == ["/ok", "/redirect", "/big", "/ok", "/ok", "/ok"]
    # one connection for the small answers; at most one more after the long body
    assert endpoint.connections <= 2


def test_failures_come_back_as_the_httpx_exceptions_the_dispatcher_judges(
    endpoint: _Endpoint, client: ProcessClient
) -> None:
    """An endpoint that never answers is a timeout, one that hangs up or answers
    garbage a transport error (both retried); other orders go on meanwhile."""
    with pytest.raises(httpx.TimeoutException):
        _post(client, endpoint.url + "/hang", timeout=0.5)
    with pytest.raises(httpx.TransportError) as dropped:
        _post(client, endpoint.url + "/drop")
    assert not isinstance(dropped.value, httpx.TimeoutException)
    with pytest.raises(httpx.TransportError) as garbage:
        _post(client, endpoint.url + "/garbage")
    assert not isinstance(garbage.value, httpx.TimeoutException)
    with pytest.raises(httpx.UnsupportedProtocol):
        _post(client, "mailto:orders@example.com")
    # refused URLs are not repeated: a token in one would reach last_error and alerts
    for url in ("ftp://plant:s3cret@127.0.0.1/orders", "http://plant:s3cret@[bad/x"):
        with pytest.raises(httpx.UnsupportedProtocol) as refused:
            _post(client, url)
        assert "s3cret" not in str(refused.value)
    assert _post(client, endpoint.url + "/ok").status_code == 200


def test_https_endpoints_are_checked_against_the_trusted_cas(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A supplier endpoint whose certificate no trusted CA signed is refused (a connect
    error, retried); SSL_CERT_FILE naming its private CA makes it trusted."""
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(pki.server_cert, pki.server_key)
    e = _Endpoint(tls)
    untrusting = ProcessClient(timeout=2.0)
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca))
    trusting = ProcessClient(timeout=2.0)  # the child reads the variable at its start
    try:
        trusting.start()
        monkeypatch.delenv("SSL_CERT_FILE")
        untrusting.start()
        with pytest.raises(httpx.ConnectError):
            _post(untrusting, e.url + "/ok")
        assert _post(trusting, e.url + "/ok").status_code == 200
        assert e.requests == ["/ok"]
    finally:
        trusting.close()
        untrusting.close()
        e.close()
