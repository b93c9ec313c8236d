"""Printable order labels: a QR code with the order's label code, and the same order in
words underneath, as SVG (PNG: the code alone).

The code is ``JSORD:<order id>`` (``dock_scans.LABEL_PREFIX`` + the id, no spaces, no
checksum): a dock scanner reading it receives the order, and jitstock's own scanner
path never mistakes it for a SKU barcode, which never starts so.  A supplier printing
its own labels may encode the same text as any 2D or 1D code the dock scanner reads
(Code 128 works).  Under the code the SVG prints the order id and the caption (SKU,
quantity, bin) for the people at the dock.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from xml.sax.saxutils import escape

import segno

from jitstock.server.supplier.dock_scans import label_code

# Module size in px: about 1 mm per module on a 300 dpi label printer at scale 12.
LABEL_SCALE = 8
# Text under the code: large enough to read at arm's length on a 50 mm label.
TEXT_PX = 16
LINE_PX = 22


def label_lines(order_id: str, caption: str | Sequence[str] | None) -> list[str]:
    """The human-readable lines under the code: the order id, then the caption."""
    extra = [caption] if isinstance(caption, str) else list(caption or ())
    return [f"Order {order_id}", *extra]


def label_svg(order_id: str, caption: str | Sequence[str] | None = None) -> bytes:
    """An SVG label: the QR code of the order's label code and its text underneath."""
    buf = io.BytesIO()
    segno.make(label_code(order_id), error="m").save(
        buf,
        kind="svg",
        scale=LABEL_SCALE,
        border=4,
        xmldecl=False,
        title=label_code(order_id),
    )
    qr = buf.getvalue().decode()
    size = re.search(r'width="(\d+)"', qr)
    side = int(size.group(1)) if size else 200
    lines = label_lines(order_id, caption)
    width = max(side, max(len(line) for line in lines) * TEXT_PX * 6 // 10 + 16)
    height = side + LINE_PX * len(lines) + 8
    texts = "".join(
        f'<text x="{width // 2}" y="{side + LINE_PX * (i + 1) - 6}" '
        f'font-family="monospace" font-size="{TEXT_PX}" text-anchor="middle">'
        f"{escape(line)}</text>"
        for i, line in enumerate(lines)
    )
    # the QR as a nested svg, centred; the text lines below it
    inner = qr.replace("<svg ", f'<svg x="{(width - side) // 2}" y="0" ', 1)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><title>{escape(lines[0])}</title>'
        f'<rect width="100%" height="100%" fill="#fff"/>{inner}{texts}</svg>'
    ).encode()


def label_png(order_id: str) -> bytes:
    """A PNG QR label encoding the order's label code (no text: use the SVG to print)."""
    buf = io.BytesIO()
    segno.make(label_code(order_id), error="m").save(
        buf, kind="png", scale=LABEL_SCALE, border=4
    )
    return buf.getvalue()
