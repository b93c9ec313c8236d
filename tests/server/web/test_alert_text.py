"""Alerts worded for people: the headline names bin, part and supplier; what to do follows."""

from __future__ import annotations

from typing import Any

from jitstock.server.alert_text import describe
from jitstock.server.db.session import transaction
from jitstock.server.seed import BinSeed, SupplierSeed, seed_plant


def _alert(kind: str, entity: str, **kw: Any) -> dict[str, Any]:
    base = {
        "id": 1,
        "kind": kind,
        "entity": entity,
        "state": "open",
        "severity": "critical",
        "message": f"{kind} (rule text)",
        "bin_id": None,
        "agent_id": None,
        "order_id": None,
        "supplier_id": None,
        "detail": None,
    }
    return base | kw


def test_headline_names_bin_part_and_supplier_and_says_what_to_do(db: Any) -> None:
    seed_plant(
        db.factory,
        "plant1",
        [BinSeed("B1", "pi-1", "SKU-1", 10.0, 0.0, 5, 10, 40, "S1")],
        [SupplierSeed("S1", "Supplier One", None, None)],
    )
    with transaction(db.factory, readonly=True) as s:
        out = describe(
            s,
            [
                _alert("stockout", "bin:B1", bin_id="B1"),
                _alert("agent_offline", "agent:pi-1", agent_id="pi-1"),
                _alert("order_escalated", "order:x", detail={"action": "no_fallback"}),
                _alert("something_new", "bin:B1", bin_id="B1"),
            ],
        )
    stockout, offline, escalated, unknown = out
    assert stockout["headline"] == "Bin B1 (SKU-1) is empty"
    assert stockout["supplier_name"] == "Supplier One"
    assert "expedite" in stockout["what_to_do"]
    assert offline["headline"] == "Edge agent pi-1 is offline"
    assert "pi-1" in offline["what_to_do"]
    assert escalated["what_to_do"].startswith("No other supplier")
    # a kind without wording keeps the rule's message; kinds and entities are untouched
    assert unknown["headline"] == "something_new (rule text)"
    assert [a["kind"] for a in out] == [
        "stockout",
        "agent_offline",
        "order_escalated",
        "something_new",
    ]
