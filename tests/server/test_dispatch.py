"""Order dispatch to a real HTTP supplier endpoint: signatures, retries, failures, crashes."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from jitstock.clock import REAL_CLOCK
from jitstock.server.db.models import AuditLog, Bin, Order, OrderAttempt, Site, Sku
from jitstock.server.db.session import transaction
from jitstock.server.dispatch import Dispatcher, RetryPolicy
from jitstock.server.dispatch_claim import claim_new
from jitstock.server.reorder import maybe_reorder
from jitstock.server.webhooks import parse_retry_after
from tests.server.db_factories import SITE, SKU, SUPPLIER, seed
from tests.server.webhook_receiver import WebhookContract
from tests.services import free_port
from tests.waits import WAIT_S

ROOT = Path(__file__).resolve().parents[2]
# Retries a test can wait for: milliseconds, not the production seconds.
FAST = RetryPolicy(
    timeout_s=2.0, backoff_base_s=0.01, backoff_cap_s=0.05, claim_lease_s=10.0
)


class ManualClock:
    """Wall-clock milliseconds that move only when the test says so."""

    def __init__(self, start_ms: int) -> None:
        self.now = start_ms

    def monotonic(self) -> float:
        return self.now / 1000.0

    def time_ms(self) -> int:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


class OffsetClock:
    """The real clock, ``offset_ms`` ahead (a later moment, without waiting for it)."""

    def __init__(self, offset_ms: int) -> None:
        self.offset_ms = offset_ms

    def monotonic(self) -> float:
        return REAL_CLOCK.monotonic()

    def time_ms(self) -> int:
        return REAL_CLOCK.time_ms() + self.offset_ms

    def sleep(self, seconds: float) -> None:
        REAL_CLOCK.sleep(seconds)


@pytest.fixture
def http():
    with httpx.Client() as client:
        yield client


def _create_order(factory, bin_id: str, now_ms: int) -> str:
    with transaction(factory) as s:
        b = s.get(Bin, bin_id)
        b.on_hand = 0
        order = maybe_reorder(s, b, now_ms, {"reading": {"grams": 0.0}})
        assert order is not None
        return order.id


def _order(factory, order_id: str) -> Order:
    with transaction(factory, readonly=True) as s:
        return s.get(Order, order_id)


def _attempts(factory, order_id: str) -> list[OrderAttempt]:
    with transaction(factory, readonly=True) as s:
        q = (
            select(OrderAttempt)
            .where(OrderAttempt.order_id == order_id)
            .order_by(OrderAttempt.n)
        )
        return list(s.scalars(q))


def _audit_actions(factory, order_id: str) -> list[str]:
    with transaction(factory, readonly=True) as s:
        q = (
            select(AuditLog.action)
            .where(AuditLog.entity_id == order_id)
            .order_by(AuditLog.id)
        )
        return list(s.scalars(q))


def _wait_state(factory, order_id: str, state: str, timeout: float = WAIT_S) -> Order:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        order = _order(factory, order_id)
        if order.state == state:
            return order
        time.sleep(0.02)
    raise AssertionError(f"order {order_id} is {order.state!r}, expected {state!r}")


def test_503_three_times_then_200_is_one_order_four_attempts_delivered_once(
    db, receiver, webhook_secret, http
):
    (bin_id,) = seed(
        db.factory, webhook_url=receiver.url, webhook_secret=webhook_secret
    )
    receiver.script(503, 503, 503)
    order_id = _create_order(db.factory, bin_id, REAL_CLOCK.time_ms())
    with Dispatcher(db.factory, http, retry=FAST) as dispatcher:
        dispatcher.wake()
        order = _wait_state(db.factory, order_id, "sent")
    got = receiver.wait_for(4)
    assert len(got) == 4
    assert all(r.verified for r in got)
    assert {r.headers["webhook-id"] for r in got} == {order_id}
    assert [r.status for r in got] == [503, 503, 503, 200]
    assert len(receiver.accepted()) == 1
    assert [(a.n, a.status_code) for a in _attempts(db.factory, order_id)] == [
        (1, 503),
        (2, 503),
        (3, 503),
        (4, 200),
    ]
    assert order.attempts == 4
    assert order.sent_ms is not None
    assert _audit_actions(db.factory, order_id) == ["order.created", "order.sent"]
    # every retry carried the same body: the order.created envelope of the contract
    assert len({r.body for r in got}) == 1
    body = got[-1].payload
    assert WebhookContract(_published_openapi()).problems(got[-1].headers, body) == []
    assert (body["version"], body["id"], body["type"], body["timestamp_ms"]) == (
        1,
        order_id,
        "order.created",
        order.created_ms,
    )
    public = body["data"]["order"]
    assert public["id"] == order_id
    assert (public["site"], public["bin"], public["sku"]) == (SITE, bin_id, SKU)
    assert (public["supplier"], public["qty"], public["unit"]) == (
        SUPPLIER,
        100,
        "piece",
    )
    assert (public["description"], public["reason"]) == ("M6 bolt", "reorder_point")
    assert public["ship_to"]["name"] == "Plant 1"
    assert "trigger" not in public


@pytest.mark.parametrize("first", ["dispatcher", "flush"])
def test_a_retry_sends_the_bytes_of_the_first_attempt_whatever_changed_since(
    db, receiver, webhook_secret, http, first
):
    """Retries carry the same webhook-id, so the same body: a supplier that acted on an
    attempt whose answer was lost drops the retry as a duplicate.  A SKU renamed or a
    site's dock moved between attempts changes the next order's body, not this one's."""
    bins = seed(
        db.factory, bins=2, webhook_url=receiver.url, webhook_secret=webhook_secret
    )
    clock = ManualClock(1_700_000_000_000)
    order_id = _create_order(db.factory, bins[0], clock.now)
    policy = RetryPolicy(
        timeout_s=2.0, backoff_base_s=1.0, backoff_cap_s=10.0, claim_lease_s=10.0
    )
    dispatcher = Dispatcher(
        db.factory, http, clock=clock, retry=policy, rng=random.Random(1)
    )
    if first == "dispatcher":  # the dispatcher's own claim; the supplier answers 503
        receiver.script(503)
        assert dispatcher.run_once() == 1
        first_body = receiver.wait_for(1)[0].body
    else:  # claimed in the deciding flush; the process died before the POST
        with transaction(db.factory) as s:
            (job,) = claim_new(s, [order_id], clock.now, 10_000, False)
        first_body = job.body
    with transaction(db.factory) as s:
        s.get(Sku, SKU).name = "M6 bolt, zinc"
        s.get(Site, SITE).dock = "Dock 9"
    clock.now += 60_000  # past any backoff and the claim lease
    assert dispatcher.run_once() == 1
    assert _order(db.factory, order_id).state == "sent"
    last = receiver.accepted()[-1]
    assert last.verified
    assert last.body == first_body
    assert last.payload["data"]["order"]["description"] == "M6 bolt"
    # the next order shows the change
    second = _create_order(db.factory, bins[1], clock.now)
    assert dispatcher.run_once() == 1
    (new,) = [r for r in receiver.accepted() if r.headers["webhook-id"] == second]
    assert new.payload["data"]["order"]["description"] == "M6 bolt, zinc"
    assert new.payload["data"]["order"]["ship_to"]["dock"] == "Dock 9"


