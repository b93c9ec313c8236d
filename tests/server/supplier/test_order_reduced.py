"""``order.reduced`` driven from the outside (an outside try never saw one): a real
server escalates a late promise, a real HTTP endpoint receives the event, and the test
checks the signature with its own Standard Webhooks HMAC and reads the payload by the
README's description of the envelope, not through jitstock's code."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

from tests.server.mqtt_device import HandDevice
from tests.server.server_support import wait_until
from tests.server.supplier.conftest import (
    BIN,
    SITE,
    SKU,
    TARE_G,
    UNIT_G,
    Loop,
    supplier_loop,
)
from tests.server.webhook_receiver import Received

MIN = 60_000


def signed_by(secret: str, got: Received) -> bool:
    """Standard Webhooks: base64 HMAC-SHA256 of "id.timestamp.body" under the secret's
    key (the base64 after "whsec_"), one of the space-separated "v1,<sig>"."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    h = got.headers
    signed = f"{h['webhook-id']}.{h['webhook-timestamp']}.".encode() + got.body
    want = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    sigs = [s[3:] for s in h["webhook-signature"].split() if s.startswith("v1,")]
    return any(hmac.compare_digest(want, s) for s in sigs)


def _reading(loop: Loop, dev: HandDevice, n: int, ago_ms: int) -> None:
    """The scale showed ``n`` units ``ago_ms`` ago (an edge agent's outbox catching up)."""
    dev.count(BIN, n, ts_ms=int(time.time() * 1000) - ago_ms)
    wait_until(lambda: loop.level()["on_hand"] == n, what=f"level {n}")


def test_a_late_promise_reduces_the_order_and_the_supplier_hears_it(
    tmp_path: Path, mosquitto
) -> None:
    """The line picked ~5 units a minute for half an hour; A's order of 100 is promised
    20 minutes out, after the bin runs dry (~9 minutes): B bridges the gap, A's order is
    reduced by as much and A receives ``order.reduced``, signed and as documented."""
    with supplier_loop(
        tmp_path,
        mosquitto.url,
        order_qty=100,
        reorder_point=50,
        escalation_interval_s=0.5,
    ) as loop:
        # A quotes two minutes: its order is not late until it promises otherwise
        r = loop.admin.put(
            "/api/v1/suppliers/A/items",
            json={"sku_id": SKU, "priority": 1, "quoted_lead_time_s": 120},
        )
        assert r.status_code == 200, r.text
        dev = HandDevice(mosquitto.url, SITE, "pi-1", unit_g=UNIT_G, tare_g=TARE_G)
        try:
            for n, ago in ((200, 40 * MIN), (160, 30 * MIN), (120, 20 * MIN)):
                _reading(loop, dev, n, ago)
            _reading(loop, dev, 80, 10 * MIN)
            _reading(loop, dev, 45, 0)
        finally:
            dev.close()
        order = loop.wait_order()[0].id
        a = loop.supplier_key("A")
        promised = int(time.time() * 1000) + 20 * MIN
        r = a.post(f"/api/v1/orders/{order}/ack", json={"promised_ms": promised})
        assert r.status_code == 200, r.text

        def reduced() -> list[Received]:
            return [
                g
                for g in list(loop.a.received)
                if b'"order.reduced"' in g.body and g.status == 200
            ]

        (got,) = wait_until(reduced, what="order.reduced at A's endpoint")
        assert signed_by(loop.secret_a, got)
        event = json.loads(got.body)
        assert set(event) == {
            "version",
            "id",
            "type",
            "timestamp",
            "timestamp_ms",
            "data",
        }
        assert (event["version"], event["type"]) == (1, "order.reduced")
        assert event["id"] == got.headers["webhook-id"]
        assert event["id"].startswith("evt_")
        assert (
            abs(event["timestamp_ms"] - int(got.headers["webhook-timestamp"]) * 1000)
            < 60_000
        )
        assert event["timestamp"].endswith("Z")
        data = event["data"]
        cut = data["reduced_by"]
        assert 0 < cut < 100, data
        assert data["order"]["id"] == order
        assert data["order"]["qty"] == 100 - cut
        # the note says why, as the docs promise (`note`: why it happened), naming
        # no other supplier
        assert data["note"] == (
            f"reduced by {cut}: escalated (late): another supplier covers the demand"
        ), data
        assert set(data) == {"order", "note", "reduced_by"}
        # what the API says agrees with the event
        mine = a.get(f"/api/v1/orders/{order}").json()
        assert (mine["qty"], mine["state"]) == (100 - cut, "acknowledged")
        bridge = loop.orders(supplier_id="B")
        assert [o.qty for o in bridge] == [cut]
