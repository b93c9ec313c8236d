"""Printable order labels: a QR code of the label text (order id) as SVG or PNG."""

from __future__ import annotations

import io

import segno

from jitstock.server.supplier.receiving import label_code

# Module size in px: about 1 mm per module on a 300 dpi label printer at scale 12.
LABEL_SCALE = 8


def label_svg(order_id: str, caption: str | None = None) -> bytes:
    """An SVG QR label encoding the order's label code."""
    buf = io.BytesIO()
    segno.make(label_code(order_id), error="m").save(
        buf, kind="svg", scale=LABEL_SCALE, border=4, title=caption or order_id
    )
    return buf.getvalue()


def label_png(order_id: str) -> bytes:
    """A PNG QR label encoding the order's label code."""
    buf = io.BytesIO()
    segno.make(label_code(order_id), error="m").save(
        buf, kind="png", scale=LABEL_SCALE, border=4
    )
    return buf.getvalue()
