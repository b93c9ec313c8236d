"""/api/v1/agents: agents as records (edge Pis, PLCs, dock scanner stations without bins)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.server.api.conftest import SITE, Api, bin_body, errors_text, seed_master


@pytest.fixture
def plant(manager: httpx.Client) -> httpx.Client:
    """Site, SKU, supplier and bins A-01, A-02 fed by pi-1 (registered implicitly)."""
    seed_master(manager, bins=2)
    return manager


def _dock(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "dock1",
        "site_id": SITE["id"],
        "description": "goods-in dock, door 3",
        "receive_bins": ["*"],
    }
    body.update(over)
    return body


def test_create_get_list_patch_delete_a_dock_agent(
    api: Api, plant: httpx.Client, viewer: httpx.Client
) -> None:
    r = plant.post("/api/v1/agents", json=_dock())
    assert r.status_code == 201, r.text
    created = r.json()
    assert created == {
        "id": "dock1",
        "site_id": "plant1",
        "description": "goods-in dock, door 3",
        "receive_bins": ["*"],
        "state": "unknown",
        "online": False,
        "reported_state": None,
        "last_seen_ms": None,
        "status_ms": None,
        "version": None,
        "sensors": None,
        "bins": 0,
        "enabled": True,
        "mqtt_username": None,
        # no dynsec admin configured: a record only, no MQTT client made
        "credentials": None,
    }
    created.pop("credentials")
    # ingest knows it at once: a dock without bins may publish scans
    assert "dock1" in api.ctx.registry.snapshot.agents
    assert api.ctx.registry.snapshot.agent_sites["dock1"] == "plant1"

    assert viewer.get("/api/v1/agents/dock1").json() == created
    # only managers and admins register agents or get their credentials
    assert viewer.post("/api/v1/agents", json=_dock(id="dock9")).status_code == 403
    assert viewer.post("/api/v1/agents/dock1/credentials").status_code == 403
    assert (
        viewer.patch("/api/v1/agents/dock1", json={"enabled": False}).status_code == 403
    )
    listed = {a["id"]: a for a in viewer.get("/api/v1/agents").json()}
    assert set(listed) == {"dock1", "pi-1"}
    assert listed["pi-1"]["bins"] == 2
    assert listed["pi-1"]["state"] == "unknown"  # configured, never heard from
    assert [a["id"] for a in viewer.get("/api/v1/agents?site=nowhere").json()] == []

    r = plant.patch("/api/v1/agents/dock1", json={"receive_bins": ["A-02", "A-01"]})
    assert r.status_code == 200, r.text
    assert r.json()["receive_bins"] == ["A-02", "A-01"]
    r = plant.patch("/api/v1/agents/dock1", json={"receive_bins": None})
    assert r.json()["receive_bins"] is None
    assert r.json()["description"] == "goods-in dock, door 3"  # not sent, not changed

    audit = plant.get("/api/v1/audit", params={"entity": "agent"})
    assert audit.status_code == 200, audit.text
    actions = {e["action"] for e in audit.json()}
    assert {"agent.create", "agent.update"} <= actions

    assert plant.delete("/api/v1/agents/dock1").status_code == 204
    assert plant.get("/api/v1/agents/dock1").status_code == 404
    assert "dock1" not in api.ctx.registry.snapshot.agents


def test_a_bin_may_name_an_agent_created_through_the_api(plant: httpx.Client) -> None:
    assert plant.post("/api/v1/agents", json=_dock(id="plc-7")).status_code == 201
    r = plant.post("/api/v1/bins", json=bin_body("B-01", agent_id="plc-7"))
    assert r.status_code == 201, r.text
    assert plant.get("/api/v1/agents/plc-7").json()["bins"] == 1


def test_an_agent_feeding_bins_cannot_be_deleted(plant: httpx.Client) -> None:
    r = plant.delete("/api/v1/agents/pi-1")
    assert r.status_code == 409
    assert "still feeds 2 bins" in r.json()["detail"]
    assert plant.delete("/api/v1/agents/nobody").status_code == 404


def test_duplicates_and_unknown_references_are_refused(plant: httpx.Client) -> None:
    assert plant.post("/api/v1/agents", json=_dock()).status_code == 201
    assert plant.post("/api/v1/agents", json=_dock()).status_code == 409
    assert plant.post("/api/v1/agents", json=_dock(id="pi-1")).status_code == 409

    r = plant.post("/api/v1/agents", json=_dock(id="d2", site_id="nowhere"))
    assert r.status_code == 422
    assert "site_id: site 'nowhere' does not exist" in errors_text(r)

    r = plant.post("/api/v1/agents", json=_dock(id="d2", receive_bins=["Z-99"]))
    assert r.status_code == 422
    assert "receive_bins: bin 'Z-99' does not exist" in errors_text(r)

    r = plant.patch("/api/v1/agents/dock1", json={"receive_bins": ["Z-99"]})
    assert r.status_code == 422
    assert plant.patch("/api/v1/agents/ghost", json={}).status_code == 404


def test_a_listed_bin_of_another_site_is_refused(plant: httpx.Client) -> None:
    assert (
        plant.post(
            "/api/v1/sites", json={"id": "plant2", "name": "Plant 2"}
        ).status_code
        == 201
    )
    r = plant.post(
        "/api/v1/agents", json=_dock(site_id="plant2", receive_bins=["A-01"])
    )
    assert r.status_code == 422
    assert "belongs to site 'plant1', not 'plant2'" in errors_text(r)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_dock(id="bad/id"), "id"),  # not a topic segment
        (_dock(id=""), "id"),
        (_dock(id="x" * 65), "id"),
        (_dock(site_id="a b"), "site_id"),
        (_dock(description="x" * 201), "description"),
        (_dock(description=""), "description"),
        (_dock(receive_bins=["*", "A-01"]), "receive_bins"),
        (_dock(receive_bins=["A-01", "A-01"]), "receive_bins"),
        (_dock(receive_bins=["A/01"]), "receive_bins"),
        (_dock(receive_bins=["A-01*"]), "receive_bins"),
        (_dock(receive_bins="*"), "receive_bins"),
        (_dock(receive_bins=[f"B-{i}" for i in range(1001)]), "receive_bins"),
        (_dock(online=True), "online"),  # liveness is the server's, not the client's
        (_dock(state="online"), "state"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(
    plant: httpx.Client, body: dict[str, Any], field: str
) -> None:
    r = plant.post("/api/v1/agents", json=body)
    assert r.status_code == 422, r.text
    assert field in {str(x) for e in r.json()["detail"] for x in e["loc"]}, r.text


def test_patch_refuses_fields_it_does_not_own(plant: httpx.Client) -> None:
    assert plant.post("/api/v1/agents", json=_dock()).status_code == 201
    for body in ({"site_id": "plant2"}, {"id": "dock2"}, {"last_seen_ms": 1}):
        r = plant.patch("/api/v1/agents/dock1", json=body)
        assert r.status_code == 422, body


def test_viewers_read_managers_change(
    plant: httpx.Client, viewer: httpx.Client, api: Api
) -> None:
    assert viewer.get("/api/v1/agents").status_code == 200
    assert viewer.post("/api/v1/agents", json=_dock()).status_code == 403
    assert plant.post("/api/v1/agents", json=_dock()).status_code == 201
    assert viewer.patch("/api/v1/agents/dock1", json={}).status_code == 403
    assert viewer.delete("/api/v1/agents/dock1").status_code == 403
    assert api.client().get("/api/v1/agents").status_code == 401
