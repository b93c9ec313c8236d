"""``GET /supplier/orders`` with the filters and paging a supplier integrator expects from
``GET /orders`` (found missing by an outside try), through the REST API of a real server."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.server.server_support import wait_until
from tests.server.supplier.conftest import SKU, Loop, plant, show

MINE = "/api/v1/supplier/orders"


def _ids(client: httpx.Client, **params: object) -> list[str]:
    r = client.get(MINE, params=params)
    assert r.status_code == 200, r.text
    return [o["id"] for o in r.json()]


def _cycle(loop: Loop, dev, n: int) -> str:
    """The bin drops to its reorder point and orders; returns the n-th order's id."""
    show(loop, dev, 45)
    return loop.wait_order(what=f"order {n}", n=n)[n - 1].id


def test_supplier_orders_filter_and_page(tmp_path: Path, mosquitto) -> None:
    with plant(tmp_path, mosquitto.url, start=60, order_qty=100, reorder_point=50) as (
        loop,
        dev,
    ):
        done = []
        for n in (1, 2):
            oid = _cycle(loop, dev, n)
            show(loop, dev, 145)  # received by weight: closed
            wait_until(lambda o=oid: loop.order(o)["state"] == "closed", what="closed")
            done.append(oid)
        r = loop.admin.get(f"/api/v1/orders/{done[1]}/transitions")
        closed_at = r.json()[-1]["at_ms"]
        third = _cycle(loop, dev, 3)
        a = loop.supplier_key("A")
        assert _ids(a) == [third]  # open orders by default
        assert _ids(a, state="closed") == [done[1], done[0]]  # newest first
        assert _ids(a, state="closed", limit=1) == [done[1]]
        assert _ids(a, state="closed", limit=1, before=done[1]) == [done[0]]
        assert _ids(a, state="closed", before=done[0]) == []
        assert _ids(a, sku=SKU) == [third]
        assert _ids(a, sku="SKU-none") == []
        assert _ids(a, updated_after=closed_at) == [third]
        assert _ids(a, state="closed", updated_after=closed_at) == []
        assert _ids(a, state="closed", updated_after=closed_at - 1) == [done[1]]
        # B sees none of A's orders, and cannot page from one of them
        b = loop.supplier_key("B")
        assert _ids(b, state="closed") == []
        r = b.get(MINE, params={"before": done[0]})
        assert r.status_code == 422, r.text


HOSTILE = [
    {"updated_after": 2**63},
    {"updated_after": 2**64},
    {"updated_after": -1},
    {"updated_after": "NaN"},
    {"updated_after": "5e-324"},
    {"updated_after": ""},
    {"updated_after": "yesterday"},
    {"limit": 0},
    {"limit": 1001},
    {"limit": "NaN"},
    {"limit": 2**63},
    {"state": "bogus"},
    {"state": ""},
    {"state": 2**63},
    {"sku": ""},
    {"sku": "x" * 65},
    {"before": ""},
    {"before": "no-such-order"},
    {"before": "x" * 65},
]


def test_supplier_orders_refuse_hostile_values(tmp_path: Path, mosquitto) -> None:
    """Each bad filter is a 422 naming the parameter, and reading changes nothing."""
    with plant(tmp_path, mosquitto.url, start=60, order_qty=100, reorder_point=50) as (
        loop,
        dev,
    ):
        oid = _cycle(loop, dev, 1)
        a = loop.supplier_key("A")
        for params in HOSTILE:
            r = a.get(MINE, params=params)
            assert r.status_code == 422, (params, r.text)
            assert next(iter(params)) in r.text, (params, r.text)
        assert _ids(a) == [oid]
        assert loop.admin.get(MINE).status_code == 403