def _published_openapi() -> dict:
    from fastapi import FastAPI

    from jitstock.server.api.webhook_schemas import register_webhooks

    app = FastAPI()
    register_webhooks(app)
    return app.openapi()


@pytest.mark.parametrize("status", [400, 404, 410, 422])
def test_a_4xx_answer_fails_the_order_and_raises_an_alert(
    db, receiver, webhook_secret, http, status
):
    (bin_id,) = seed(
        db.factory, webhook_url=receiver.url, webhook_secret=webhook_secret
    )
    receiver.script(status)
    order_id = _create_order(db.factory, bin_id, REAL_CLOCK.time_ms())
    alerts = []
    dispatcher = Dispatcher(
        db.factory, http, retry=FAST, alert=lambda kind, d: alerts.append((kind, d))
    )
    assert dispatcher.run_once() == 1
    assert dispatcher.run_once() == 0  # nothing left to retry
    order = _order(db.factory, order_id)
    assert order.state == "failed"
    assert str(status) in order.last_error
    assert [a.status_code for a in _attempts(db.factory, order_id)] == [status]
    assert _audit_actions(db.factory, order_id) == ["order.created", "order.failed"]
    assert [(k, d["order"]) for k, d in alerts] == [("order_failed", order_id)]
    assert len(receiver.received) == 1


