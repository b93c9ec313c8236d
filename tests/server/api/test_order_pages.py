"""GET /orders pages with `limit` and `before` (found by the supplier try: a supplier
with more than 1000 orders could never read its older ones — `limit` was the only
knob and the list is newest first)."""

from __future__ import annotations

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete

from jitstock.server.db.models import Order
from jitstock.server.db.session import transaction
from tests.server.api.conftest import SUPPLIER, Api, errors_text, seed_master

_ACME_KEYS: dict[str, str] = {}
CLOSED_STATES = ("closed", "cancelled", "failed", "delivered", "received")

# (created_ms, supplier, state) rows; few distinct times, so ties are common
rows = st.lists(
    st.tuples(
        st.integers(0, 5),
        st.sampled_from(["acme", "other"]),
        st.sampled_from(CLOSED_STATES),
    ),
    max_size=25,
)


def _insert(api: Api, spec: list[tuple[int, str, str]]) -> list[Order]:
    with transaction(api.ctx.session_factory) as s:
        s.execute(delete(Order))
        made = [
            Order(
                id=f"o-{i:03d}-{t}",
                bin_id="A-01",
                sku_id="M6-bolt",
                supplier_id=sup,
                site_id="plant1",
                qty=10,
                state=state,
                created_ms=1_000 + t,
                attempts=0,
                trigger={},
            )
            for i, (t, sup, state) in enumerate(spec)
        ]
        s.add_all(made)
        return made


def _pages(client: httpx.Client, limit: int, **where: str) -> list[list[str]]:
    pages: list[list[str]] = []
    params: dict[str, str | int] = {"limit": limit, **where}
    for _ in range(30):  # at most 25 orders: more pages means the cursor is ignored
        r = client.get("/api/v1/orders", params=params)
        assert r.status_code == 200, r.text
        page = [o["id"] for o in r.json()]
        pages.append(page)
        if len(page) < limit:
            return pages
        params["before"] = page[-1]
    raise AssertionError(f"paging does not end: {pages[:3]}")


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(spec=rows, limit=st.integers(1, 7), state=st.sampled_from([None, "closed"]))
def test_paging_reads_every_order_once_in_list_order(
    api: Api,
    admin: httpx.Client,
    spec: list[tuple[int, str, str]],
    limit: int,
    state: str | None,
) -> None:
    if api.url not in _ACME_KEYS:  # once per server: hypothesis reuses the fixture
        seed_master(admin)
        other = {**SUPPLIER, "id": "other", "name": "Other"}
        assert admin.post("/api/v1/suppliers", json=other).status_code == 201
        r = admin.post("/api/v1/suppliers/acme/keys", json={"name": "acme-erp"})
        _ACME_KEYS[api.url] = r.json()["key"]
    made = _insert(api, spec)
    where = {"state": state} if state else {}
    acme = api.client(_ACME_KEYS[api.url])
    for client, sees in ((admin, {"acme", "other"}), (acme, {"acme"})):
        # the model: newest first, then by id; only what the key may see
        want = [
            o.id
            for o in sorted(made, key=lambda o: (-o.created_ms, o.id))
            if o.supplier_id in sees and (state is None or o.state == state)
        ]
        pages = _pages(client, limit, **where)
        assert [i for p in pages for i in p] == want
        assert all(len(p) == limit for p in pages[:-1])
    # a supplier cannot page from (or learn of) another supplier's order
    others = [o.id for o in made if o.supplier_id == "other"]
    if others:
        r = acme.get("/api/v1/orders", params={"before": others[0]})
        assert r.status_code == 422
        assert errors_text(r) == f"before: no order {others[0]!r}"


def test_a_bad_cursor_is_a_422_naming_before(api: Api, admin: httpx.Client) -> None:
    seed_master(admin)
    for bad in ("nope", "x" * 65, "2" * 30):
        r = admin.get("/api/v1/orders", params={"before": bad})
        assert r.status_code == 422, r.text
        assert errors_text(r).startswith("before: "), errors_text(r)
    r = admin.get("/api/v1/orders", params={"before": "a\x00b"})
    assert r.status_code == 422, r.text
