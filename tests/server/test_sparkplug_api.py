"""Issue 17: the Sparkplug B mappings through the HTTP API — managers write, viewers read,
strict bodies, a metric mapped once (PUT replaces), bins that cannot carry a gateway refused."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.server.api.conftest import Api, bin_body, errors_text, seed_master
from tests.server.api.conftest import make_api as make_api  # noqa: F401  (fixture)


@pytest.fixture
def api(make_api: Any, db_url: str) -> Api:
    """An API with auth on and a bootstrap admin key, on SQLite and on PostgreSQL."""
    return make_api(db_url)  # type: ignore[no-any-return]


@pytest.fixture
def admin(api: Api) -> httpx.Client:
    return api.client(api.admin_key)


@pytest.fixture
def manager(api: Api) -> httpx.Client:
    return api.client(api.new_key("manager", "line-manager"))


@pytest.fixture
def viewer(api: Api) -> httpx.Client:
    return api.client(api.new_key("viewer", "wallboard"))


MAPPING: dict[str, Any] = {
    "group_id": "Plant1",
    "edge_node": "Line 1",
    "device": "Scale3",
    "metric": "Weigher/Gross Weight",
    "bin_id": "A-01",
    "unit": "grams",
}
PATH = "/api/v1/sparkplug/mappings"


def test_a_manager_maps_a_metric_and_a_viewer_reads_it(
    admin: httpx.Client, manager: httpx.Client, viewer: httpx.Client
) -> None:
    seed_master(admin, bins=2)
    r = manager.put(PATH, json=MAPPING)
    assert r.status_code == 201, r.text
    created = r.json()
    assert {k: created[k] for k in MAPPING} == MAPPING
    assert (created["factor"], created["updated_by"]) == (1.0, "line-manager")

    # the same metric again: replaced in place (one metric feeds one bin), 200
    r = manager.put(
        PATH, json={**MAPPING, "bin_id": "A-02", "unit": "count", "factor": 0.5}
    )
    assert r.status_code == 200, r.text
    assert (r.json()["id"], r.json()["bin_id"], r.json()["factor"]) == (
        created["id"],
        "A-02",
        0.5,
    )
    # the edge node's own metric (no device) is another mapping
    r = manager.put(PATH, json={**MAPPING, "device": "", "metric": "Tank"})
    assert r.status_code == 201, r.text

    listed = viewer.get(PATH).json()
    assert [(x["device"], x["metric"], x["bin_id"]) for x in listed] == [
        ("", "Tank", "A-01"),
        ("Scale3", "Weigher/Gross Weight", "A-02"),
    ]
    one = viewer.get(f"{PATH}/{created['id']}")
    assert one.status_code == 200
    assert one.json()["bin_id"] == "A-02"
    assert viewer.put(PATH, json=MAPPING).status_code == 403
    assert viewer.delete(f"{PATH}/{created['id']}").status_code == 403
    assert httpx.get(str(viewer.base_url) + PATH).status_code == 401

    assert manager.delete(f"{PATH}/{created['id']}").status_code == 204
    assert viewer.get(f"{PATH}/{created['id']}").status_code == 404
    assert manager.delete(f"{PATH}/{created['id']}").status_code == 404
    assert [x["metric"] for x in viewer.get(PATH).json()] == ["Tank"]
    # this server does not follow Sparkplug (JITSTOCK_SPARKPLUG_GROUPS unset)
    assert viewer.get("/api/v1/sparkplug/status").json() == {
        "enabled": False,
        "groups": [],
        "connected": False,
        "nodes": [],
    }
    actions = [
        a["action"]
        for a in admin.get(
            "/api/v1/audit", params={"entity": "sparkplug_mapping"}
        ).json()
    ]
    assert sorted(actions) == [
        "sparkplug_mapping.create",
        "sparkplug_mapping.create",
        "sparkplug_mapping.delete",
        "sparkplug_mapping.update",
    ]


def test_mappings_that_cannot_work_are_refused_with_the_field_named(
    admin: httpx.Client, manager: httpx.Client, viewer: httpx.Client
) -> None:
    seed_master(admin)
    r = admin.post(
        "/api/v1/bins", json=bin_body("NOAGENT", agent_id=None, channel=None)
    )
    assert r.status_code == 201, r.text
    cases: list[tuple[dict[str, Any], str]] = [
        ({**MAPPING, "bin_id": "nope"}, "no bin 'nope'"),
        ({**MAPPING, "bin_id": "NOAGENT"}, "has no agent"),
        ({**MAPPING, "group_id": "a/b"}, "pattern"),
        ({**MAPPING, "edge_node": "+"}, "pattern"),
        ({**MAPPING, "device": "#"}, "pattern"),
        ({**MAPPING, "group_id": ""}, "at least 1"),
        ({**MAPPING, "edge_node": "n" * 65}, "at most 64"),
        ({**MAPPING, "metric": "m" * 201}, "at most 200"),
        ({**MAPPING, "metric": "tab\there"}, "pattern"),
        ({**MAPPING, "unit": "kg"}, "'grams' or 'count'"),
        ({**MAPPING, "factor": 0}, "greater than or equal"),
        ({**MAPPING, "factor": 5e-324}, "greater than or equal"),
        ({**MAPPING, "factor": 1e7}, "less than or equal"),
        ({**MAPPING, "factor": "2"}, "valid number"),
        ({**MAPPING, "factor": True}, "valid number"),
        ({**MAPPING, "colour": "red"}, "colour: unknown field"),
        ({k: v for k, v in MAPPING.items() if k != "unit"}, "unit: field required"),
    ]
    for body, message in cases:
        r = manager.put(PATH, json=body)
        assert r.status_code == 422, (body, r.text)
        assert message in errors_text(r), (body, r.text)
    for raw in (
        b'{"factor": NaN}',
        b'{"group_id":"P","edge_node":"N","metric":"\\ud800","bin_id":"A-01","unit":"count"}',
    ):
        r = manager.put(PATH, content=raw, headers={"Content-Type": "application/json"})
        assert r.status_code == 422, (raw, r.text)
    for bad_id in ("0", "-1", str(2**63), "x"):
        assert viewer.get(f"{PATH}/{bad_id}").status_code in (404, 422)
    assert viewer.get(PATH).json() == []


def test_deleting_a_bin_deletes_its_mappings(
    admin: httpx.Client, manager: httpx.Client
) -> None:
    seed_master(admin, bins=2)
    assert manager.put(PATH, json=MAPPING).status_code == 201
    assert (
        manager.put(PATH, json={**MAPPING, "metric": "B", "bin_id": "A-02"}).status_code
        == 201
    )
    assert admin.delete("/api/v1/bins/A-01").status_code == 204
    assert [x["bin_id"] for x in manager.get(PATH).json()] == ["A-02"]
