"""GS1 carton labels at the dock, end to end: a simulated serial scanner read by a real
edge agent, or ``mosquitto_pub`` itself, -> real Mosquitto -> server.  A GS1-128 /
GS1 DataMatrix code (FNC1 sent as GS, with or without an AIM symbology identifier, or
in its printed ``(01)…`` form) counts its units against the SKU whose barcode is its
GTIN in any form; hostile codes are refused or matched as plain codes, counted, and
the next good scan still applies."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from jitstock.server.supplier.dock_scans import label_code
from tests.server.mqtt_support import metric
from tests.server.server_support import wait_until
from tests.server.supplier.conftest import (
    SITE,
    SKU,
    Loop,
    shop_floor,
    supplier_loop,
)
from tests.waits import WAIT_S

GTIN13 = "4006381333931"  # the SKU's barcode, stored as an EAN-13
GS = "\x1d"


def receipt(loop: Loop, oid: str) -> dict[str, Any]:
    (r,) = loop.admin.get(f"/api/v1/orders/{oid}/receipts").json()
    return dict(r)


def scans(loop: Loop, outcome: str) -> float:
    return metric(loop.app, "jitstock_dock_scans_total", outcome=outcome)


def test_gs1_labels_from_a_serial_scanner_count_units_of_the_right_sku(
    tmp_path: Path, mosquitto
) -> None:
    with (
        supplier_loop(tmp_path, mosquitto.url) as loop,
        shop_floor(tmp_path, mosquitto.url, 30) as floor,
    ):
        r = loop.admin.patch(f"/api/v1/skus/{SKU}", json={"barcode": GTIN13})
        assert r.status_code == 200, r.text
        wait_until(lambda: loop.level().get("on_hand") == 30, what="first level 30")
        floor.scale.pick(12)
        (order,) = loop.wait_order()
        oid = order.id
        a = loop.supplier_key("A")
        wait_until(lambda: loop.order(oid)["state"] == "sent", what="sent")
        assert a.post(f"/api/v1/orders/{oid}/ack", json={}).status_code == 200
        assert a.post(f"/api/v1/orders/{oid}/ship", json={"qty": 40}).status_code == 200

        # the order label read by a QR scanner that sends its symbology identifier
        assert floor.scanner.scan("]Q1" + label_code(oid))
        wait_until(lambda: loop.order(oid)["state"] == "received", what="receipt")
        assert receipt(loop, oid)["qty"] == 40

        good = [
            (f"]C10104006381333931{GS}10LOT42{GS}3012", 12),  # GS1-128: GTIN, lot, 12
            (f"]d2010400638133393110LOT43{GS}3005", 5),  # GS1 DataMatrix
            ("(01)04006381333931", 1),  # printed form
            (GTIN13, 1),  # the plain EAN-13, as before
            ("]E0" + GTIN13, 1),  # with its identifier
            (f"{GS}0104006381333931{GS}", 1),  # FNC1 first as GS, GS at the end
        ]
        for code, _ in good:
            assert floor.scanner.scan(code)
        want = sum(n for _, n in good)
        wait_until(
            lambda: receipt(loop, oid)["counted_qty"] == want, what=f"{want} counted"
        )
        hostile_serial = [
            b"\x1d\r\n",  # nothing but GS: the edge drops it
            b"AB\x00C\r\n",  # NUL: the edge drops it
            b"9" * 10_240 + b"\r\n",  # 10 KB: the edge drops it
            ("ß" * 257).encode() + b"\r\n",  # 257 characters: the edge drops it
        ]
        for raw in hostile_serial:
            assert floor.scanner.send_raw(raw)
        hostile = [
            "]C1",  # an identifier alone: a plain code, no SKU's
            "ß" * 256,  # 256 characters of 2 bytes: a code, no SKU's
            "]C10104006381333932",  # wrong check digit: a plain code
            "]C1010400638133393130" + str(2**63),  # AI 30 of 2**63: not GS1
            "]C10104006381333931300",  # AI 30 of 0: refused
            "]C1010400638133393130" + "9" * 8,  # 99,999,999 of 40: refused
        ]
        for code in hostile:
            assert floor.scanner.scan(code)
        assert floor.scanner.scan(f"]C10104006381333931{GS}3002")  # still counts
        wait_until(
            lambda: receipt(loop, oid)["counted_qty"] == want + 2,
            what="the good scan after the hostile ones",
        )
        wait_until(lambda: scans(loop, "counted") == len(good) + 1, what="counted")
        assert scans(loop, "count_refused") == 2
        assert scans(loop, "unreadable_gs1") == 3  # ]C1, check digit, 2**63
        assert scans(loop, "no_receipt") == 4  # ]C1, ß*256, check digit, 2**63
        assert scans(loop, "order_label") == 1
        # the edge dropped the others; nothing reached the server as a bad code
        assert metric(loop.app, "jitstock_rejected_items_total", reason="bad_code") == 0
        assert receipt(loop, oid)["counted_qty"] == want + 2


def mosquitto_pub(mqtt_url: str, topic: str, payload: str) -> None:
    port = mqtt_url.rsplit(":", 1)[1]
    subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", port, "-q", "1"]
        + ["-t", topic, "-m", payload],
        check=True,
        timeout=WAIT_S,
    )


def test_mosquitto_pub_gs1_scans_and_gtin_forms(
    tmp_path: Path, mosquitto, db_url: str
) -> None:
    """On both state DB backends (the barcode match is an IN over the GTIN's forms)."""
    with supplier_loop(tmp_path, mosquitto.url, db_url=db_url) as loop:
        # the SKU's barcode as a GTIN-14; carton labels name it as an EAN-13
        r = loop.admin.patch(f"/api/v1/skus/{SKU}", json={"barcode": "0" + GTIN13})
        assert r.status_code == 200, r.text
        # the same GTIN in another form is the same barcode: another SKU cannot have it
        r = loop.admin.post(
            "/api/v1/skus",
            json={
                "id": "SKU-2",
                "name": "Other",
                "unit_weight_g": 1,
                "barcode": GTIN13,
            },
        )
        assert r.status_code == 409, r.text
        assert "already belongs to SKU 'SKU-1'" in r.json()["detail"]

        oid, _, _ = loop.acknowledged_order()
        topic = f"jit/v1/{SITE}/pi-1/scans"
        seq = 0

        def publish(*codes: str) -> None:
            nonlocal seq
            seq += 1
            now = int(time.time() * 1000)
            body = {
                "agent": "pi-1",
                "seq": seq,
                "sent_ms": now,
                "scans": [{"scanner": "gun-1", "ts_ms": now, "code": c} for c in codes],
            }
            payload = json.dumps(body)
            mosquitto_pub(loop.mqtt_url, topic, payload)

        publish("]Q1" + label_code(oid))
        wait_until(lambda: loop.order(oid)["state"] == "received", what="receipt")
        assert receipt(loop, oid)["qty"] == 40
        publish(
            f"]C10104006381333931{GS}10LOT42{GS}3012",  # 12
            GS,  # bad_code
            "A\x00B",  # bad_code
            "9" * 10_240,  # bad_code
            "ß" * 257,  # bad_code
            "ß" * 256,  # a code
            f"]C10204006381333931370{GS}",  # AI 37 of 0: refused
            "]C1003761042500212345690204006381333931377",  # SSCC, 02 + 37: 7
            f"{GS}]C10104006381333931",  # GS before the identifier: not GS1
        )
        wait_until(
            lambda: (
                metric(loop.app, "jitstock_rejected_items_total", reason="bad_code")
                == 4
            ),
            what="four bad codes",
        )
        wait_until(lambda: scans(loop, "counted") >= 2, what="counted")
        wait_until(lambda: scans(loop, "no_receipt") == 2, what="all scans applied")
        assert receipt(loop, oid)["counted_qty"] == 12 + 7
        assert scans(loop, "counted") == 2
        assert scans(loop, "count_refused") == 1  # AI 37 of 0
        assert scans(loop, "unreadable_gs1") == 1  # GS before the identifier
        # no_receipt: ß * 256 and the GS before the identifier