def test_a_signature_the_supplier_rejects_fails_the_order(db, receiver, http):
    from jitstock.server.db.secrets import new_webhook_secret

    (bin_id,) = seed(
        db.factory, webhook_url=receiver.url, webhook_secret=new_webhook_secret()
    )
    order_id = _create_order(db.factory, bin_id, REAL_CLOCK.time_ms())
    Dispatcher(db.factory, http, retry=FAST).run_once()
    assert receiver.wait_for(1)[0].verified is False
    assert _order(db.factory, order_id).state == "failed"


@pytest.mark.parametrize(
    ("status", "retry_after", "wait_ms"),
    [(429, "7", 7000), (503, "100000", 30_000), (408, None, None)],
)
def test_408_429_are_retried_honouring_a_capped_retry_after(
    db, receiver, webhook_secret, http, status, retry_after, wait_ms
):
    (bin_id,) = seed(
        db.factory, webhook_url=receiver.url, webhook_secret=webhook_secret
    )
    clock = ManualClock(1_700_000_000_000)
    receiver.script(
        status, headers={"Retry-After": retry_after} if retry_after else None
    )
    order_id = _create_order(db.factory, bin_id, clock.now)
    policy = RetryPolicy(
        timeout_s=2.0, backoff_base_s=1.0, backoff_cap_s=10.0, retry_after_cap_s=30.0
    )
    # a seeded jitter (its first draw is 134 ms of the 1 s ceiling): an unseeded one draws a
    # zero delay one time in a thousand, and run_once then retries at once (2 attempts)
    dispatcher = Dispatcher(
        db.factory, http, clock=clock, retry=policy, rng=random.Random(1)
    )
    assert dispatcher.run_once() == 1
    order = _order(db.factory, order_id)
    assert order.state == "created"
    delay = order.next_attempt_ms - clock.now
    if wait_ms is not None:
        assert delay == wait_ms
    else:
        assert 0 <= delay <= 1000  # full jitter within base × 2^0
    if delay > 0:  # full jitter may draw 0: then the retry is due at once
        assert dispatcher.run_once() == 0  # not due yet
    clock.now += delay
    assert dispatcher.run_once() == 1
    assert _order(db.factory, order_id).state == "sent"
    assert len(receiver.accepted()) == 1


def test_unreachable_supplier_is_retried_then_failed_after_max_attempts(
    db, webhook_secret, http
):
    dead_url = f"http://127.0.0.1:{free_port()}/orders"
    (bin_id,) = seed(db.factory, webhook_url=dead_url, webhook_secret=webhook_secret)
    clock = ManualClock(1_700_000_000_000)
    order_id = _create_order(db.factory, bin_id, clock.now)
    alerts = []
    policy = RetryPolicy(
        timeout_s=2.0, max_attempts=3, backoff_base_s=1.0, backoff_cap_s=2.0
    )
    # seeded jitter (134 ms, then 1.69 s): an unseeded draw under 1 ms, one in a thousand,
    # is a retry due at once, and run_once then makes two attempts
    dispatcher = Dispatcher(
        db.factory,
        http,
        clock=clock,
        retry=policy,
        alert=lambda k, d: alerts.append(k),
        rng=random.Random(1),
    )
    for _ in range(3):
        assert dispatcher.run_once() == 1
        clock.now += 2000  # past any backoff of this policy
    assert dispatcher.run_once() == 0
    attempts = _attempts(db.factory, order_id)
    assert [a.status_code for a in attempts] == [None, None, None]
    assert all("Connect" in a.error for a in attempts)
    assert _order(db.factory, order_id).state == "failed"
    assert alerts == ["order_failed"]


def test_wake_sends_at_once_without_waiting_for_the_poll(
    db, receiver, webhook_secret, http
):
    (bin_id,) = seed(
        db.factory, webhook_url=receiver.url, webhook_secret=webhook_secret
    )
    # An idle poll far longer than the wait below: only wake() can make it in time.
    with Dispatcher(db.factory, http, retry=FAST, idle_poll_s=300.0) as dispatcher:
        time.sleep(0.1)  # let the worker go idle first
        order_id = _create_order(db.factory, bin_id, REAL_CLOCK.time_ms())
        dispatcher.wake()
        got = receiver.wait_for(1)
    assert got[0].headers["webhook-id"] == order_id


def test_mqtt_only_supplier_gets_the_order_on_its_topic(db, http):
    (bin_id,) = seed(db.factory, mqtt_orders=True)
    order_id = _create_order(db.factory, bin_id, REAL_CLOCK.time_ms())
    published = []
    dispatcher = Dispatcher(
        db.factory, http, retry=FAST, publish_mqtt=lambda *a: published.append(a)
    )
    assert dispatcher.run_once() == 1
    ((site, supplier, payload),) = published
    assert (site, supplier) == (SITE, SUPPLIER)
    assert json.loads(payload)["id"] == order_id
    assert _order(db.factory, order_id).state == "sent"


