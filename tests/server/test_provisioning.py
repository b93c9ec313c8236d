"""Device provisioning (issue 16) against a real Mosquitto with the Dynamic Security plugin.

The broker runs deploy/mosquitto-dynsec.conf (ports and paths moved to a temp dir),
its plugin file is made by ``mosquitto_ctrl dynsec init`` and the server's own
client by ``mosquitto_ctrl`` as docs/provisioning.md says.  Agents are provisioned
through the HTTP API only and then act as devices would: a paho MQTT 5 client
with the returned credentials, and ``jitstock-edge`` run with the returned
edge.toml against a simulated scale on a pseudo-terminal.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import re
import secrets
import subprocess
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from jitstock.edge.settings import load_settings
from jitstock.firmware_sim.scale import SimulatedScale
from jitstock.server.provisioning.provisioner import Provisioner
from tests.edge.edge_process import start_edge, stop
from tests.server.server_support import WAIT_S, running_app, wait_until
from tests.services import IN_CI, Mosquitto, find_binary

SHIPPED_CONF = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto-dynsec.conf"
PLUGIN_GLOB = "/usr/lib/*/mosquitto_dynamic_security.so"
ADMIN = "jitstock-admin"
SERVER_USER = "jitstock-server"
SITE = "plant1"
UNIT_G, TARE_G = 12.5, 500.0
# MQTT 5 reason code of a PUBACK/SUBACK the broker's ACL refused
NOT_AUTHORIZED = 135


def plugin_path() -> str:
    """The dynsec plugin of the installed Mosquitto (Debian: package mosquitto)."""
    found = sorted(glob.glob(PLUGIN_GLOB))
    if not found:
        msg = f"no {PLUGIN_GLOB}: apt-get install mosquitto (2.0 or later)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return found[0]


class DynsecBroker(Mosquitto):
    """Mosquitto running the shipped deploy/mosquitto-dynsec.conf in a temp dir."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.ctrl = find_binary("mosquitto_ctrl", "/usr/bin/mosquitto_ctrl")
        self.plugin = plugin_path()
        self.dynsec_file = workdir / "dynamic-security.json"
        self.admin_password = secrets.token_urlsafe(16)
        self.server_password = secrets.token_urlsafe(16)
        # docs/provisioning.md, step 1 (the password as an argument instead of the prompt)
        subprocess.run(
            [
                self.ctrl,
                "dynsec",
                "init",
                str(self.dynsec_file),
                ADMIN,
                self.admin_password,
            ],
            check=True,
            capture_output=True,
            timeout=WAIT_S,
        )

    def command(self) -> list[str]:
        text = SHIPPED_CONF.read_text()
        # loopback listener on our port; no TLS listener (no certificates here)
        text = text.replace(
            "listener 1883 127.0.0.1", f"listener {self.port} 127.0.0.1"
        )
        text = re.sub(r"(?m)^(listener 8883|certfile|keyfile|cafile)\b.*$", "", text)
        text = text.replace("/var/lib/mosquitto/", f"{self.workdir}/")
        text = re.sub(r"(?m)^plugin /\S+$", f"plugin {self.plugin}", text)
        text += f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(text)
        return [self.binary, "-c", str(conf)]

    def ctrl_dynsec(self, *args: str, check: bool = True) -> str:
        """`mosquitto_ctrl … dynsec <args>` as the admin client; its output."""
        done = subprocess.run(
            [
                self.ctrl,
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-u",
                ADMIN,
                "-P",
                self.admin_password,
                "dynsec",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=WAIT_S,
        )
        if check:
            assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    def create_server_client(self) -> None:
        """docs/provisioning.md, step 3: the server's own client and role."""
        self.ctrl_dynsec("createRole", SERVER_USER)
        for acl in (
            ("subscribePattern", "jit/v1/#"),
            ("publishClientReceive", "jit/v1/#"),
            ("publishClientSend", "jit/v1/+/+/config"),
            ("publishClientSend", "jit/v1/+/orders/#"),
        ):
            self.ctrl_dynsec("addRoleACL", SERVER_USER, *acl, "allow")
        self.ctrl_dynsec("createClient", SERVER_USER, "-p", self.server_password)
        self.ctrl_dynsec("addClientRole", SERVER_USER, SERVER_USER)


class Device:
    """A device with provisioned credentials: a paho MQTT 5 client that records
    what the broker answers (CONNACK, PUBACK, SUBACK reason codes, disconnects)."""

    def __init__(self, broker: Mosquitto, username: str, password: str) -> None:
        self.username = username
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"dev-{username}-{secrets.token_hex(3)}",
            protocol=mqtt.MQTTv5,
        )
        self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(1, 1)
        self.connacks: list[ReasonCode] = []
        self.disconnects = 0
        self.pubacks: dict[int, ReasonCode] = {}
        self.subacks: dict[int, list[ReasonCode]] = {}
        self.client.on_connect = lambda _c, _u, _f, rc, _p: self.connacks.append(rc)
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = lambda _c, _u, mid, rc, _p: self.pubacks.__setitem__(
            mid, rc
        )
        self.client.on_subscribe = lambda _c, _u, mid, rcs, _p: (
            self.subacks.__setitem__(mid, list(rcs))
        )
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def _on_disconnect(self, *_args: Any) -> None:
        self.disconnects += 1

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def wait_connected(self) -> None:
        wait_until(self.client.is_connected, what=f"{self.username} connected")

    def publish(self, topic: str, doc: dict[str, Any]) -> ReasonCode:
        """Publish at QoS 1 and return the PUBACK's reason code."""
        info = self.client.publish(topic, json.dumps(doc), qos=1)
        wait_until(lambda: info.mid in self.pubacks, what=f"PUBACK of {topic}")
        return self.pubacks[info.mid]

    def subscribe(self, topic: str) -> ReasonCode:
        """Subscribe at QoS 1 and return the SUBACK's reason code."""
        _rc, mid = self.client.subscribe(topic, qos=1)
        assert mid is not None
        wait_until(lambda: mid in self.subacks, what=f"SUBACK of {topic}")
        return self.subacks[mid][0]


