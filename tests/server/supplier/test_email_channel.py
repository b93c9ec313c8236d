"""Suppliers without an API (issue 13): the order goes out as an e-mail with a PDF purchase
order and signed one-click links, over a real SMTP server, answered over real HTTP the way
a browser does (GET the page, POST its form)."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import httpx
from pypdf import PdfReader

from jitstock.server.supplier.po_pdf import utc_text
from tests.server.server_support import wait_until
from tests.server.smtp_receiver import SmtpReceiver
from tests.server.supplier.conftest import SKU, Loop, supplier_loop

SUPPLIER_MAIL = "orders@supplier-a.example"
FROM = "purchasing@plant1.example"
ADDRESS = "1 Foundry Road, Springfield"
DOCK = "Dock 3"
DESCRIPTION = "Hex nut M6, zinc plated"
PART_NO = "HN-M6-ZP"
LINK = re.compile(r"https?://\S+/supplier-links/\S+")


def _email_supplier(loop: Loop) -> None:
    """Supplier A has only an inbox; the plant's ship-to and the part are filled in."""
    r = loop.admin.patch(
        "/api/v1/suppliers/A",
        json={"webhook_url": None, "order_channel": "email", "email": SUPPLIER_MAIL},
    )
    assert r.status_code == 200, r.text
    assert (r.json()["order_channel"], r.json()["email"]) == ("email", SUPPLIER_MAIL)
    r = loop.admin.patch(
        "/api/v1/sites/plant1", json={"address": ADDRESS, "dock": DOCK}
    )
    assert r.status_code == 200, r.text
    r = loop.admin.patch(f"/api/v1/skus/{SKU}", json={"name": DESCRIPTION})
    assert r.status_code == 200, r.text
    r = loop.admin.put(
        "/api/v1/suppliers/A/items",
        json={
            "sku_id": SKU,
            "priority": 1,
            "quoted_lead_time_s": 3600,
            "supplier_sku": PART_NO,
        },
    )
    assert r.status_code == 200, r.text


def _mail_for(smtp: SmtpReceiver, oid: str) -> EmailMessage:
    def found() -> EmailMessage | None:
        for rcpts, msg in smtp.messages():
            if oid in str(msg["Subject"]):
                assert rcpts == [SUPPLIER_MAIL]
                return msg
        return None

    msg: EmailMessage = wait_until(found, what=f"the e-mail of order {oid}")
    return msg


def _links(msg: EmailMessage) -> tuple[str, str]:
    body = msg.get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    ack, ship = LINK.findall(text)
    assert text.index("Acknowledge") < text.index(ack) < text.index("shipment")
    return ack, ship


def _pdf_text(msg: EmailMessage) -> str:
    (pdf,) = [
        p for p in msg.iter_attachments() if p.get_content_type() == "application/pdf"
    ]
    data = pdf.get_content()
    assert isinstance(data, bytes)
    assert data.startswith(b"%PDF")
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def _tampered(link: str) -> str:
    """The link with one character of its signed part changed."""
    base, token = link.rsplit("/", 1)
    payload, sig = token.split(".")
    flipped = payload[:-1] + ("A" if payload[-1] != "A" else "B")
    return f"{base}/{flipped}.{sig}"


