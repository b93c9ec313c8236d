"""The supplier contract says what the server does (issue 13): the OpenAPI document
validates and publishes every webhook and error body, and each documented behaviour —
promise changes, shipping without an acknowledgement, the secret rotation window, the
order label, the MQTT client id — is checked through the public interface."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from sqlalchemy import select

from jitstock.server.api.catalog import SECRET_ROTATION_GRACE_MS
from jitstock.server.db.models import Supplier
from jitstock.server.db.session import transaction
from jitstock.server.notify import EVENTS
from jitstock.server.supplier.lifecycle import EVENT_TYPES
from tests.server.server_support import wait_until
from tests.server.supplier.conftest import Loop, events_of, supplier_loop

ROOT = Path(__file__).resolve().parents[3]
ERROR_CODES = ("401", "403", "404", "409", "422")


def _order(loop: Loop) -> str:
    """An order for B1 from A (the reorder rule's), once it is sent."""
    oid = loop.place_order()
    wait_until(lambda: loop.order(oid)["state"] == "sent", what="the order sent")
    return oid


def _openapi(loop: Loop) -> dict[str, Any]:
    r = loop.admin.get("/openapi.json")
    assert r.status_code == 200
    return dict(r.json())


def _body_validator(doc: dict[str, Any], response: dict[str, Any]) -> Any:
    schema = response["content"]["application/json"]["schema"]
    return Draft202012Validator({**schema, "components": doc["components"]})


def test_the_openapi_document_validates_and_declares_webhooks_and_error_bodies(
    tmp_path: Path, mosquitto
) -> None:
    with supplier_loop(tmp_path, mosquitto.url) as loop:
        doc = _openapi(loop)
        assert doc["openapi"].startswith("3.1")
        validate(doc)  # openapi-spec-validator: the document is valid OpenAPI 3.1
        # the full catalogue: every delivery type the server can send, one schema each
        # (and the plant's own alert notifications, tagged apart from them)
        supplier_hooks = {
            name
            for name, item in doc["webhooks"].items()
            if item["post"]["tags"] == ["supplier webhooks"]
        }
        assert supplier_hooks == set(EVENT_TYPES)
        assert set(doc["webhooks"]) - supplier_hooks == {
            f"alert.{event}" for event in EVENTS
        }
        source = "\n".join(
            p.read_text() for p in (ROOT / "jitstock").rglob("*.py") if p.is_file()
        )
        queued = set(re.findall(r'enqueue_event\([^)]*?"([a-z_]+\.[a-z_]+)"', source))
        assert queued <= set(EVENT_TYPES), queued - set(EVENT_TYPES)

        # every declared error answer carries its body schema ...
        for path, item in doc["paths"].items():
            for method, op in item.items():
                for code in ERROR_CODES:
                    if code in op.get("responses", {}):
                        content = op["responses"][code].get("content", {})
                        assert "application/json" in content, (method, path, code)

        # ... and the real error bodies match it
        oid = _order(loop)
        a = loop.supplier_key("A")
        ack = doc["paths"]["/api/v1/orders/{order_id}/ack"]["post"]["responses"]
        answers = {
            "401": loop.client("wrong").post(f"/api/v1/orders/{oid}/ack", json={}),
            "404": a.post("/api/v1/orders/nope/ack", json={}),
            "422": a.post(f"/api/v1/orders/{oid}/ack", json={"promised_ms": "soon"}),
        }
        assert a.post(f"/api/v1/orders/{oid}/cancel-request", json={"reason": "x"})
        answers["409"] = a.post(f"/api/v1/orders/{oid}/ack", json={})
        answers["403"] = a.post("/api/v1/sites", json={"id": "x", "name": "x"})
        sites = doc["paths"]["/api/v1/sites"]["post"]["responses"]
        for code, r in answers.items():
            assert str(r.status_code) == code, (code, r.text)
            declared = sites[code] if code == "403" else ack[code]
            errors = list(_body_validator(doc, declared).iter_errors(r.json()))
            assert errors == [], (code, r.json())


def test_a_second_ack_with_another_promise_is_a_promise_change(
    tmp_path: Path, mosquitto
) -> None:
    with supplier_loop(tmp_path, mosquitto.url) as loop:
        description = _openapi(loop)["paths"]["/api/v1/orders/{order_id}/ack"]["post"][
            "description"
        ]
        assert "order.promise_changed" in description
        assert "idempotent" in description
        oid = _order(loop)
        a = loop.supplier_key("A")
        first = loop.order(oid)["created_ms"] + 3_600_000
        r = a.post(f"/api/v1/orders/{oid}/ack", json={"promised_ms": first})
        assert (r.status_code, r.json()["promised_ms"]) == (200, first)
        # the same promise again, or none: nothing changes, nothing is sent
        assert a.post(f"/api/v1/orders/{oid}/ack", json={}).status_code == 200
        r = a.post(f"/api/v1/orders/{oid}/ack", json={"promised_ms": first})
        assert (r.status_code, r.json()["promised_ms"]) == (200, first)
        later = first + 1_800_000
        r = a.post(f"/api/v1/orders/{oid}/ack", json={"promised_ms": later})
        assert (r.status_code, r.json()["state"], r.json()["promised_ms"]) == (
            200,
            "acknowledged",
            later,
        )
        (changed,) = wait_until(
            lambda: events_of(loop.a, "order.promise_changed"), what="promise event"
        )
        assert changed["data"]["previous_promised_ms"] == first
        assert changed["data"]["order"]["promised_ms"] == later
        assert [e["type"] for e in events_of(loop.a)] == [
            "order.acknowledged",
            "order.promise_changed",
        ]
        history = loop.admin.get(f"/api/v1/orders/{oid}/transitions").json()
        assert [(t["from_state"], t["to_state"], t["reason"]) for t in history][-1] == (
            "acknowledged",
            "acknowledged",
            "promise changed",
        )
        # shipped: too late to acknowledge or re-promise through ack
        assert a.post(f"/api/v1/orders/{oid}/ship", json={}).status_code == 200
        r = a.post(f"/api/v1/orders/{oid}/ack", json={"promised_ms": later + 1})
        assert r.status_code == 409


def test_shipping_without_an_acknowledgement_is_allowed_and_documented(
    tmp_path: Path, mosquitto
) -> None:
    with supplier_loop(tmp_path, mosquitto.url) as loop:
        doc = _openapi(loop)
        ship = doc["paths"]["/api/v1/orders/{order_id}/ship"]["post"]["description"]
        assert "acknowledging first is optional" in ship
        assert (
            "ship notice straight from"
            in (doc["paths"]["/api/v1/orders/{order_id}/ack"]["post"]["description"])
        )
        oid = _order(loop)
        a = loop.supplier_key("A")
        r = a.post(f"/api/v1/orders/{oid}/ship", json={"carrier_ref": "UPS-9"})
        assert (r.status_code, r.json()["state"], r.json()["acked_ms"]) == (
            200,
            "shipped",
            None,
        )
        (shipped,) = wait_until(
            lambda: events_of(loop.a, "order.shipped"), what="the ship event"
        )
        assert shipped["data"]["order"]["carrier_ref"] == "UPS-9"


def test_rotation_window_is_the_documented_one(tmp_path: Path, mosquitto) -> None:
    hours = SECRET_ROTATION_GRACE_MS // 3_600_000
    readme = (ROOT / "README.md").read_text()
    assert f"for {hours} hours" in readme
    with supplier_loop(tmp_path, mosquitto.url) as loop:
        doc = _openapi(loop)
        rotate = doc["paths"]["/api/v1/suppliers/{supplier_id}/rotate-secret"]["post"]
        assert f"For {hours} hours" in rotate["description"]
        assert f"{hours} h" in doc["webhooks"]["order.created"]["post"]["description"]
        before = loop.app.clock.time_ms()
        assert loop.admin.post("/api/v1/suppliers/A/rotate-secret").status_code == 200
        with transaction(loop.app.session_factory, readonly=True) as s:
            until = s.scalar(
                select(Supplier.webhook_secret_previous_until_ms).where(
                    Supplier.id == "A"
                )
            )
        assert until is not None
        assert before + SECRET_ROTATION_GRACE_MS <= until
        assert until <= loop.app.clock.time_ms() + SECRET_ROTATION_GRACE_MS


def test_the_label_is_documented_and_readable(tmp_path: Path, mosquitto) -> None:
    readme = (ROOT / "README.md").read_text()
    assert "JSORD:<order id>" in readme
    with supplier_loop(tmp_path, mosquitto.url) as loop:
        doc = _openapi(loop)
        label_doc = doc["paths"]["/api/v1/orders/{order_id}/label.svg"]["get"]
        assert "JSORD:<order id>" in label_doc["description"]
        oid = _order(loop)
        order = loop.order(oid)
        svg = loop.supplier_key("A").get(f"/api/v1/orders/{oid}/label.svg").text
        assert f"<title>JSORD:{oid}</title>" in svg  # the code's text
        texts = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
        assert texts[0] == f"Order {oid}"
        words = " ".join(texts)
        for value in (order["sku_id"], str(order["qty"]), order["bin_id"]):
            assert value in words


def test_mqtt_client_id_is_in_the_configuration_table() -> None:
    readme = (ROOT / "README.md").read_text()
    (row,) = [
        line
        for line in readme.splitlines()
        if line.startswith("| `JITSTOCK_MQTT_CLIENT_ID`")
    ]
    assert "`jitstock-server`" in row
    assert "must not share" in row


def test_a_repeated_ship_notice_and_its_409_are_as_documented(
    tmp_path: Path, mosquitto
) -> None:
    """What /openapi.json says of a second ship notice is what the server does: a retry
    (omitted qty = outstanding, omitted expected time) is 200, another notice is 409
    naming the one on record, any notice once received is 409, too many units 422."""
    with supplier_loop(tmp_path, mosquitto.url) as loop:
        doc = _openapi(loop)
        ship = doc["paths"]["/api/v1/orders/{order_id}/ship"]["post"]["description"]
        assert "already shipped with another notice" in ship
        assert "an omitted `qty` means what is outstanding" in ship
        oid = _order(loop)
        a = loop.supplier_key("A")
        qty = loop.order(oid)["qty"]
        url = f"/api/v1/orders/{oid}/ship"
        r = a.post(url, json={"qty": qty + 1000})
        assert r.status_code == 422, r.text
        at = loop.order(oid)["created_ms"] + 3_600_000
        notice = {"qty": qty, "carrier_ref": "DHL-7", "expected_ms": at}
        assert a.post(url, json=notice).status_code == 200
        for retry in ({"carrier_ref": "DHL-7"}, {"qty": qty, "carrier_ref": "DHL-7"}):
            r = a.post(url, json=retry)
            assert (r.status_code, r.json()["promised_ms"]) == (200, at), r.text
        r = a.post(url, json={**notice, "expected_ms": at + 1})
        assert r.status_code == 409, r.text
        on_record = f"qty {qty}, carrier_ref 'DHL-7', expected_ms {at}"
        assert f"already shipped with another notice ({on_record})" in r.text
        r = loop.admin.post(f"/api/v1/orders/{oid}/receive", json={"qty": qty})
        assert r.status_code == 201, r.text
        r = a.post(url, json=notice)
        # the order's state is why (it said: qty more than the 0 outstanding, 422)
        assert r.status_code == 409, r.text
        assert "a ship notice is accepted only while" in r.text


def test_fits_capacity_is_documented_for_a_bin_without_capacity(
    tmp_path: Path, mosquitto
) -> None:
    """/policy's fits_capacity description covers the null capacity the server reads
    as fitting, and says one order quantity is always ordered."""
    with supplier_loop(tmp_path, mosquitto.url) as loop:
        schema = _openapi(loop)["components"]["schemas"]["PolicyExplain"]
        fits = schema["properties"]["fits_capacity"]["description"]
        assert "true when no capacity is set" in fits
        assert "at least one" in fits
        r = loop.admin.patch("/api/v1/bins/B1", json={"capacity": None})
        assert r.status_code == 200, r.text
        p = loop.admin.get("/api/v1/bins/B1/policy").json()
        assert (p["capacity"], p["fits_capacity"]) == (None, True)
