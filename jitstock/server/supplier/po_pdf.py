"""The purchase order as a PDF, for suppliers who get their orders by e-mail.

Rendered from the public order object (``data.order`` of the ``order.created``
delivery, :func:`jitstock.server.webhooks.order_data`), so the PDF says exactly what
a webhook supplier is told and nothing internal.  The one-click links are not in
it: a PDF gets printed, filed and forwarded, while the links belong to the inbox
they were sent to.

The PDF's built-in Helvetica covers Latin-1; other characters (a description in
another script) are written as their closest Latin-1 form or '?'.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from fpdf import FPDF
from fpdf.enums import XPos, YPos

# Columns of the order line table: heading and width in mm (A4 portrait, 15 mm margins).
LINE_COLUMNS: Sequence[tuple[str, float]] = (
    ("Line", 10),
    ("SKU", 28),
    ("Your part no.", 28),
    ("Description", 52),
    ("Qty", 16),
    ("Unit", 14),
    ("Needed by", 32),
)
FONT = "Helvetica"
LINE_H = 6.0
# Common typography outside Latin-1, written the way a typewriter would.
_PLAIN = str.maketrans(
    {
        "\u2013": "-",
        "\u2014": "-",
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2026": "...",
        "\u2264": "<=",
        "\u2265": ">=",
        "\u20ac": "EUR",
    }
)
REASONS = {
    "reorder_point": "replenishment (the bin reached its reorder point)",
    "replacement": "replacement for goods short or rejected on an earlier order",
    "expedite": "expedite (another delivery cannot arrive in time)",
}


def utc_text(ms: int | None) -> str:
    """Epoch milliseconds as 'YYYY-MM-DD HH:MM UTC' ('-' for none)."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def _latin1(text: object) -> str:
    """Text the core PDF fonts can write."""
    s = "" if text is None else str(text)
    try:
        s.encode("latin-1")
        return s
    except UnicodeEncodeError:
        folded = unicodedata.normalize("NFKC", s.translate(_PLAIN))
        return folded.encode("latin-1", "replace").decode("latin-1")


def ship_to_lines(order: Mapping[str, Any]) -> list[str]:
    """The ship-to block: site name, address lines, dock and bin."""
    ship = order.get("ship_to") or {}
    lines = [str(ship.get("name") or order.get("site"))]
    if ship.get("address"):
        lines += [p.strip() for p in str(ship["address"]).splitlines() if p.strip()]
    if ship.get("dock"):
        lines.append(f"Dock: {ship['dock']}")
    lines.append(f"Bin: {ship.get('bin') or order.get('bin')}")
    return lines


def purchase_order_pdf(order: Mapping[str, Any], *, buyer: str) -> bytes:
    """The purchase order for one public order object, as PDF bytes."""
    pdf = FPDF(format="A4", unit="mm")
    pdf.set_margins(15, 15, 15)
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.set_title(_latin1(f"Purchase order {order['id']}"))
    pdf.set_author(_latin1(buyer))
    pdf.set_creator("jitstock")
    pdf.add_page()

    def text_line(text: str, size: float = 10, style: str = "") -> None:
        pdf.set_font(FONT, style=style, size=size)
        pdf.multi_cell(0, LINE_H, _latin1(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    text_line("PURCHASE ORDER", size=16, style="B")
    text_line(f"Order id: {order['id']}", size=11, style="B")
    pdf.ln(2)
    text_line(f"From: {buyer}")
    text_line(f"To: supplier {order.get('supplier')}")
    text_line(f"Order date: {utc_text(order.get('created_ms'))}")
    text_line(f"Reason: {REASONS.get(str(order.get('reason')), order.get('reason'))}")
    if order.get("replaces"):
        text_line(f"Replaces goods of order: {order['replaces']}")
    pdf.ln(2)
    text_line("Ship to", style="B")
    for line in ship_to_lines(order):
        text_line(line)
    pdf.ln(3)

    cells = (
        "1",
        order.get("sku"),
        order.get("supplier_sku") or "-",
        order.get("description") or order.get("sku"),
        order.get("qty"),
        order.get("unit"),
        utc_text(order.get("needed_by_ms")),
    )
    pdf.set_font(FONT, size=9)
    with pdf.table(
        width=sum(w for _, w in LINE_COLUMNS),
        col_widths=tuple(w for _, w in LINE_COLUMNS),
        line_height=LINE_H,
        text_align="LEFT",
    ) as table:
        table.row([heading for heading, _ in LINE_COLUMNS])
        table.row([_latin1(c) for c in cells])
    pdf.ln(3)

    need = order.get("needed_by_ms")
    if need is not None:
        basis = (
            "the projected stockout of the bin"
            if order.get("needed_by_basis") == "projected_stockout"
            else "your quoted lead time"
        )
        text_line(f"Needed by {utc_text(need)} ({basis}).")
    text_line(
        "Please acknowledge this order with a promised delivery date, and announce the "
        "shipment, with the links in the e-mail that brought it. Quote the order id on "
        "the delivery note."
    )
    return bytes(pdf.output())
