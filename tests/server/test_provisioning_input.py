"""Hostile input on the provisioning endpoints (issue 16), with the real dynsec broker:
every bad request is a 4xx with a message naming the field, changes nothing at the
broker or in the database, and never stops the good requests around it."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.server_support import WAIT_S, running_app
from tests.server.test_provisioning import (
    SITE,
    Device,
    DynsecBroker,
    plant,
    provision,
    server_settings,
)


@pytest.fixture
def broker(tmp_path_factory: pytest.TempPathFactory) -> Any:
    b = DynsecBroker(Path(tmp_path_factory.mktemp("dynsec")))
    b.start()
    b.create_server_client()
    yield b
    b.stop()


def broker_clients(broker: DynsecBroker) -> list[str]:
    """Every client username the broker's dynsec knows."""
    return sorted(broker.ctrl_dynsec("listClients").split())


BAD_IDS: list[Any] = [
    "",
    "x" * 65,
    "pi/a",
    "pi+",
    "pi#",
    "$CONTROL",
    "orders",  # reserved: the topic level of orders to suppliers
    "pi a",
    "pi\u00e9",
    "pi\x00",
    2**63,
    2**64,
    5e-324,
    None,
    [],
    {},
    True,
]

BAD_ENABLED: list[Any] = [
    "false",
    "true",
    0,
    1,
    None,
    2**63,
    2**64,
    5e-324,
    [],
    {},
    "x" * 100_000,
]


def test_hostile_input_is_refused_and_changes_nothing(
    tmp_path: Path, broker: DynsecBroker
) -> None:
    with (
        running_app(**server_settings(broker, tmp_path)) as (_app, base),
        httpx.Client(base_url=base, timeout=WAIT_S * 2) as api,
    ):
        plant(api)
        good = provision(api, "pi-good", "BG")["credentials"]
        dev = Device(broker, "pi-good", good["password"])
        try:
            dev.wait_connected()
            before = broker_clients(broker)

            for bad in BAD_IDS:
                r = api.post("/api/v1/agents", json={"id": bad, "site_id": SITE})
                assert r.status_code == 422, (bad, r.text)
                assert r.json()["detail"][0]["msg"].startswith("id"), r.text
            for body in (
                {"id": "pi-x", "site_id": SITE, "password": "mine"},
                {"id": "pi-x", "site_id": SITE, "enabled": False},
                {"id": "pi-x", "site_id": SITE, "mqtt_username": "jitstock-admin"},
                {"id": "pi-x", "site_id": "nowhere"},
                {"id": "pi-x", "site_id": SITE, "description": "d" * 1_000_000},
                {"id": "pi-x"},
            ):
                r = api.post("/api/v1/agents", json=body)
                assert r.status_code == 422, (body, r.text)
            for raw in (b"", b"{", b"\xff\xfe", b"[]", b'{"id": NaN}', b"1e400"):
                r = api.post(
                    "/api/v1/agents",
                    content=raw,
                    headers={"Content-Type": "application/json"},
                )
                assert r.status_code == 422, (raw, r.text)

            for bad in BAD_ENABLED:
                r = api.patch("/api/v1/agents/pi-good", json={"enabled": bad})
                assert r.status_code == 422, (bad, r.text)
                assert "enabled" in r.json()["detail"][0]["msg"], r.text
            r = api.patch(
                "/api/v1/agents/pi-good",
                content=json.dumps({"enabled": False, "enabled2": True}),
                headers={"Content-Type": "application/json"},
            )
            assert r.status_code == 422

            for path in ("x" * 10_000, "nope", "pi-good%2F..%2Fpi-x"):
                r = api.post(f"/api/v1/agents/{path}/credentials")
                assert r.status_code == 404, r.text
                r = api.patch(f"/api/v1/agents/{path}", json={"enabled": False})
                assert r.status_code == 404, r.text

            # nothing changed: no new client at the broker, the good agent still in
            assert broker_clients(broker) == before
            assert api.get("/api/v1/agents/pi-good").json()["enabled"] is True
            assert dev.client.is_connected()
            assert dev.disconnects == 0
            assert api.get("/api/v1/agents/pi-x").status_code == 404

            # replays: a second POST of the same agent is a 409 and keeps its password;
            # a repeated disable is a no-op answer, not an error
            r = api.post("/api/v1/agents", json={"id": "pi-good", "site_id": SITE})
            assert r.status_code == 409
            assert dev.client.is_connected()
            for _ in range(2):
                r = api.patch("/api/v1/agents/pi-good", json={"enabled": False})
                assert r.status_code == 200
                assert r.json()["enabled"] is False
            for _ in range(2):
                r = api.patch("/api/v1/agents/pi-good", json={"enabled": True})
                assert r.status_code == 200
            dev.wait_connected()
            # out of order: after DELETE, the agent's endpoints are 404s
            assert api.delete("/api/v1/bins/BG").status_code == 204
            assert api.delete("/api/v1/agents/pi-good").status_code == 204
            assert api.delete("/api/v1/agents/pi-good").status_code == 404
            r = api.patch("/api/v1/agents/pi-good", json={"enabled": True})
            assert r.status_code == 404
            assert api.post("/api/v1/agents/pi-good/credentials").status_code == 404
            assert "pi-good" not in broker_clients(broker)
        finally:
            dev.close()