def test_an_email_supplier_gets_a_pdf_and_answers_by_link(
    tmp_path: Path, mosquitto
) -> None:
    smtp = SmtpReceiver()
    smtp.start()
    try:
        with supplier_loop(
            tmp_path,
            mosquitto.url,
            smtp_host=smtp.host,
            smtp_port=smtp.port,
            smtp_from=FROM,
        ) as loop:
            _email_supplier(loop)
            oid = loop.place_order()
            msg = _mail_for(smtp, oid)
            assert msg["From"] == FROM
            wait_until(lambda: loop.order(oid)["state"] == "sent", what="sent")
            order = loop.order(oid)

            # the purchase order: every order line field, readable from the PDF's text
            pdf = " ".join(_pdf_text(msg).split())
            for expected in (
                oid,
                SKU,
                DESCRIPTION,
                PART_NO,
                "40 piece",
                ADDRESS,
                f"Dock: {DOCK}",
                "Bin: B1",
                # no demand learned yet: needed by = created + the quoted lead time (1 h)
                utc_text(order["created_ms"] + 3600 * 1000),
                "your quoted lead time",
            ):
                assert expected in pdf, (expected, pdf)

            ack, ship = _links(msg)
            with httpx.Client(timeout=10) as browser:
                # a tampered link is refused, on the page and on the form, and changes nothing
                for bad in (_tampered(ack), _tampered(ship), ack + "x"):
                    r = browser.get(bad)
                    assert r.status_code == 403, r.text
                    assert "not valid" in r.text
                    r = browser.post(
                        bad, data={"promised_date": "2030-01-01", "qty": "40"}
                    )
                    assert r.status_code == 403
                    assert "Nothing was changed" in r.text
                assert loop.order(oid)["state"] == "sent"

                # acknowledge with a promise date: the page, then its form
                r = browser.get(ack)
                assert r.status_code == 200, r.text
                assert r.headers["content-security-policy"].startswith(
                    "default-src 'self'"
                )
                assert "<script" not in r.text
                assert "style=" not in r.text
                assert 'name="promised_date"' in r.text
                assert oid in r.text
                day = datetime.fromtimestamp(
                    order["created_ms"] / 1000, tz=UTC
                ) + timedelta(days=2)
                promised = int(
                    day.replace(hour=9, minute=30, second=0, microsecond=0).timestamp()
                    * 1000
                )
                r = browser.post(
                    ack,
                    data={
                        "promised_date": day.strftime("%Y-%m-%d"),
                        "promised_time": "09:30",
                    },
                )
                assert r.status_code == 200, r.text
                assert "is acknowledged" in r.text
                acked = loop.order(oid)
                assert (acked["state"], acked["promised_ms"]) == (
                    "acknowledged",
                    promised,
                )
                history = loop.admin.get(f"/api/v1/orders/{oid}/transitions").json()
                assert (history[-1]["to_state"], history[-1]["actor"]) == (
                    "acknowledged",
                    "email-link:A",
                )

                # a bad value shows the form again with the reason, and changes nothing
                r = browser.post(ship, data={"qty": "many"})
                assert r.status_code == 422
                assert "not a whole number" in r.text
                assert 'name="qty"' in r.text
                assert loop.order(oid)["state"] == "acknowledged"

                # announce the shipment
                r = browser.get(ship)
                assert r.status_code == 200, r.text
                assert 'name="qty"' in r.text
                assert 'value="40"' in r.text
                r = browser.post(ship, data={"qty": "40", "carrier_ref": "DHL-123"})
                assert r.status_code == 200, r.text
                assert "shipment of 40 announced" in r.text
                shipped = loop.order(oid)
                assert (
                    shipped["state"],
                    shipped["asn_qty"],
                    shipped["carrier_ref"],
                ) == (
                    "shipped",
                    40,
                    "DHL-123",
                )

                # once shipped, the acknowledgement link has nothing left to do
                r = browser.get(ack)
                assert r.status_code == 409
                assert "can no longer be acknowledged" in r.text
                r = browser.post(ack, data={"promised_date": "2030-01-01"})
                assert r.status_code == 409
                assert loop.order(oid)["promised_ms"] == promised
    finally:
        smtp.stop()


