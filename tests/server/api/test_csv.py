"""CSV export and all-or-nothing import through real HTTP (text/csv bodies and multipart uploads)."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx

from tests.server.api.conftest import SKU, Api, errors_text, seed_master

CSV = {"content-type": "text/csv"}


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_export_import_round_trip(api: Api, manager: httpx.Client) -> None:
    seed_master(manager, bins=3)
    before = {e: manager.get(f"/api/v1/{e}.csv") for e in ("bins", "skus", "suppliers")}
    for r in before.values():
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/csv")
    assert [b["id"] for b in _rows(before["bins"].text)] == ["A-01", "A-02", "A-03"]

    # Into a fresh plant: suppliers and SKUs first, then bins.
    other = api.client(api.admin_key)
    other.post("/api/v1/sites", json={"id": "plant1", "name": "Plant 1"})
    for entity in ("bins", "skus", "suppliers"):
        # Re-importing the export into the same API changes nothing.
        r = manager.post(
            f"/api/v1/{entity}/import", content=before[entity].content, headers=CSV
        )
        assert r.status_code == 200, r.text
        n = len(_rows(before[entity].text))
        assert r.json()["unchanged"] == n
        assert (r.json()["created"], r.json()["updated"]) == (0, 0)

    # Edit in the "spreadsheet" and import: one bin changed, one added.
    rows = _rows(before["bins"].text)
    rows[1]["reorder_point"] = "75"
    rows.append({**rows[0], "id": "A-04", "channel": "ch-A-04"})
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    r = manager.post(
        "/api/v1/bins/import", files={"file": ("bins.csv", out.getvalue(), "text/csv")}
    )
    assert r.status_code == 200, r.text
    assert (r.json()["created"], r.json()["updated"], r.json()["unchanged"]) == (
        1,
        1,
        2,
    )
    assert manager.get("/api/v1/bins/A-02").json()["reorder_point"] == 75
    assert manager.get("/api/v1/bins/A-04").json()["channel"] == "ch-A-04"
    assert api.ctx.registry.calibration("A-04") is not None
    assert _rows(manager.get("/api/v1/bins.csv").text)[3]["id"] == "A-04"


def test_sites_and_suppliers_carry_every_field_into_a_fresh_plant(
    make_api: Any,
) -> None:
    """A plant's address book moves by CSV: dock, address, e-mail and order channel too.

    The sheets had only id and name (sites) and no e-mail or channel (suppliers): an
    e-mail supplier moved by CSV came across as a webhook supplier with no address, and
    its orders had nowhere to go.
    """
    old_api = make_api()
    old = old_api.client(old_api.admin_key)
    site = {
        "id": "plant1",
        "name": "Plant 1",
        "address": "Hafenstr. 1, Kiel",
        "dock": "Gate 4",
    }
    assert old.post("/api/v1/sites", json=site).status_code == 201
    supplier = {
        "id": "mail-co",
        "name": "Mail Co",
        "email": "orders@mail.example",
        "order_channel": "email",
        "contact": "Ann, +49 431 0",
        "ack_deadline_s": 3600,
    }
    assert old.post("/api/v1/suppliers", json=supplier).status_code == 201
    sheets = {e: old.get(f"/api/v1/{e}.csv").text for e in ("sites", "suppliers")}
    assert _rows(sheets["sites"])[0]["dock"] == "Gate 4"
    assert "webhook_secret" not in sheets["suppliers"]

    new_api = make_api()
    new = new_api.client(new_api.admin_key)
    for entity, text in sheets.items():
        r = new.post(f"/api/v1/{entity}/import", content=text, headers=CSV)
        assert r.status_code == 200, r.text
        assert r.json()["created"] == 1
    got_site = new.get("/api/v1/sites/plant1").json()
    assert {k: got_site[k] for k in site} == site
    got = new.get("/api/v1/suppliers/mail-co").json()
    assert {k: got[k] for k in supplier} == supplier
    # and back again: the same sheet into the same plant changes nothing
    for entity, text in sheets.items():
        r = new.post(f"/api/v1/{entity}/import", content=text, headers=CSV)
        assert (r.json()["created"], r.json()["updated"], r.json()["unchanged"]) == (
            0,
            0,
            1,
        )


def test_supplier_csv_never_carries_secrets(api: Api, manager: httpx.Client) -> None:
    secret = manager.post(
        "/api/v1/suppliers", json={"id": "acme", "name": "ACME"}
    ).json()["webhook_secret"]
    text = manager.get("/api/v1/suppliers.csv").text
    assert "webhook_secret" not in text
    assert secret not in text
    bad = "id,name,webhook_secret\nnew,New,whsec_abc\n"
    r = manager.post("/api/v1/suppliers/import", content=bad, headers=CSV)
    assert r.status_code == 422
    assert "row 1, column webhook_secret: unknown column" in errors_text(r)
    # New suppliers get a generated secret, returned once in the import result.
    r = manager.post(
        "/api/v1/suppliers/import",
        content="id,name,webhook_url\nnew,New,https://x.example/h\n",
        headers=CSV,
    )
    assert r.status_code == 200, r.text
    assert r.json()["webhook_secrets"]["new"].startswith("whsec_")


def test_bad_csv_is_rejected_whole_naming_rows_and_columns(
    api: Api, manager: httpx.Client
) -> None:
    seed_master(manager)
    before = manager.get("/api/v1/bins.csv").text
    text = (
        "id,site_id,sku_id,unit_weight_g,reorder_point,supplier_id\n"
        "B-01,plant1,M6-bolt,4.5,10,acme\n"  # fine
        "B-02,plant1,M6-bolt,-1,10,acme\n"  # row 3: negative unit weight
        "B-03,plant1,no-such-sku,4,10,acme\n"  # row 4: unknown SKU
        "B-04,plant1,M6-bolt,4,lots,acme\n"  # row 5: not a number
        "B-01,plant1,M6-bolt,4,10,acme\n"  # row 6: duplicate id
        "A-01,plant1,M6-bolt,4,,acme\n"  # row 7: required cell cleared on an existing bin
    )
    r = manager.post("/api/v1/bins/import", content=text, headers=CSV)
    assert r.status_code == 422
    msgs = [e["msg"] for e in r.json()["detail"]]
    assert msgs[0] == (
        "row 3, column unit_weight_g: Input should be greater than or equal to 0.001"
    )
    assert msgs[1] == "row 4, column sku_id: SKU 'no-such-sku' does not exist"
    assert msgs[2].startswith(
        "row 5, column reorder_point: Input should be a valid integer"
    )
    assert msgs[3] == "row 6, column id: 'B-01' already appears in row 2"
    assert msgs[4] == "row 7, column reorder_point: may not be null"
    assert len(msgs) == 5
    assert r.json()["message"].startswith("nothing was imported")
    # All or nothing: B-01 (a good row) was not created either.
    assert manager.get("/api/v1/bins/B-01").status_code == 404
    assert manager.get("/api/v1/bins.csv").text == before


def test_header_problems_and_formats(api: Api, manager: httpx.Client) -> None:
    seed_master(manager)
    r = manager.post(
        "/api/v1/skus/import", content="name,unit_weight_g\nX,1\n", headers=CSV
    )
    assert errors_text(r) == "row 1, column id: required column is missing"
    r = manager.post("/api/v1/skus/import", content="", headers=CSV)
    assert r.status_code == 422
    assert "empty file" in errors_text(r)
    r = manager.post("/api/v1/skus/import", content=b"\xff\xfe\x00", headers=CSV)
    assert "not UTF-8" in errors_text(r)
    r = manager.post("/api/v1/skus/import", json={"id": "x"})
    assert r.status_code == 415
    # Excel: BOM and ';' in a decimal-comma locale.
    body = "\ufeffid;name;unit_weight_g\nW-1;Washer;0.8\n".encode()
    r = manager.post("/api/v1/skus/import", content=body, headers=CSV)
    assert r.status_code == 200, r.text
    assert manager.get("/api/v1/skus/W-1").json()["unit_weight_g"] == 0.8
    # A new SKU row without a required cell.
    r = manager.post("/api/v1/skus/import", content="id,name\nN-1,Nut\n", headers=CSV)
    assert errors_text(r) == "row 2, column unit_weight_g: required for a new row"
    assert manager.get(f"/api/v1/skus/{SKU['id']}").status_code == 200


def test_an_unreadable_multipart_upload_says_so_not_json(
    api: Api, manager: httpx.Client
) -> None:
    """Found from the outside: two 'file' parts, or a multipart body without its
    boundary, were answered "body: not valid JSON" — on an endpoint that takes CSV."""
    two = [
        ("file", ("a.csv", b"id,name\nM1,One\n", "text/csv")),
        ("file", ("b.csv", b"id,name\nM2,Two\n", "text/csv")),
    ]
    r = manager.post("/api/v1/sites/import", files=two)
    assert r.status_code == 422, r.text
    assert "JSON" not in r.text
    assert "multipart" in errors_text(r)
    assert "Too many files" in errors_text(r)
    r = manager.post(
        "/api/v1/sites/import",
        content=b"id,name\nM3,Three\n",
        headers={"content-type": "multipart/form-data"},  # no boundary
    )
    assert r.status_code == 422, r.text
    assert "JSON" not in r.text
    assert "multipart" in errors_text(r)
    assert [s["id"] for s in manager.get("/api/v1/sites").json()] == []


def test_a_redacted_webhook_url_from_an_export_is_refused(
    api: Api, admin: httpx.Client, manager: httpx.Client
) -> None:
    """Found from the outside: a manager's suppliers.csv (URLs redacted) imported into
    another plant created suppliers whose webhook URL was literally
    ``https://***@…?token=***``; every order to them would have gone to a wrong URL."""
    url = "https://user:pw@hooks.example/h?token=SECRET&plant=3"
    r = admin.post(
        "/api/v1/suppliers", json={"id": "acme", "name": "A", "webhook_url": url}
    )
    assert r.status_code == 201, r.text
    sheet = manager.get("/api/v1/suppliers.csv").text
    assert "SECRET" not in sheet
    # the same sheet into a fresh plant: a new id with the redacted URL
    copy = sheet.replace("acme,", "acme2,")
    r = manager.post("/api/v1/suppliers/import", content=copy, headers=CSV)
    assert r.status_code == 422, r.text
    assert "row 2, column webhook_url: " in errors_text(r)
    assert "redacted" in errors_text(r)
    assert manager.get("/api/v1/suppliers/acme2").status_code == 404
    # an existing supplier's redacted URL imported back is still left as it is
    r = manager.post("/api/v1/suppliers/import", content=sheet, headers=CSV)
    assert r.status_code == 200, r.text
    assert admin.get("/api/v1/suppliers/acme").json()["webhook_url"] == url
    # a redacted URL that is not this supplier's is refused, not stored
    other = sheet.replace("hooks.example", "other.example")
    r = manager.post("/api/v1/suppliers/import", content=other, headers=CSV)
    assert r.status_code == 422, r.text
    assert admin.get("/api/v1/suppliers/acme").json()["webhook_url"] == url