def readings(agent: str, seq: int, bin_id: str, count: int) -> dict[str, Any]:
    """A readings batch with one stable reading showing ``count`` parts (docs/protocol.md)."""
    now = int(time.time() * 1000)
    return {
        "agent": agent,
        "seq": seq,
        "sent_ms": now,
        "readings": [
            {
                "bin": bin_id,
                "ts_ms": now,
                "grams": TARE_G + count * UNIT_G,
                "stable": True,
            }
        ],
    }


def topic(agent: str, kind: str) -> str:
    return f"jit/v1/{SITE}/{agent}/{kind}"


@pytest.fixture
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DynsecBroker]:
    b = DynsecBroker(Path(tmp_path_factory.mktemp("dynsec")))
    b.start()
    b.create_server_client()
    yield b
    b.stop()


def server_settings(broker: DynsecBroker, tmp_path: Path) -> dict[str, Any]:
    return {
        "data_dir": tmp_path,
        "db_url": f"sqlite:///{tmp_path / 'state.db'}",
        "mqtt_url": broker.url,
        "mqtt_user": SERVER_USER,
        "mqtt_password": broker.server_password,
        "mqtt_dynsec_user": ADMIN,
        "mqtt_dynsec_password": broker.admin_password,
        "mqtt_dynsec_timeout_s": WAIT_S,
    }


def plant(api: httpx.Client) -> None:
    """A site and a part number, through the API."""
    api.post("/api/v1/sites", json={"id": SITE, "name": "Plant 1"}).raise_for_status()
    api.post(
        "/api/v1/skus", json={"id": "SKU-1", "name": "bolt", "unit_weight_g": UNIT_G}
    ).raise_for_status()


def provision(api: httpx.Client, agent: str, bin_id: str) -> dict[str, Any]:
    """POST the agent (answers its credentials) and a bin it feeds."""
    r = api.post("/api/v1/agents", json={"id": agent, "site_id": SITE})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    api.post(
        "/api/v1/bins",
        json={
            "id": bin_id,
            "site_id": SITE,
            "agent_id": agent,
            "sku_id": "SKU-1",
            "tare_g": TARE_G,
        },
    ).raise_for_status()
    return body


