"""CSV as plants keep it in spreadsheets: reading with row/column errors, writing.

Accepts UTF-8 with or without the BOM Excel writes, and a ';' delimiter (what
Excel uses in locales with a decimal comma) when the header has no ','.
Rows are numbered as a spreadsheet shows them: the header is row 1.
Text that a spreadsheet would run as a formula is escaped on export and
unescaped on import (see :mod:`jitstock.server.csvcells`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from jitstock.server.api.errors import CsvInvalid, CsvProblem
from jitstock.server.csvcells import escape_formula, unescape_formula

# Far beyond any plant's bin list; keeps one request from holding the write lock for minutes.
MAX_CSV_BYTES = 5 * 1024 * 1024
MAX_CSV_ROWS = 20_000


def read_csv(
    data: bytes, known_columns: Sequence[str], required_columns: Iterable[str]
) -> list[tuple[int, dict[str, str]]]:
    """(row number, {column: cell}) for every non-empty data row, or CsvInvalid naming what is wrong."""
    if len(data) > MAX_CSV_BYTES:
        raise CsvInvalid(
            [CsvProblem(0, None, f"file is larger than {MAX_CSV_BYTES} bytes")]
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CsvInvalid(
            [
                CsvProblem(
                    0,
                    None,
                    f"not UTF-8 (byte {exc.start}); save the sheet as 'CSV UTF-8'",
                )
            ]
        ) from None
    first_line = text.split("\n", 1)[0]
    delimiter = ";" if ";" in first_line and "," not in first_line else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        records = list(reader)
    except csv.Error as exc:
        raise CsvInvalid(
            [CsvProblem(reader.line_num, None, f"malformed CSV: {exc}")]
        ) from None
    if not records or not any(cell.strip() for cell in records[0]):
        raise CsvInvalid(
            [CsvProblem(1, None, "empty file: the first row must name the columns")]
        )
    header = [h.strip() for h in records[0]]
    problems = []
    known = set(known_columns)
    for h in header:
        if h not in known:
            problems.append(
                CsvProblem(
                    1,
                    h or "(blank)",
                    f"unknown column; expected some of {', '.join(known_columns)}",
                )
            )
    seen: set[str] = set()
    for h in header:
        if h in seen:
            problems.append(CsvProblem(1, h, "column appears twice"))
        seen.add(h)
    for r in required_columns:
        if r not in seen:
            problems.append(CsvProblem(1, r, "required column is missing"))
    if problems:
        raise CsvInvalid(problems)
    # rows with a cell, as a sheet counts them (row numbers as it shows them): blank
    # lines (a sheet saved with its empty rows) are no rows
    filled = [
        (n, cells)
        for n, cells in enumerate(records[1:], start=2)
        if any(c.strip() for c in cells)
    ]
    if len(filled) > MAX_CSV_ROWS:
        raise CsvInvalid(
            [CsvProblem(0, None, f"more than {MAX_CSV_ROWS} rows; split the file")]
        )
    rows: list[tuple[int, dict[str, str]]] = []
    for n, cells in filled:
        if len(cells) != len(header):
            # a short row is refused too: read as empty cells, its missing ones would
            # clear those fields of an existing row (a sheet cut off, a line broken in two)
            problems.append(
                CsvProblem(
                    n,
                    None,
                    f"{len(cells)} cells but the header has {len(header)} columns",
                )
            )
            continue
        rows.append(
            (n, {h: unescape_formula(cells[i].strip()) for i, h in enumerate(header)})
        )
    if problems:
        raise CsvInvalid(problems)
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return repr(value)  # keeps "12.0": the column is visibly a decimal
    if isinstance(value, int | float):
        return str(value)  # a negative number is a number, not a formula
    return escape_formula(str(value))


def write_csv(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    """CSV text with a header row; None as an empty cell, booleans as true/false, formulas escaped."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return out.getvalue()