def test_a_supplier_with_no_channel_fails_with_a_reason(db, http):
    (bin_id,) = seed(db.factory)
    order_id = _create_order(db.factory, bin_id, REAL_CLOCK.time_ms())
    Dispatcher(db.factory, http, retry=FAST).run_once()
    order = _order(db.factory, order_id)
    assert order.state == "failed"
    assert "no webhook_url" in order.last_error


def test_two_dispatchers_side_by_side_send_every_order_exactly_once(
    db, receiver, webhook_secret, http
):
    bins = seed(
        db.factory, bins=8, webhook_url=receiver.url, webhook_secret=webhook_secret
    )
    now = REAL_CLOCK.time_ms()
    order_ids = {_create_order(db.factory, b, now) for b in bins}
    with (
        Dispatcher(db.factory, http, retry=FAST, workers=2) as a,
        Dispatcher(db.factory, http, retry=FAST, workers=2) as b,
    ):
        a.wake()
        b.wake()
        got = receiver.wait_for(len(order_ids))
        for oid in order_ids:
            _wait_state(db.factory, oid, "sent")
    assert sorted(r.headers["webhook-id"] for r in got) == sorted(order_ids)


def test_crash_after_the_order_was_created_sends_it_once_after_restart(
    db, receiver, webhook_secret, http
):
    (bin_id,) = seed(
        db.factory, webhook_url=receiver.url, webhook_secret=webhook_secret
    )
    order_id = _create_order(db.factory, bin_id, REAL_CLOCK.time_ms())
    # The process that created it died before any dispatcher ran; a new one starts.
    with Dispatcher(db.factory, http, retry=FAST) as dispatcher:
        dispatcher.wake()
        _wait_state(db.factory, order_id, "sent")
    assert [r.headers["webhook-id"] for r in receiver.received] == [order_id]


def test_dispatcher_killed_between_claim_and_send_is_retried_once_by_the_next(
    db, receiver, webhook_secret, http, tmp_path
):
    (bin_id,) = seed(
        db.factory, webhook_url=receiver.url, webhook_secret=webhook_secret
    )
    order_id = _create_order(db.factory, bin_id, REAL_CLOCK.time_ms())
    marker = tmp_path / "claimed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.server.crashing_dispatcher", db.url, str(marker)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.monotonic() + WAIT_S
        while (
            not marker.exists() and proc.poll() is None and time.monotonic() < deadline
        ):
            time.sleep(0.02)
        assert marker.exists(), "the doomed dispatcher never got to its send"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert receiver.received == []
    order = _order(db.factory, order_id)
    assert (order.state, order.attempts) == ("created", 1)
    (lost,) = _attempts(db.factory, order_id)
    assert (lost.status_code, lost.error) == (
        None,
        None,
    )  # outcome unknown: the process died

    # Until the dead process's claim lease (5 s) expires nobody may resend...
    assert Dispatcher(db.factory, http, retry=FAST).run_once() == 0
    # ...afterwards the next dispatcher does, exactly once.
    later = Dispatcher(db.factory, http, retry=FAST, clock=OffsetClock(6000))
    assert later.run_once() == 1
    assert later.run_once() == 0
    assert [r.headers["webhook-id"] for r in receiver.received] == [order_id]
    assert len(receiver.accepted()) == 1
    assert [(a.n, a.status_code) for a in _attempts(db.factory, order_id)] == [
        (1, None),
        (2, 200),
    ]
    assert _order(db.factory, order_id).state == "sent"


def test_parse_retry_after():
    assert parse_retry_after("120", 0.0) == 120.0
    assert parse_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", 40.0) == 60.0
    assert parse_retry_after("soon", 0.0) is None
    assert parse_retry_after(None, 0.0) is None


def test_claim_lease_outlasts_the_slowest_request():
    assert RetryPolicy().lease_for(5.0) == 60.0
    assert RetryPolicy().lease_for(30.0) == 130.0
    with pytest.raises(ValueError, match="must exceed"):
        RetryPolicy(timeout_s=5.0, claim_lease_s=10.0)


def test_a_client_without_timeout_is_refused(db):
    with (
        httpx.Client(timeout=None) as client,
        pytest.raises(ValueError, match="no timeout"),
    ):
        Dispatcher(db.factory, client)