def on_hand(api: httpx.Client, bin_id: str) -> int | None:
    r = api.get(f"/api/v1/levels/{bin_id}")
    return r.json().get("on_hand") if r.status_code == 200 else None


def test_provisioned_agents_publish_their_own_topics_only_and_disable_disconnects(
    tmp_path: Path, broker: DynsecBroker
) -> None:
    with (
        running_app(**server_settings(broker, tmp_path)) as (_app, base),
        httpx.Client(base_url=base, timeout=WAIT_S * 2) as api,
    ):
        plant(api)
        a = provision(api, "pi-a", "B1")
        b = provision(api, "pi-b", "B2")
        creds_a, creds_b = a["credentials"], b["credentials"]
        assert creds_a["username"] == "pi-a"
        assert a["mqtt_username"] == "pi-a"
        assert a["enabled"] is True
        assert len(creds_a["password"]) >= 40
        assert creds_a["password"] != creds_b["password"]
        # shown once: never again in any GET
        for path in ("/api/v1/agents", "/api/v1/agents/pi-a"):
            text = api.get(path).text
            assert creds_a["password"] not in text
            assert "credentials" not in text

        dev_a = Device(broker, "pi-a", creds_a["password"])
        dev_b = Device(broker, "pi-b", creds_b["password"])
        try:
            dev_a.wait_connected()
            dev_b.wait_connected()
            # the audit log records the credentials, never the password
            audit = api.get("/api/v1/audit", params={"entity": "agent"})
            assert audit.status_code == 200, audit.text
            assert "agent.credentials" in {e["action"] for e in audit.json()}
            assert creds_a["password"] not in audit.text
            # its own readings: accepted by the broker and applied by the server
            assert (
                dev_a.publish(topic("pi-a", "readings"), readings("pi-a", 1, "B1", 40))
                == 0
            )
            wait_until(lambda: on_hand(api, "B1") == 40, what="B1 at 40")
            assert (
                dev_b.publish(topic("pi-b", "readings"), readings("pi-b", 1, "B2", 10))
                == 0
            )
            wait_until(lambda: on_hand(api, "B2") == 10, what="B2 at 10")
            # its own config: may subscribe; another agent's topics: refused
            assert dev_a.subscribe(topic("pi-a", "config")).value < 128
            assert dev_a.subscribe(topic("pi-b", "config")).value == NOT_AUTHORIZED
            assert dev_a.subscribe("jit/v1/#").value == NOT_AUTHORIZED
            forged = readings("pi-b", 2, "B2", 3)
            assert (
                dev_a.publish(topic("pi-b", "readings"), forged).value == NOT_AUTHORIZED
            )
            assert (
                dev_a.publish("jit/v1/plant1/orders/acme", {}).value == NOT_AUTHORIZED
            )
            # had the forged seq 2 reached the server, pi-b's own seq 2 would be a duplicate
            assert (
                dev_b.publish(topic("pi-b", "readings"), readings("pi-b", 2, "B2", 11))
                == 0
            )
            wait_until(lambda: on_hand(api, "B2") == 11, what="B2 at 11, not 3")

            # disable: the connected agent is thrown out and its reconnects are refused
            r = api.patch("/api/v1/agents/pi-a", json={"enabled": False})
            assert r.status_code == 200, r.text
            assert r.json()["enabled"] is False
            # kicked without a last will, yet shown as disabled, not online (nor silent)
            assert r.json()["state"] == "disabled"
            wait_until(lambda: dev_a.disconnects >= 1, what="pi-a disconnected")
            wait_until(
                lambda: any(rc.is_failure for rc in dev_a.connacks),
                what="pi-a's reconnect refused",
            )
            time.sleep(3.0)  # several reconnect attempts (1 s apart) ...
            assert not dev_a.client.is_connected()  # ... none of them let in
            got = api.get("/api/v1/agents/pi-a").json()
            assert (got["enabled"], got["state"]) == (False, "disabled")
            assert {g["id"]: g["state"] for g in api.get("/api/v1/agents").json()} == {
                "pi-a": "disabled",
                "pi-b": "online",
            }
            # its bin does not claim the agent online
            assert api.get("/api/v1/levels/B1").json()["agent_online"] is False
            assert api.get("/api/v1/levels/B2").json()["agent_online"] is True
            tiles = {x["id"]: x for x in api.get("/api/v1/floor").json()["tiles"]}
            assert (tiles["B1"]["status"], tiles["B2"]["status"]) == ("offline", "ok")
            assert dev_b.client.is_connected()  # the other agent is untouched

            # enable: it is let in again and publishes
            r = api.patch("/api/v1/agents/pi-a", json={"enabled": True})
            assert r.status_code == 200, r.text
            dev_a.wait_connected()
            assert (
                dev_a.publish(topic("pi-a", "readings"), readings("pi-a", 2, "B1", 39))
                == 0
            )
            wait_until(lambda: on_hand(api, "B1") == 39, what="B1 at 39")
            assert api.get("/api/v1/agents/pi-a").json()["state"] == "online"
            assert api.get("/api/v1/levels/B1").json()["agent_online"] is True
            tiles = {x["id"]: x for x in api.get("/api/v1/floor").json()["tiles"]}
            assert tiles["B1"]["status"] == "ok"

            # delete: client and role are gone at the broker, the agent with them
            assert api.delete("/api/v1/agents/pi-b").status_code == 409  # feeds B2
            assert api.delete("/api/v1/bins/B2").status_code == 204
            assert api.delete("/api/v1/agents/pi-b").status_code == 204
            wait_until(lambda: dev_b.disconnects >= 1, what="pi-b disconnected")
            assert "Client not found" in broker.ctrl_dynsec(
                "getClient", "pi-b", check=False
            )
            assert "Role not found" in broker.ctrl_dynsec(
                "getRole", "jitstock-agent-pi-b", check=False
            )
            assert api.get("/api/v1/agents/pi-b").status_code == 404
        finally:
            dev_a.close()
            dev_b.close()


