"""The scorecard as /openapi.json describes it (an outside try found an open object):
every field typed, described and required, and the served card matching it."""

from __future__ import annotations

from pathlib import Path

import jsonschema

from tests.server.server_support import wait_until
from tests.server.supplier.conftest import plant, show

CARD = "/api/v1/suppliers/{supplier_id}/scorecard"


def test_the_scorecard_is_a_closed_described_schema(tmp_path: Path, mosquitto) -> None:
    with plant(tmp_path, mosquitto.url, start=60, order_qty=100, reorder_point=50) as (
        loop,
        dev,
    ):
        show(loop, dev, 45)
        order = loop.wait_order()[0].id
        show(loop, dev, 145)
        wait_until(lambda: loop.order(order)["state"] == "closed", what="received")
        api = loop.admin.get("/openapi.json").json()
        ref = api["paths"][CARD]["get"]["responses"]["200"]["content"][
            "application/json"
        ]["schema"]["$ref"]
        name = ref.rsplit("/", 1)[1]
        schema = api["components"]["schemas"][name]
        props = schema["properties"]
        assert set(schema["required"]) == set(props)
        for field, spec in props.items():
            assert spec.get("description"), field
            assert "type" in spec or "anyOf" in spec, field
        card = loop.supplier_key("A").get(CARD.format(supplier_id="A")).json()
        assert set(card) == set(props)
        closed = {**schema, "additionalProperties": False}
        jsonschema.validate(card, closed)
        assert (card["orders"], card["orders_received"], card["units_received"]) == (
            1,
            1,
            100,
        )
        assert card["quality_rate"] is None  # nothing inspected: null, not 0
