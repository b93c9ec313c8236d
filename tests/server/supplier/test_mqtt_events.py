"""A supplier that takes its orders over MQTT (``mqtt_orders``, no webhook) gets its
orders' lifecycle events on its order topic too, in the envelopes the webhooks carry.

Found by an outside supplier developer: such a supplier got ``order.created`` on
``jit/v1/{site}/orders/{supplier}`` and then nothing: the plant cancelled the order, a
new ``order.created`` for the same bin arrived, and the supplier saw two open orders
(and could ship the cancelled one).  The event sender marked every event of a supplier
without a webhook 'skipped'."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select

from jitstock import protocol
from jitstock.server.db.session import transaction
from jitstock.server.db.supplier_models import SupplierEvent
from tests.server.server_support import wait_until
from tests.server.supplier.conftest import SITE, Loop, supplier_loop
from tests.server.webhook_receiver import WebhookContract
from tests.test_asyncapi import schema_errors


class TopicWatcher:
    """A supplier's MQTT client on its order topic (subscribed again after a reconnect)."""

    def __init__(self, mqtt_url: str, topic: str) -> None:
        self.topic = topic
        self.got: list[dict[str, Any]] = []
        self.retained: list[bool] = []
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"sup-{secrets.token_hex(3)}"
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 2)
        port = int(mqtt_url.rsplit(":", 1)[1])
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        wait_until(lambda: self.subscribed.is_set(), what="subscribed")

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe(self.topic, qos=1)
        self.subscribed.set()

    def _on_message(
        self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage
    ) -> None:
        with self._lock:
            self.got.append(orjson.loads(msg.payload))
            self.retained.append(bool(msg.retain))

    def of(self, kind: str, order_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            got = list(self.got)
        return [
            m
            for m in got
            if m.get("type") == kind
            and (order_id is None or m["data"]["order"]["id"] == order_id)
        ]

    def wait(self, kind: str, order_id: str | None = None) -> dict[str, Any]:
        return wait_until(
            lambda: self.of(kind, order_id) and self.of(kind, order_id)[0],
            what=f"{kind} on {self.topic}",
        )

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@contextmanager
def mqtt_only_supplier(loop: Loop, supplier: str = "A") -> Iterator[TopicWatcher]:
    """Supplier ``supplier`` switched to MQTT orders without a webhook, watched on its topic."""
    r = loop.admin.patch(
        f"/api/v1/suppliers/{supplier}",
        json={"webhook_url": None, "mqtt_orders": True},
    )
    assert r.status_code == 200, r.text
    assert r.json()["webhook_url"] is None
    assert r.json()["mqtt_orders"] is True
    watcher = TopicWatcher(loop.mqtt_url, protocol.orders_topic(SITE, supplier))
    try:
        yield watcher
    finally:
        watcher.close()


def assert_published_contract(loop: Loop, event: dict[str, Any], schema: str) -> None:
    """The event keeps the schema the server publishes for its webhook type (OpenAPI)
    and the AsyncAPI document's schema of the order topic's message."""
    contract = WebhookContract.fetch(loop.url)
    problems = contract.problems({"webhook-id": event["id"]}, event)
    assert problems == []
    assert schema_errors(schema, event) == []


def _events(loop: Loop, order_id: str) -> list[SupplierEvent]:
    with transaction(loop.app.session_factory, readonly=True) as s:
        return list(
            s.scalars(
                select(SupplierEvent)
                .where(SupplierEvent.order_id == order_id)
                .order_by(SupplierEvent.id)
            )
        )


def test_an_mqtt_only_supplier_gets_the_plants_and_its_own_cancel_on_its_topic(
    tmp_path: Path, mosquitto
) -> None:
    with supplier_loop(tmp_path, mosquitto.url) as loop:
        with mqtt_only_supplier(loop) as watcher:
            oid = loop.place_order()
            created = watcher.wait("order.created", oid)
            assert created["id"] == oid
            wait_until(lambda: loop.order(oid)["state"] == "sent", what="sent")
            # the plant cancels it
            r = loop.admin.post(
                f"/api/v1/orders/{oid}/cancel-request",
                json={"reason": "line stopped"},
            )
            assert r.status_code == 200, r.text
            cancelled = watcher.wait("order.cancelled", oid)
            assert cancelled["id"].startswith("evt_")
            assert cancelled["data"]["order"]["state"] == "cancelled"
            assert cancelled["data"]["note"] == "line stopped"
            assert_published_contract(loop, cancelled, "OrderCancelled")
            (event,) = _events(loop, oid)
            wait_until(lambda: _events(loop, oid)[0].state == "sent", what="event sent")
            assert event.payload["id"] == cancelled["id"]
            # the bin is still low: a new order, which the supplier cancels itself
            nxt = wait_until(
                lambda: [
                    m
                    for m in watcher.of("order.created")
                    if m["data"]["order"]["id"] != oid
                ],
                what="the next order.created",
            )[0]["data"]["order"]["id"]
            wait_until(lambda: loop.order(nxt)["state"] == "sent", what="sent")
            a = loop.supplier_key("A")
            r = a.post(
                f"/api/v1/orders/{nxt}/cancel-request", json={"reason": "no stock"}
            )
            assert r.status_code == 200, r.text
            own = watcher.wait("order.cancelled", nxt)
            assert own["id"].startswith("evt_")
            assert own["id"] != cancelled["id"]
            assert own["data"]["note"] == "no stock"
            assert_published_contract(loop, own, "OrderCancelled")
            assert not any(watcher.retained)
        # nothing went to the webhook A no longer has
        assert list(loop.a.received) == []


def test_an_event_the_broker_could_not_take_is_retried_with_the_same_id(
    tmp_path: Path, mosquitto
) -> None:
    with supplier_loop(tmp_path, mosquitto.url) as loop:
        with mqtt_only_supplier(loop) as watcher:
            oid = loop.place_order()
            watcher.wait("order.created", oid)
            wait_until(lambda: loop.order(oid)["state"] == "sent", what="sent")
            mosquitto.stop()
            wait_until(
                lambda: not loop.app.mqtt_connected(), what="the server sees it down"
            )
            r = loop.admin.post(
                f"/api/v1/orders/{oid}/cancel-request", json={"reason": "line stopped"}
            )
            assert r.status_code == 200, r.text
            # attempted while the broker is down: not delivered, to be retried
            failed = wait_until(
                lambda: [e for e in _events(loop, oid) if e.attempts >= 2],
                what="two attempts without the broker",
            )[0]
            assert failed.state == "pending"
            assert "mqtt publish failed" in (failed.last_error or "")
            mosquitto.start()
            cancelled = watcher.wait("order.cancelled", oid)
            assert cancelled["id"] == failed.payload["id"]
            wait_until(lambda: _events(loop, oid)[0].state == "sent", what="event sent")
            assert_published_contract(loop, cancelled, "OrderCancelled")


def test_an_order_for_an_mqtt_only_supplier_is_sent_once_the_broker_has_it(
    tmp_path: Path, mosquitto
) -> None:
    """An outside try: ``order.created`` for a supplier without a webhook counted as
    sent once paho had queued it in memory, broker down or not, so a server crash
    before the broker came back lost the order with the supplier never told.  It is
    sent when the broker acknowledges it (PUBACK), retried until then."""
    with supplier_loop(tmp_path, mosquitto.url) as loop:
        with mqtt_only_supplier(loop) as watcher:
            mosquitto.stop()
            wait_until(
                lambda: not loop.app.mqtt_connected(), what="the server sees it down"
            )
            oid = loop.place_order()
            order = wait_until(
                lambda: (o := loop.order(oid))["attempts"] >= 2 and o,
                what="two attempts without the broker",
            )
            assert order["state"] == "created", order
            assert "mqtt publish failed" in (order["last_error"] or ""), order
            mosquitto.start()
            created = watcher.wait("order.created", oid)
            assert created["id"] == oid
            wait_until(lambda: loop.order(oid)["state"] == "sent", what="sent")


def test_a_supplier_with_a_webhook_and_mqtt_orders_gets_each_event_on_both(
    tmp_path: Path, mosquitto
) -> None:
    """As order.created: the webhook carries it (and decides), the topic gets it too."""
    with supplier_loop(tmp_path, mosquitto.url) as loop:
        r = loop.admin.patch("/api/v1/suppliers/A", json={"mqtt_orders": True})
        assert r.status_code == 200, r.text
        watcher = TopicWatcher(loop.mqtt_url, protocol.orders_topic(SITE, "A"))
        try:
            oid, _a, promised = loop.acknowledged_order("A")
            on_topic = watcher.wait("order.acknowledged", oid)
            hooked = wait_until(
                lambda: [
                    r.payload
                    for r in loop.a.accepted()
                    if r.payload.get("type") == "order.acknowledged"
                ],
                what="order.acknowledged by webhook",
            )
            assert [h["id"] for h in hooked] == [on_topic["id"]]
            assert on_topic == hooked[0]
            assert on_topic["data"]["order"]["promised_ms"] == promised
            assert_published_contract(loop, on_topic, "OrderAcknowledged")
        finally:
            watcher.close()