def test_returned_edge_toml_runs_jitstock_edge_and_the_level_arrives(
    tmp_path: Path, broker: DynsecBroker
) -> None:
    scale = SimulatedScale(
        "B3",
        unit_weight_g=UNIT_G,
        count=57,
        tare_g=TARE_G,
        workdir=tmp_path,
        settle_s=0.3,
    )
    scale.start()
    with (
        running_app(**server_settings(broker, tmp_path)) as (_app, base),
        httpx.Client(base_url=base, timeout=WAIT_S * 2) as api,
    ):
        plant(api)
        created = provision(api, "pi-c", "B3")
        toml = created["credentials"]["edge_toml"]
        # as handed out, it is a valid edge config naming this agent and the broker
        doc = tomllib.loads(toml)
        assert doc["site"] == SITE
        assert doc["agent"] == "pi-c"
        assert doc["mqtt_user"] == "pi-c"
        assert doc["mqtt_url"] == broker.url
        assert doc["mqtt_password"] == created["credentials"]["password"]
        config = tmp_path / "edge.toml"
        # what the plant adds: where the outbox lives, and its scale
        config.write_text(
            toml
            + f'outbox_path = "{tmp_path / "outbox.db"}"\n'
            + "tick_s = 0.2\n\n[signal]\nstability_window_s = 0.4\n\n"
            + f'[[scales]]\nport = "{scale.port}"\nbin = "B3"\n'
        )
        load_settings(config)  # the agent's own validation accepts it
        edge = start_edge(config, tmp_path / "edge.log")
        try:
            wait_until(
                lambda: on_hand(api, "B3") == 57,
                what="the simulated scale's 57 parts at the server",
            )
            scale.pick(5)
            wait_until(lambda: on_hand(api, "B3") == 52, what="B3 at 52 after a pick")
        finally:
            stop(edge)
            scale.stop()


