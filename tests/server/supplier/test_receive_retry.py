"""A dock terminal's retried receipt (the same Idempotency-Key) is recorded once.

Found by the dock-life try: the same partial ``POST /orders/{id}/receive`` sent twice
recorded two receipts, and the phantom second sat in the bin's position as goods
waiting for put-away for the whole put-away window (the bin could not reorder).
Driven through the REST API and a hand-written MQTT device, on a real server.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from jitstock.server.db.models import Order
from tests.server.supplier.conftest import Loop, plant, show


@contextmanager
def ordered(tmp: Path, mqtt_url: str) -> Iterator[tuple[Loop, Order]]:
    """A bin drained below its reorder point (50) and its order of 100, not yet received."""
    with plant(tmp, mqtt_url, start=60, order_qty=100, reorder_point=50) as (loop, dev):
        show(loop, dev, 45)
        yield loop, loop.wait_order()[0]


def _receive(
    client: httpx.Client,
    order_id: str,
    qty: int,
    key: str | bytes | None,
    complete: bool = False,
) -> httpx.Response:
    headers = {} if key is None else {"Idempotency-Key": key}
    return client.post(
        f"/api/v1/orders/{order_id}/receive",
        json={"qty": qty, "complete": complete},
        headers=headers,
    )


def test_a_retried_receipt_is_recorded_once(tmp_path: Path, mosquitto: Any) -> None:
    with ordered(tmp_path, mosquitto.url) as (loop, order):
        key = str(uuid.uuid4())
        first = _receive(loop.admin, order.id, 30, key)
        assert first.status_code == 201, first.text
        again = _receive(loop.admin, order.id, 30, key)
        assert again.status_code == 200, again.text
        assert again.json() == first.json()  # the first receipt, not a new one
        assert loop.level()["pending_delivery_qty"] == 30
        assert loop.order(order.id)["state"] == "part_received"

        # the same key for another quantity names another request: refused, nothing kept
        other = _receive(loop.admin, order.id, 20, key)
        assert other.status_code == 422, other.text
        assert "Idempotency-Key" in other.text
        # named where a client sent it: the header, not the body
        assert other.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
        # ... and so does the same key saying the order is now complete (an outside try:
        # it was answered 200 with the first receipt, and the order stayed open)
        closing = _receive(loop.admin, order.id, 30, key, complete=True)
        assert closing.status_code == 422, closing.text
        assert "complete=false" in closing.text
        assert loop.order(order.id)["state"] == "part_received"
        # a new key is a new receipt (a second pallet of the same order)
        second = _receive(loop.admin, order.id, 20, str(uuid.uuid4()))
        assert second.status_code == 201, second.text
        assert second.json()["id"] != first.json()["id"]
        assert loop.level()["pending_delivery_qty"] == 50
        # without a key every request is a receipt, as documented
        assert _receive(loop.admin, order.id, 10, None).status_code == 201
        assert loop.level()["pending_delivery_qty"] == 60


def test_the_same_key_sent_at_once_from_two_terminals_records_one_receipt(
    tmp_path: Path, mosquitto: Any
) -> None:
    with ordered(tmp_path, mosquitto.url) as (loop, order):
        key = f"DN-{uuid.uuid4().hex[:8]}"
        answers: list[httpx.Response] = []
        go = threading.Barrier(4)

        def send() -> None:
            with httpx.Client(
                base_url=str(loop.admin.base_url),
                headers=loop.admin.headers,
                timeout=30,
            ) as c:
                go.wait()
                answers.append(_receive(c, order.id, 25, key))

        threads = [threading.Thread(target=send) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(a.status_code for a in answers) == [200, 200, 200, 201], [
            a.text for a in answers
        ]
        assert len({a.json()["id"] for a in answers}) == 1
        assert loop.level()["pending_delivery_qty"] == 25


def test_hostile_idempotency_keys_are_refused_and_change_nothing(
    tmp_path: Path, mosquitto: Any
) -> None:
    with ordered(tmp_path, mosquitto.url) as (loop, order):
        # (what HTTP itself cannot carry, a leading space or a tab, never reaches us)
        bad_keys: list[str | bytes] = ["", "a b", "x" * 201, b"\xe9t\xe9"]
        for bad in bad_keys:
            r = _receive(loop.admin, order.id, 30, bad)
            assert r.status_code == 422, (bad, r.text)
        assert loop.level()["pending_delivery_qty"] == 0
        assert loop.order(order.id)["state"] != "part_received"
        # the longest key allowed works, and its retry is a retry
        longest = "K" * 200
        assert _receive(loop.admin, order.id, 30, longest).status_code == 201
        assert _receive(loop.admin, order.id, 30, longest).status_code == 200
        assert loop.level()["pending_delivery_qty"] == 30
