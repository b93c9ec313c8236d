"""What a dock scan's code names: GS1 element strings, GTINs and AIM symbology
identifiers, read with the ``biip`` library.

A supplier's carton carries a GS1-128 or GS1 DataMatrix label: element strings, each
an application identifier (AI) and its data, the variable-length ones ended by FNC1,
which the scanner sends as GS (``\\x1d``).  The scanner may put an AIM symbology
identifier in front (``]C1`` GS1-128, ``]d2`` GS1 DataMatrix, ``]Q3`` GS1 QR, ``]E0``
EAN-13) or not, and some are set to send the printed form ``(01)…(10)…``.  jitstock
reads all of these the same way:

- the GTIN is AI 01 (a trade item), or AI 02 (the trade items a logistic unit holds);
- the count is AI 30 with AI 01, AI 37 with AI 02; without one a scan counts 1;
- the lot (AI 10) and the SSCC (AI 00) are logged with the count, not stored (a
  receipt has no column for them, and the cartons of one receipt may carry several);
- a code is read as GS1 element strings only when something says it is one: a GS1
  symbology identifier, a GS in it (a leading GS is FNC1 in first position), or the
  printed form.  A plain ``4006381333931`` stays an EAN-13 (biip alone would also read
  it as AI 400 "customer's purchase order" ``6381333931``).

A GTIN is compared in all its forms (GTIN-8/12/13/14 are the same number padded with
zeros to 14 digits): a SKU's barcode stored as an EAN-13 matches a GTIN-14 on a
carton label and the other way round.  A GS1 string that cannot be read (a bad check
digit, an unknown AI, a count of 0) is never a crash: it is reported in
:attr:`ScannedCode.problem` and the code is matched as it is, as before GS1 support.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from biip import BiipException
from biip.gs1_messages import GS1Message
from biip.gtin import Gtin
from biip.symbology import GS1Symbology, SymbologyIdentifier

from jitstock.protocol import GS

# The printed (human readable) form of element strings: "(01)04006381333931(10)LOT42".
_HRI = re.compile(r"\(\d{2,4}\)")
# The lengths a GTIN has (GTIN-8, UPC-A/GTIN-12, EAN-13, GTIN-14).
GTIN_LENGTHS = (8, 12, 13, 14)
# Count AIs: 30 ("variable count") goes with 01, 37 ("count of trade items") with 02.
_COUNT_AI = {"01": "30", "02": "37"}


@dataclass(frozen=True)
class ScannedCode:
    """One scanned code, read."""

    raw: str
    """As it came on the wire."""
    code: str
    """Without the symbology identifier and GS at its ends: what an order label or a
    plain barcode is matched with."""
    gtin: str | None = None
    """The GTIN it names (14 digits), or None."""
    count: int = 1
    """Units the scan stands for (a count AI), 0 when the count is refused."""
    lot: str | None = None
    sscc: str | None = None
    problem: str | None = None
    """Why a GS1 string could not be read (matched as a plain code then), or why its
    count is refused."""

    def barcodes(self) -> list[str]:
        """Every ``Sku.barcode`` this code matches: the code as scanned and without
        its symbology identifier, and each form of its GTIN."""
        forms = [self.raw, self.code]
        if self.gtin is not None:
            forms += gtin_forms(self.gtin)
        return list(dict.fromkeys(forms))


def gtin_forms(gtin: str) -> list[str]:
    """The forms of one GTIN a barcode may be stored in: its 14 digits, and the
    8/12/13-digit numbers it is when its leading digits are zeros."""
    g14 = gtin.zfill(14)
    return [
        g14[14 - n :]
        for n in sorted(GTIN_LENGTHS, reverse=True)
        if set(g14[: 14 - n]) <= {"0"}
    ]


def as_gtin(text: str) -> str | None:
    """``text`` as a GTIN-14 when it is one (8/12/13/14 digits, right check digit)."""
    if not text.isascii() or not text.isdigit() or len(text) not in GTIN_LENGTHS:
        return None
    try:
        return Gtin.parse(text).as_gtin_14()
    except (BiipException, ValueError):
        return None


def _symbology(raw: str) -> SymbologyIdentifier | None:
    if not raw.startswith("]") or len(raw) < 3:
        return None
    try:
        return SymbologyIdentifier.extract(raw)
    except (BiipException, ValueError):
        return None


def read_code(raw: str) -> ScannedCode:
    """Read one scanned code (see the module docstring); never raises."""
    sid = _symbology(raw)
    text = raw[len(sid.value) :] if sid is not None else raw
    gs1_sid = sid is not None and sid.gs1_symbology in GS1Symbology.with_gs1_messages()
    code = text.strip(GS) or raw
    if sid is not None and not text.strip(GS):
        return ScannedCode(
            raw, raw, problem=f"nothing after the identifier {sid.value}"
        )
    if sid is None and _HRI.match(code):
        return _element_strings(raw, code, hri=True)
    if gs1_sid or GS in text:
        return _element_strings(raw, code, hri=False)
    # a plain code: an EAN/UPC (with or without its ]E0 identifier) is a GTIN
    return ScannedCode(raw, code, gtin=as_gtin(code))


def _element_strings(raw: str, code: str, *, hri: bool) -> ScannedCode:
    try:
        message = GS1Message.parse_hri(code) if hri else GS1Message.parse(code)
    except (BiipException, ValueError) as exc:  # ParseError, or a bug: never a crash
        return ScannedCode(raw, code, problem=f"not GS1 element strings: {exc}")
    values: dict[str, str] = {}
    for es in message.element_strings:
        values.setdefault(es.ai.ai, es.value)
        if es.ai.ai in _COUNT_AI and es.gtin is None:
            return ScannedCode(
                raw, code, problem=f"AI {es.ai.ai}: {es.gtin_error or 'no GTIN'}"
            )
    lot, sscc = values.get("10"), values.get("00")
    gtin_ai = next((ai for ai in _COUNT_AI if ai in values), None)
    if gtin_ai is None:
        return ScannedCode(
            raw, code, lot=lot, sscc=sscc, problem="no GTIN (AI 01 or 02) in it"
        )
    gtin = values[gtin_ai].zfill(14)
    count_ai = _COUNT_AI[gtin_ai]
    count_text = values.get(count_ai)
    if count_text is None:
        return ScannedCode(raw, code, gtin=gtin, lot=lot, sscc=sscc)
    count = int(count_text) if count_text.isascii() and count_text.isdigit() else 0
    if count <= 0:
        return ScannedCode(
            raw,
            code,
            gtin=gtin,
            count=0,
            lot=lot,
            sscc=sscc,
            problem=f"count AI {count_ai} is {count_text!r}: not a count of units",
        )
    return ScannedCode(raw, code, gtin=gtin, count=count, lot=lot, sscc=sscc)