def test_broker_down_is_a_503_and_changes_nothing_then_a_retry_works(
    tmp_path: Path, broker: DynsecBroker, db_url: str
) -> None:
    """On SQLite and PostgreSQL: the refused request's transaction is never committed."""
    settings = server_settings(broker, tmp_path)
    settings["db_url"] = db_url
    settings["mqtt_dynsec_timeout_s"] = 3.0
    with (
        running_app(**settings) as (_app, base),
        httpx.Client(base_url=base, timeout=WAIT_S * 2) as api,
    ):
        plant(api)
        kept = provision(api, "pi-k", "BK")
        assert api.delete("/api/v1/bins/BK").status_code == 204  # so it may be deleted
        broker.stop()
        r = api.post("/api/v1/agents", json={"id": "pi-new", "site_id": SITE})
        assert r.status_code == 503, r.text
        assert "MQTT broker unavailable, nothing was changed" in r.json()["detail"]
        assert api.get("/api/v1/agents/pi-new").status_code == 404
        r = api.patch("/api/v1/agents/pi-k", json={"enabled": False})
        assert r.status_code == 503, r.text
        assert api.get("/api/v1/agents/pi-k").json()["enabled"] is True
        r = api.delete("/api/v1/agents/pi-k")
        assert r.status_code == 503, r.text
        assert api.get("/api/v1/agents/pi-k").status_code == 200

        broker.start()
        r = api.post("/api/v1/agents", json={"id": "pi-new", "site_id": SITE})
        assert r.status_code == 201, r.text
        dev = Device(broker, "pi-new", r.json()["credentials"]["password"])
        try:
            dev.wait_connected()
        finally:
            dev.close()
        # the agent provisioned before the outage still gets in
        dev = Device(broker, "pi-k", kept["credentials"]["password"])
        try:
            dev.wait_connected()
        finally:
            dev.close()


def test_a_client_not_made_by_jitstock_is_never_replaced(
    tmp_path: Path, broker: DynsecBroker
) -> None:
    with (
        running_app(**server_settings(broker, tmp_path)) as (_app, base),
        httpx.Client(base_url=base, timeout=WAIT_S * 2) as api,
    ):
        plant(api)
        for name in (ADMIN, SERVER_USER):
            r = api.post("/api/v1/agents", json={"id": name, "site_id": SITE})
            assert r.status_code == 409, r.text
            assert "jitstock did not make" in r.json()["detail"]
            assert api.get(f"/api/v1/agents/{name}").status_code == 404
        # the server's own client still works (ingest is connected) and so does the admin
        assert "jitstock-server" in broker.ctrl_dynsec("getClient", SERVER_USER)
        assert provision(api, "pi-after", "BA")["credentials"] is not None


def test_leftover_of_a_half_done_provisioning_is_replaced_on_retry(
    tmp_path: Path, broker: DynsecBroker
) -> None:
    with (
        running_app(**server_settings(broker, tmp_path)) as (app, base),
        httpx.Client(base_url=base, timeout=WAIT_S * 2) as api,
    ):
        plant(api)
        # the broker half of a POST whose database commit never happened
        prov = Provisioner.from_settings(app.settings)
        assert prov is not None
        stale = prov.create("pi-z", SITE)
        r = api.post("/api/v1/agents", json={"id": "pi-z", "site_id": SITE})
        assert r.status_code == 201, r.text
        fresh = r.json()["credentials"]["password"]
        assert fresh != stale.password
        dev = Device(broker, "pi-z", fresh)
        try:
            dev.wait_connected()
        finally:
            dev.close()
        old = Device(broker, "pi-z", stale.password)
        try:
            wait_until(lambda: bool(old.connacks), what="CONNACK of the stale password")
            assert old.connacks[0].is_failure
        finally:
            old.close()


def test_new_credentials_replace_the_old_password(
    tmp_path: Path, broker: DynsecBroker
) -> None:
    with (
        running_app(**server_settings(broker, tmp_path)) as (_app, base),
        httpx.Client(base_url=base, timeout=WAIT_S * 2) as api,
    ):
        plant(api)
        first = provision(api, "pi-r", "BR")["credentials"]["password"]
        dev = Device(broker, "pi-r", first)
        try:
            dev.wait_connected()
            r = api.post("/api/v1/agents/pi-r/credentials")
            assert r.status_code == 200, r.text
            second = r.json()["password"]
            assert second != first
            # the old password's connection is ended and not let back in
            wait_until(lambda: dev.disconnects >= 1, what="old password disconnected")
            wait_until(
                lambda: any(rc.is_failure for rc in dev.connacks),
                what="old password refused",
            )
        finally:
            dev.close()
        dev = Device(broker, "pi-r", second)
        try:
            dev.wait_connected()
        finally:
            dev.close()
