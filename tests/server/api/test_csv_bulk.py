"""Large CSV imports: checked whole outside the write lock, written in bulk, still all or
nothing, judged row after row as the sheet reads, and ingest goes on meanwhile.

The time an import takes is measured in README.md ("Measured"), not here.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import httpx

from jitstock.server.seed import SupplierSeed
from tests.server.api.conftest import Api, errors_text, measure, seed_master
from tests.server.mqtt_support import (
    bin_seed,
    publisher,
    readings_payload,
    server,
    topic,
    wait_count,
)
from tests.server.server_support import WAIT_S, seed
from tests.services import Mosquitto

CSV = {"content-type": "text/csv"}
ROWS = 5_000
HEADER = "id,site_id,agent_id,channel,sku_id,supplier_id,tare_g,capacity,reorder_point,order_qty\n"


def sheet(sku: str, reorder_point: int, *, last: str = "") -> str:
    """ROWS bins on 50 agents (100 channels each), then ``last`` as one more line."""
    rows = "".join(
        f"B-{i:05d},plant1,line-{i // 100},ch-{i % 100},{sku},acme,500,400,{reorder_point},200\n"
        for i in range(ROWS)
    )
    return HEADER + rows + last


def test_a_large_sheet_is_imported_whole_or_not_at_all(
    make_api: Any, db_url: str
) -> None:
    api = make_api(db_url=db_url)
    manager = api.client(api.new_key("manager", "line-manager"))
    seed_master(manager)
    r = manager.post("/api/v1/bins/import", content=sheet("M6-bolt", 50), headers=CSV)
    assert r.status_code == 200, r.text
    assert (r.json()["created"], r.json()["updated"]) == (ROWS, 0)
    exported = manager.get("/api/v1/bins.csv").text
    assert exported.count("\n") == 1 + 1 + ROWS  # header, A-01 and the sheet
    assert (
        "B-04999,plant1,line-49,ch-99,,,M6-bolt,acme,500.0,,400,50,200,false"
        in exported
    )
    # every agent the sheet named is known now (configuring a bin makes its agent known)
    agents = {a["id"] for a in manager.get("/api/v1/agents").json()}
    assert {f"line-{i}" for i in range(50)} <= agents
    assert api.ctx.registry.calibration("B-04999") is not None

    # 5,000 changed rows and one bad one at the end: nothing changes
    bad = sheet("M6-bolt", 60, last="B-99999,plant1,,,no-such-sku,acme,500,400,5,1\n")
    r = manager.post("/api/v1/bins/import", content=bad, headers=CSV)
    assert r.status_code == 422, r.text
    assert (
        errors_text(r)
        == f"row {ROWS + 2}, column sku_id: SKU 'no-such-sku' does not exist"
    )
    assert manager.get("/api/v1/bins.csv").text == exported

    r = manager.post("/api/v1/bins/import", content=sheet("M6-bolt", 60), headers=CSV)
    assert r.status_code == 200, r.text
    assert (r.json()["created"], r.json()["updated"], r.json()["unchanged"]) == (
        0,
        ROWS,
        0,
    )
    assert manager.get("/api/v1/bins/B-02500").json()["reorder_point"] == 60
    audit = manager.get(
        "/api/v1/audit", params={"entity": "bin", "entity_id": "B-02500"}
    ).json()
    assert [a["action"] for a in audit] == ["bin.update", "bin.create"]
    assert audit[0]["detail"] == {"reorder_point": {"from": 50, "to": 60}}
    assert audit[0]["actor"] == "line-manager"


def test_rows_are_judged_one_after_another(make_api: Any, db_url: str) -> None:
    """A row may take a channel or a barcode an earlier row of the same sheet freed, and
    not one a later row frees (as if the rows were applied in sheet order)."""
    api = make_api(db_url=db_url)
    manager = api.client(api.new_key("manager", "line-manager"))
    seed_master(manager, bins=2)  # A-01 on pi-1/ch-A-01, A-02 on pi-1/ch-A-02
    head = "id,site_id,agent_id,channel,sku_id\n"
    taken_later = (
        head + "N-1,plant1,pi-1,ch-A-01,M6-bolt\nA-01,plant1,pi-1,ch-9,M6-bolt\n"
    )
    r = manager.post("/api/v1/bins/import", content=taken_later, headers=CSV)
    assert r.status_code == 422, r.text
    assert errors_text(r) == (
        "row 2, column channel: 'ch-A-01' of agent 'pi-1' already feeds bin 'A-01'"
    )
    freed_first = (
        head + "A-01,plant1,pi-1,ch-9,M6-bolt\nN-1,plant1,pi-1,ch-A-01,M6-bolt\n"
    )
    freed_first += (
        "A-02,plant1,pi-1,ch-A-02x,M6-bolt\nN-2,plant1,pi-1,ch-A-02,M6-bolt\n"
    )
    r = manager.post("/api/v1/bins/import", content=freed_first, headers=CSV)
    assert r.status_code == 200, r.text
    assert (r.json()["created"], r.json()["updated"]) == (2, 2)
    assert manager.get("/api/v1/bins/N-1").json()["channel"] == "ch-A-01"
    # an agent a row makes known belongs to that row's site from then on
    manager.post("/api/v1/sites", json={"id": "plant2", "name": "Plant 2"})
    two_sites = head + "P-1,plant1,new-pi,c1,M6-bolt\nP-2,plant2,new-pi,c2,M6-bolt\n"
    r = manager.post("/api/v1/bins/import", content=two_sites, headers=CSV)
    assert r.status_code == 422, r.text
    assert errors_text(r) == (
        "row 3, column agent_id: agent 'new-pi' belongs to site 'plant1', not 'plant2'"
    )
    assert manager.get("/api/v1/agents/new-pi").status_code == 404
    # barcodes: one SKU gives its barcode up, a new one takes it, in one sheet
    r = manager.patch("/api/v1/skus/M6-bolt", json={"barcode": "4006381333931"})
    assert r.status_code == 200, r.text
    skus = "id,name,unit_weight_g,barcode\n"
    r = manager.post(
        "/api/v1/skus/import",
        content=skus + "N-1,Nut,1,4006381333931\nM6-bolt,M6 bolt,4,\n",
        headers=CSV,
    )
    assert errors_text(r) == (
        "row 2, column barcode: '4006381333931' already belongs to SKU 'M6-bolt'"
    )
    r = manager.post(
        "/api/v1/skus/import",
        content=skus + "M6-bolt,M6 bolt,4,\nN-1,Nut,1,4006381333931\n",
        headers=CSV,
    )
    assert r.status_code == 200, r.text
    assert manager.get("/api/v1/skus/N-1").json()["barcode"] == "4006381333931"
    # the same GTIN in another form (GTIN-14 of that EAN-13) is the same barcode: a dock
    # scan of it would match both SKUs, so a sheet may not give it to a second one
    r = manager.post(
        "/api/v1/skus/import",
        content=skus + "N-2,Washer,1,04006381333931\n",
        headers=CSV,
    )
    assert r.status_code == 422, r.text
    assert (
        errors_text(r)
        == "row 2, column barcode: '04006381333931' already belongs to SKU 'N-1'"
    )
    assert manager.get("/api/v1/skus/N-2").status_code == 404


def test_an_imported_change_recounts_and_orders_as_a_patch_does(
    make_api: Any, db_url: str
) -> None:
    api = make_api(db_url=db_url)
    manager = api.client(api.new_key("manager", "line-manager"))
    seed_master(manager, bins=3)
    for b in ("A-01", "A-02", "A-03"):
        measure(api.ctx, b, 100)  # 100 parts of 4 g on a 500 g tare; reorder point 50
    head = "id,site_id,sku_id,tare_g,reorder_point\n"
    text = (
        head + "A-01,plant1,M6-bolt,500,120\n"  # at or below the new point: orders
        "A-02,plant1,M6-bolt,500,60\n"  # still above it: no order
        "A-03,plant1,M6-bolt,300,50\n"  # 200 g less tare: 150 parts, recounted
    )
    r = manager.post("/api/v1/bins/import", content=text, headers=CSV)
    assert r.status_code == 200, r.text
    orders = manager.get("/api/v1/orders").json()
    assert [o["bin_id"] for o in orders] == ["A-01"]
    assert orders[0]["trigger"]["reason"] == "bin configuration changed"
    assert api.ctx.dispatcher.wakes >= 1
    assert manager.get("/api/v1/levels/A-03").json()["on_hand"] == 150
    assert manager.get("/api/v1/levels/A-02").json()["on_hand"] == 100


def test_a_bad_sheet_is_refused_without_waiting_for_the_write_lock(
    api: Api, manager: httpx.Client
) -> None:
    """The whole sheet is checked before the import takes SQLite's write lock: with
    another connection holding it (ingest writing, a backup), a bad sheet is answered at
    once. Row by row in savepoints, the import held the lock for every check, and a
    5,000-row sheet froze the plant's live levels for ~26 s."""
    seed_master(manager)
    state_db = Path(api.ctx.settings.db_url.removeprefix("sqlite:///"))
    holder = sqlite3.connect(state_db, isolation_level=None, timeout=WAIT_S)
    try:
        holder.execute("BEGIN IMMEDIATE")  # the write lock, as a writer holds it
        bad = sheet(
            "M6-bolt", 50, last="B-99999,plant1,pi-1,ch-1,no-such-sku,acme,1,1,1,1\n"
        )
        r = manager.post(
            "/api/v1/bins/import", content=bad, headers=CSV, timeout=WAIT_S
        )
        assert r.status_code == 422, r.text
        assert "SKU 'no-such-sku' does not exist" in errors_text(r)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert manager.get("/api/v1/bins/B-00000").status_code == 404