def test_without_dynsec_agents_are_records_only(tmp_path: Path) -> None:
    """No JITSTOCK_MQTT_DYNSEC_USER: POST answers no credentials, and the broker-only
    operations say why they cannot be done (409) instead of pretending."""
    with (
        running_app(data_dir=tmp_path, db_url=f"sqlite:///{tmp_path / 's.db'}") as (
            _app,
            base,
        ),
        httpx.Client(base_url=base, timeout=WAIT_S * 2) as api,
    ):
        plant(api)
        r = api.post("/api/v1/agents", json={"id": "pi-1", "site_id": SITE})
        assert r.status_code == 201, r.text
        assert r.json()["credentials"] is None
        assert r.json()["mqtt_username"] is None
        r = api.post("/api/v1/agents/pi-1/credentials")
        assert r.status_code == 409
        assert "JITSTOCK_MQTT_DYNSEC_USER" in r.json()["detail"]
        r = api.patch("/api/v1/agents/pi-1", json={"enabled": False})
        assert r.status_code == 409
        assert "password file" in r.json()["detail"]
        assert api.get("/api/v1/agents/pi-1").json()["enabled"] is True
        assert api.delete("/api/v1/agents/pi-1").status_code == 204


@pytest.mark.parametrize(
    ("user", "password", "says"),
    [
        # a wrong admin password: the broker refuses the connection
        ("jitstock-admin", "wrong-password", "refused the dynsec admin client"),
        # the server's own client is no dynsec admin: it may not read the answers
        ("jitstock-server", None, "not a dynsec admin client"),
    ],
)
def test_a_misconfigured_admin_client_is_a_503_naming_the_setting(
    tmp_path: Path, broker: DynsecBroker, user: str, password: str | None, says: str
) -> None:
    settings = server_settings(broker, tmp_path)
    settings["mqtt_dynsec_user"] = user
    settings["mqtt_dynsec_password"] = password or broker.server_password
    settings["mqtt_dynsec_timeout_s"] = 3.0
    with (
        running_app(**settings) as (_app, base),
        httpx.Client(base_url=base, timeout=WAIT_S * 2) as api,
    ):
        plant(api)
        r = api.post("/api/v1/agents", json={"id": "pi-m", "site_id": SITE})
        assert r.status_code == 503, r.text
        assert says in r.json()["detail"]
        assert api.get("/api/v1/agents/pi-m").status_code == 404
        assert "pi-m" not in broker_clients(broker)


def test_concurrent_posts_make_one_client_per_agent_and_its_password_works(
    tmp_path: Path, broker: DynsecBroker
) -> None:
    with (
        running_app(**server_settings(broker, tmp_path)) as (_app, base),
        httpx.Client(base_url=base, timeout=WAIT_S * 4) as api,
    ):
        plant(api)
        ids = ["pi-1", "pi-2", "pi-3", "pi-same", "pi-same", "pi-same"]
        with ThreadPoolExecutor(len(ids)) as pool:
            answers = list(
                pool.map(
                    lambda agent: api.post(
                        "/api/v1/agents", json={"id": agent, "site_id": SITE}
                    ),
                    ids,
                )
            )
        codes = [(agent, r.status_code) for agent, r in zip(ids, answers, strict=True)]
        assert sorted(c for a, c in codes if a == "pi-same") == [201, 409, 409], codes
        assert all(c == 201 for a, c in codes if a != "pi-same"), codes
        for agent, r in zip(ids, answers, strict=True):
            if r.status_code != 201:
                continue
            dev = Device(broker, agent, r.json()["credentials"]["password"])
            try:
                dev.wait_connected()
            finally:
                dev.close()