def test_a_short_row_is_refused_not_read_as_cleared_cells(
    api: Api, manager: httpx.Client
) -> None:
    """A row with fewer cells than the header (a sheet cut off, a line broken in two by
    a hand edit) is named, not read with its missing cells empty: on an existing row
    they would clear those fields."""
    seed_master(manager)
    before = manager.get("/api/v1/bins.csv").text
    bin_before = manager.get("/api/v1/bins/A-01").json()
    assert bin_before["capacity"] is not None  # what a short row would have cleared
    header = "id,site_id,sku_id,reorder_point,capacity\n"
    # alone, the cut-off row of an existing bin (it used to clear the capacity: 200)
    r = manager.post(
        "/api/v1/bins/import", content=header + "A-01,plant1,M6-bolt,12\n", headers=CSV
    )
    assert r.status_code == 422, r.text
    assert manager.get("/api/v1/bins/A-01").json() == bin_before
    text = (
        header + "A-01,plant1,M6-bolt,12\n"  # row 2: capacity's cell missing
        "A-02,plant1\n"  # row 3: three cells missing
    )
    r = manager.post("/api/v1/bins/import", content=text, headers=CSV)
    assert r.status_code == 422, r.text
    assert [e["msg"] for e in r.json()["detail"]] == [
        "row 2: 4 cells but the header has 5 columns",
        "row 3: 2 cells but the header has 5 columns",
    ]
    assert manager.get("/api/v1/bins/A-01").json() == bin_before
    assert manager.get("/api/v1/bins.csv").text == before
    # the same row with its empty cell written out is an edit the plant asked for
    r = manager.post(
        "/api/v1/bins/import",
        content="id,site_id,sku_id,reorder_point,capacity\nA-01,plant1,M6-bolt,12,\n",
        headers=CSV,
    )
    assert r.status_code == 200, r.text
    assert manager.get("/api/v1/bins/A-01").json()["capacity"] is None


def test_blank_lines_do_not_count_towards_the_row_limit(
    api: Api, manager: httpx.Client
) -> None:
    """A sheet saved with its empty rows has lines that are not rows: the limit counts
    rows with a cell, as the import itself does."""
    from jitstock.server.api.csvio import MAX_CSV_ROWS

    seed_master(manager)
    body = "id,name,unit_weight_g\nW-1,Washer,0.8\n" + "\n" * MAX_CSV_ROWS + ",,\n" * 5
    r = manager.post("/api/v1/skus/import", content=body, headers=CSV)
    assert r.status_code == 200, r.text
    assert r.json()["created"] == 1
    # the limit itself still holds for rows with cells
    rows = "".join(f"R-{i},Part {i},1\n" for i in range(MAX_CSV_ROWS + 1))
    r = manager.post(
        "/api/v1/skus/import", content="id,name,unit_weight_g\n" + rows, headers=CSV
    )
    assert r.status_code == 422
    assert f"more than {MAX_CSV_ROWS} rows" in errors_text(r)
    # said once: "nothing was imported: file: 1 problem(s); first: header: more than ..."
    assert r.json()["message"].count("nothing") == 1, r.json()["message"]