def test_ingest_applies_readings_during_a_large_import(
    tmp_path: Path, db_url: str, mosquitto: Mosquitto
) -> None:
    """A reading published while a 5,000-row sheet is imported reaches the API."""
    seed(
        db_url,
        [bin_seed("LIVE", "pi-1")],
        [SupplierSeed("acme", "ACME", "http://127.0.0.1:9/h", None)],
    )
    with (
        server(tmp_path, db_url, mosquitto.url) as (_app, base),
        publisher(mosquitto.url) as pub,
    ):
        answer: dict[str, httpx.Response] = {}

        def run_import() -> None:
            answer["r"] = httpx.post(
                f"{base}/api/v1/bins/import",
                content=sheet("SKU-LIVE", 5),
                headers=CSV,
                timeout=10 * WAIT_S,
            )

        importer = threading.Thread(target=run_import)
        importer.start()
        # 100 g tare + 10 g parts: 7 parts, then 3 (each applied, one after another)
        for seq, parts in enumerate((7, 3), start=1):
            pub.send(
                topic("pi-1", "readings"),
                readings_payload("pi-1", seq, "LIVE", 100 + 10 * parts),
            )
            wait_count(base, "LIVE", parts)
        importer.join(10 * WAIT_S)
        r = answer["r"]
        assert r.status_code == 200, r.text
        assert r.json()["created"] == ROWS
        assert httpx.get(f"{base}/api/v1/bins/B-04999", timeout=10).status_code == 200
