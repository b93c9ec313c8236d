"""A supplier integration written only from the published contract (issue 13).

``OpenApiSupplier`` knows nothing of jitstock's code: it reads ``/openapi.json``,
checks every webhook it receives against the document's ``webhooks`` schemas and
every request and answer against the operation's schemas (plain jsonschema), and
verifies the Standard Webhooks signature with its own HMAC code.  Against a real
server, a real Mosquitto and a real edge agent it receives an order, acknowledges
it, ships it, and hears it received (dock scan of the label) and closed (the
bin's scale confirms the put-away).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from jsonschema import Draft202012Validator

from tests.server.server_support import wait_until
from tests.server.supplier.conftest import SITE, shop_floor, supplier_loop

# What a careful receiver accepts between the sender's clock and its own.
SIGNATURE_TOLERANCE_S = 300


class OpenApiSupplier:
    """A supplier's system built from /openapi.json, its API key and its webhook secret."""

    def __init__(self, base_url: str, api_key: str, secret: str) -> None:
        self.doc: dict[str, Any] = httpx.get(f"{base_url}/openapi.json").json()
        self.api = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=30,
        )
        # Standard Webhooks: the secret is "whsec_" + base64 of the HMAC key
        self.key = base64.b64decode(secret.removeprefix("whsec_"))
        self.deliveries: dict[str, dict[str, Any]] = {}  # by webhook-id
        self.problems: list[str] = []
        self.forged = 0
        self._lock = threading.Lock()
        supplier = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                status = supplier.receive(
                    {k.lower(): v for k, v in self.headers.items()}, body
                )
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jitstock"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}
        )
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)
        self.api.close()

    # ------------------------------------------------------------ the contract

    def validator(self, schema: dict[str, Any]) -> Draft202012Validator:
        """A JSON Schema validator whose $refs resolve inside the document."""
        return Draft202012Validator({**schema, "components": self.doc["components"]})

    def check(self, schema: dict[str, Any], value: Any, where: str) -> None:
        errors = [e.message for e in self.validator(schema).iter_errors(value)]
        if errors:
            with self._lock:
                self.problems.append(f"{where}: {errors}")

    def verified(self, headers: dict[str, str], body: bytes) -> bool:
        """Our own Standard Webhooks check: HMAC-SHA256 over id.timestamp.body, fresh."""
        msg_id = headers.get("webhook-id", "")
        stamp = headers.get("webhook-timestamp", "")
        if not stamp.isdigit() or abs(time.time() - int(stamp)) > SIGNATURE_TOLERANCE_S:
            return False
        signed = f"{msg_id}.{stamp}.".encode() + body
        expected = base64.b64encode(
            hmac.new(self.key, signed, hashlib.sha256).digest()
        ).decode()
        for sig in headers.get("webhook-signature", "").split():
            version, _, value = sig.partition(",")
            if version == "v1" and hmac.compare_digest(value, expected):
                return True
        return False

    def receive(self, headers: dict[str, str], body: bytes) -> int:
        """Handle one webhook: 401 unsigned, 400 off-contract, else 204 (deduplicated)."""
        if not self.verified(headers, body):
            self.forged += 1
            return 401
        payload = json.loads(body)
        hook = self.doc["webhooks"].get(payload.get("type"))
        if hook is None:
            self.problems.append(f"unknown webhook type {payload.get('type')!r}")
            return 400
        schema = hook["post"]["requestBody"]["content"]["application/json"]["schema"]
        self.check(schema, payload, f"webhook {payload['type']}")
        if payload["id"] != headers["webhook-id"]:
            self.problems.append("envelope id is not the webhook-id")
        with self._lock:
            self.deliveries.setdefault(headers["webhook-id"], payload)
        return 204

    def call(
        self, method: str, template: str, body: Any = None, **path: str
    ) -> httpx.Response:
        """One API call, request and answer checked against the operation's schemas."""
        operation = self.doc["paths"][template][method]
        if body is not None:
            schema = operation["requestBody"]["content"]["application/json"]["schema"]
            self.check(schema, body, f"request {method} {template}")
        r = self.api.request(method, template.format(**path), json=body)
        declared = operation["responses"].get(str(r.status_code))
        assert declared is not None, f"{method} {template}: undeclared {r.status_code}"
        schema = declared.get("content", {}).get("application/json", {}).get("schema")
        if schema is not None:
            self.check(schema, r.json(), f"answer {r.status_code} {method} {template}")
        return r

    def events(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [p for p in self.deliveries.values() if p["type"] == kind]


def test_a_supplier_built_from_the_openapi_document_alone(
    tmp_path: Path, mosquitto
) -> None:
    with supplier_loop(tmp_path, mosquitto.url) as loop:
        # the plant's side: ship-to, the supplier's part number, its endpoint and key
        r = loop.admin.patch(
            f"/api/v1/sites/{SITE}",
            json={"address": "Werkstr. 1, 70173 Stuttgart", "dock": "Gate 4"},
        )
        assert r.status_code == 200, r.text
        r = loop.admin.put(
            "/api/v1/suppliers/A/items",
            json={
                "sku_id": "SKU-1",
                "priority": 1,
                "quoted_lead_time_s": 3600,
                "supplier_sku": "A-4711",
            },
        )
        assert r.status_code == 200, r.text
        key = loop.admin.post(
            "/api/v1/suppliers/A/keys", json={"name": "A-erp"}
        ).json()["key"]
        supplier = OpenApiSupplier(loop.url, key, loop.secret_a)
        try:
            r = loop.admin.patch(
                "/api/v1/suppliers/A", json={"webhook_url": supplier.url}
            )
            assert r.status_code == 200, r.text
            with shop_floor(tmp_path, mosquitto.url, 30) as floor:
                wait_until(lambda: loop.level().get("on_hand") == 30, what="level 30")
                floor.scale.pick(12)  # 18 <= reorder point 20
                (created,) = wait_until(
                    lambda: supplier.events("order.created"), what="order.created"
                )
                order = created["data"]["order"]
                assert (order["sku"], order["supplier_sku"], order["unit"]) == (
                    "SKU-1",
                    "A-4711",
                    "piece",
                )
                assert order["description"]
                assert order["ship_to"] == {
                    "site": SITE,
                    "name": SITE,
                    "address": "Werkstr. 1, 70173 Stuttgart",
                    "dock": "Gate 4",
                    "bin": "B1",
                }
                assert order["reason"] == "reorder_point"
                assert order["needed_by_ms"] is not None
                assert order["needed_by_basis"] in (
                    "projected_stockout",
                    "quoted_lead_time",
                )

                oid = order["id"]
                promise = order["created_ms"] + 3_000_000
                r = supplier.call(
                    "post",
                    "/api/v1/orders/{order_id}/ack",
                    {"promised_ms": promise},
                    order_id=oid,
                )
                assert (r.status_code, r.json()["state"]) == (200, "acknowledged")
                r = supplier.call(
                    "post",
                    "/api/v1/orders/{order_id}/ship",
                    {"qty": order["qty"], "carrier_ref": "DHL-1"},
                    order_id=oid,
                )
                assert (r.status_code, r.json()["state"]) == (200, "shipped")

                # the truck arrives: the dock scans the label, the goods go into the bin
                floor.scanner.scan(f"JSORD:{oid}")
                wait_until(
                    lambda: supplier.events("order.received"), what="order.received"
                )
                floor.scale.refill(order["qty"])
                (closed,) = wait_until(
                    lambda: supplier.events("order.closed"), what="order.closed"
                )
                assert closed["data"]["order"]["received_qty"] == order["qty"]
                r = supplier.call("get", "/api/v1/orders/{order_id}", order_id=oid)
                assert r.json()["state"] == "closed"
                assert r.json()["trigger"] is None  # internal: not for suppliers

            kinds = [p["type"] for p in supplier.deliveries.values()]
            assert kinds == [
                "order.created",
                "order.acknowledged",
                "order.shipped",
                "order.received",
                "order.closed",
            ]
            assert supplier.forged == 0
            assert supplier.problems == []
        finally:
            supplier.close()