def test_smtp_down_is_retried_and_an_expired_link_is_refused(
    tmp_path: Path, mosquitto
) -> None:
    smtp = SmtpReceiver()  # its port is chosen, nothing listens yet
    try:
        with supplier_loop(
            tmp_path,
            mosquitto.url,
            smtp_host=smtp.host,
            smtp_port=smtp.port,
            smtp_from=FROM,
            # every link has expired by the time anyone follows it
            supplier_link_ttl_s=0.001,
        ) as loop:
            _email_supplier(loop)
            oid = loop.place_order()
            # the relay refuses connections: the order stays created and is retried
            wait_until(
                lambda: (
                    len([a for a in loop.order(oid)["attempt_log"] if a["error"]]) >= 2
                ),
                what="two failed attempts while SMTP is down",
            )
            down = loop.order(oid)
            assert down["state"] == "created"
            recorded = [a for a in down["attempt_log"] if a["latency_ms"] is not None]
            assert all("smtp" in a["error"] for a in recorded), down
            smtp.start()
            msg = _mail_for(smtp, oid)
            wait_until(lambda: loop.order(oid)["state"] == "sent", what="sent")

            ack, ship = _links(msg)
            with httpx.Client(timeout=10) as browser:
                for link in (ack, ship):
                    r = browser.get(link)
                    assert r.status_code == 403, r.text
                    assert "expired" in r.text
                r = browser.post(ack, data={"promised_date": "2030-01-01"})
                assert r.status_code == 403
                r = browser.post(ship, data={"qty": "40"})
                assert r.status_code == 403
            after = loop.order(oid)
            assert (after["state"], after["promised_ms"], after["asn_qty"]) == (
                "sent",
                None,
                None,
            )
    finally:
        smtp.stop()


def test_the_link_pages_apply_the_apis_bounds_and_text_rules(
    tmp_path: Path, mosquitto
) -> None:
    """The pages act through POST /orders/{id}/ack and /ship's rules: what the API
    answers 422 for, the page answers with its form again (422) and changes nothing."""
    smtp = SmtpReceiver()
    smtp.start()
    try:
        with supplier_loop(
            tmp_path,
            mosquitto.url,
            smtp_host=smtp.host,
            smtp_port=smtp.port,
            smtp_from=FROM,
        ) as loop:
            _email_supplier(loop)
            oid = loop.place_order()
            msg = _mail_for(smtp, oid)
            wait_until(lambda: loop.order(oid)["state"] == "sent", what="sent")
            ack, ship = _links(msg)
            with httpx.Client(timeout=10) as browser:
                for data in (
                    {"promised_date": "9999-12-31"},
                    {"promised_date": "9999-12-31", "promised_time": "23:59"},
                ):
                    r = browser.post(ack, data=data)
                    assert r.status_code == 422, (data, r.text)
                    assert "less than or equal to" in r.text
                    assert 'name="promised_date"' in r.text
                assert loop.order(oid)["state"] == "sent"
                assert loop.order(oid)["promised_ms"] is None
                r = browser.post(ack, data={"promised_date": "2030-01-01"})
                assert r.status_code == 200, r.text
                acked = loop.order(oid)
                assert acked["state"] == "acknowledged"

                for data, says in (
                    ({"qty": "40", "expected_date": "9999-12-31"}, "less than"),
                    ({"qty": "40", "carrier_ref": "A\x00B"}, "NUL character"),
                    ({"qty": "40", "carrier_ref": "x" * 201}, "at most 200"),
                    ({"qty": "1_0"}, "not a whole number"),
                    ({"qty": "+5"}, "not a whole number"),
                    ({"qty": "0"}, "greater than 0"),
                    ({"qty": "1000001"}, "less than or equal to"),
                ):
                    r = browser.post(ship, data=data)
                    assert r.status_code == 422, (data, r.text)
                    assert says in r.text, (data, r.text)
                    assert 'name="qty"' in r.text
                    assert "\x00" not in r.text
                after = loop.order(oid)
                assert (
                    after["state"],
                    after["promised_ms"],
                    after["asn_qty"],
                    after["carrier_ref"],
                ) == ("acknowledged", acked["promised_ms"], None, None)
    finally:
        smtp.stop()
