"""Spreadsheet-safe CSV cells: text that a spreadsheet would run as a formula is escaped.

A cell starting with ``= + - @`` (or a tab or carriage return, which some
spreadsheets skip before looking) is a formula to Excel and LibreOffice:
``=HYPERLINK(…)`` in a SKU name would become a live link in a manager's sheet.
Such text cells are written with a leading ``'`` (what a spreadsheet user types
to mean "this is text"); numbers are written as they are.  Import strips exactly
one such quote, so export → import gives the original text back.
"""

from __future__ import annotations

import re

# Optional quotes already there, then a formula trigger: one more quote makes it text.
_NEEDS_QUOTE = re.compile(r"^'*[=+\-@\t\r]")
_QUOTED = re.compile(r"^'+[=+\-@\t\r]")


def escape_formula(text: str) -> str:
    """Text a spreadsheet shows as text, never runs as a formula."""
    return "'" + text if _NEEDS_QUOTE.match(text) else text


def unescape_formula(text: str) -> str:
    """The inverse of escape_formula for a cell read back from a file we wrote."""
    return text[1:] if _QUOTED.match(text) else text
