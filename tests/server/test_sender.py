"""Webhook POSTs from a child process (jitstock.server.sender): the dispatcher's retries,
verdicts and signatures work through it exactly as through an httpx.Client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from jitstock.clock import REAL_CLOCK
from jitstock.server.dispatch import Dispatcher
from jitstock.server.sender import ProcessClient
from tests.server.db_factories import seed
from tests.server.test_dispatch import FAST, _attempts, _create_order, _wait_state
from tests.services import free_port


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
