"""Issue 17, hostile Sparkplug input against a real server on a real Mosquitto: every bad
topic, payload and metric is rejected and counted under its sparkplug_* label (or ingest's
own, for a weight or time out of range), and good data keeps being applied around it.

The edge node here is written out message by message (pysparkplug's payload classes
encode, a plain paho client publishes), so the test chooses every seq, alias and bdSeq.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pysparkplug as spb
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from jitstock import protocol
from jitstock.server.seed import BinSeed, SupplierSeed
from tests.server.server_support import running_app, seed, wait_until
from tests.waits import WAIT_S

SITE = "plant1"
GROUP = "Plant1"
NODE = "Line1"
DEVICE = "Scale1"
UNIT_G = 10.0
TARE_G = 100.0
D = spb.DataType


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def m(
    name: str | None,
    datatype: spb.DataType,
    value: Any,
    *,
    alias: int | None = None,
    ts: int | None = None,
    null: bool = False,
) -> spb.Metric:
    return spb.Metric(
        timestamp=now_ms() if ts is None else ts,
        name=name,
        datatype=datatype,
        value=value,
        alias=alias,
        is_null=null,
    )


class Gateway:
    """A Sparkplug edge node publishing exactly what the test says, plus an NCMD watch."""

    def __init__(self, port: int) -> None:
        self.seq = 0
        self.ncmd: list[str] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="gateway")
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"spBv1.0/{GROUP}/NCMD/#", qos=0)
        self.client.loop_start()
        assert subscribed.wait(WAIT_S)

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        cmd = spb.NCmd.decode(bytes(msg.payload))
        if any(
            x.name == "Node Control/Rebirth" and x.value is True for x in cmd.metrics
        ):
            with self._lock:
                self.ncmd.append(msg.topic)

    def rebirths(self, node: str = NODE) -> int:
        with self._lock:
            return self.ncmd.count(f"spBv1.0/{GROUP}/NCMD/{node}")

    def raw(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(WAIT_S)

    def send(self, kind: str, payload: Any, device: str = "", node: str = NODE) -> None:
        tail = f"/{device}" if device else ""
        self.raw(
            f"spBv1.0/{GROUP}/{kind}/{node}{tail}",
            payload.encode(include_dtypes=True),
        )

    def next_seq(self) -> int:
        self.seq = (self.seq + 1) % 256
        return self.seq

    def nbirth(self, bd_seq: int, tank: int, node: str = NODE) -> None:
        self.seq = 0
        metrics = (
            m("bdSeq", D.INT64, bd_seq),
            m("Tank Level", D.UINT16, tank, alias=7),
        )
        self.send("NBIRTH", spb.NBirth(now_ms(), seq=0, metrics=metrics), node=node)

    def dbirth(self, gross_g: float, parts: int) -> None:
        metrics = (
            m("Gross Weight", D.DOUBLE, gross_g, alias=1),
            m("Parts", D.INT64, parts, alias=2),
            m("Label", D.STRING, "M6x20", alias=3),
            m("Flag", D.BOOLEAN, True, alias=4),
            m("Counter", D.UINT64, 0, alias=5),
        )
        self.send(
            "DBIRTH", spb.DBirth(now_ms(), seq=self.next_seq(), metrics=metrics), DEVICE
        )

    def ddata(self, *metrics: spb.Metric, seq: int | None = None) -> None:
        s = self.next_seq() if seq is None else seq
        self.send("DDATA", spb.DData(now_ms(), seq=s, metrics=metrics), DEVICE)

    def ndata(self, *metrics: spb.Metric) -> None:
        self.send("NDATA", spb.NData(now_ms(), seq=self.next_seq(), metrics=metrics))

    def ndeath(self, bd_seq: int) -> None:
        self.send(
            "NDEATH", spb.NDeath(now_ms(), bd_seq_metric=m("bdSeq", D.INT64, bd_seq))
        )

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def plant(tmp_path: Path, mosquitto: Any) -> Iterator[tuple[httpx.Client, Gateway]]:
    """B1 by weight, B2-B4 by count, all fed by agent gw-1; Sparkplug group Plant1."""
    db_url = f"sqlite:///{tmp_path / 'state.db'}"
    seed(
        db_url,
        [
            BinSeed("B1", "gw-1", "SKU-1", UNIT_G, TARE_G, 0, 40, 200, "S1"),
            BinSeed("B2", "gw-1", "SKU-2", 5.0, 0.0, 0, 40, 200, "S1"),
            BinSeed("B3", "gw-1", "SKU-3", 1.0, 0.0, 0, 40, 200, "S1"),
            BinSeed("B4", "gw-1", "SKU-4", 1.0, 0.0, 0, 40, 200, "S1"),
        ],
        [SupplierSeed("S1", "Supplier 1", None, None, mqtt_orders=True)],
        site=SITE,
    )
    with (
        running_app(
            data_dir=tmp_path,
            db_url=db_url,
            mqtt_url=mosquitto.url,
            sparkplug_groups=f"{GROUP},Other",
            sparkplug_rebirth_interval_s=0.2,
        ) as (_app, url),
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        for device, metric, bin_id, unit in (
            (DEVICE, "Gross Weight", "B1", "grams"),
            (DEVICE, "Parts", "B2", "count"),
            (DEVICE, "Label", "B2", "count"),
            (DEVICE, "Flag", "B2", "count"),
            (DEVICE, "Counter", "B4", "count"),
            ("", "Tank Level", "B3", "count"),
        ):
            r = client.put(
                "/api/v1/sparkplug/mappings",
                json={
                    "group_id": GROUP,
                    "edge_node": NODE,
                    "device": device,
                    "metric": metric,
                    "bin_id": bin_id,
                    "unit": unit,
                },
            )
            assert r.status_code == 201, r.text
        gateway = Gateway(int(mosquitto.url.rsplit(":", 1)[1]))
        try:
            yield client, gateway
        finally:
            gateway.close()


def counter(client: httpx.Client, kind: str, reason: str) -> float:
    """jitstock_rejected_{kind}_total{reason=...} from /metrics (0 if absent)."""
    name = f'jitstock_rejected_{kind}_total{{reason="{reason}"}}'
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def on_hand(client: httpx.Client, bin_id: str) -> int:
    value: int = client.get(f"/api/v1/levels/{bin_id}").json()["on_hand"]
    return value


def expect(client: httpx.Client, kind: str, reason: str, n: float = 1.0) -> None:
    wait_until(
        lambda: counter(client, kind, reason) >= n,
        what=f"{n:g} rejected {kind} counted as {reason}",
    )


def wait_followed(client: httpx.Client, gw: Gateway) -> None:
    """Wait until the server's Sparkplug session receives: data from a gateway not yet
    born is counted (sparkplug_no_birth) once the subscription is in place."""

    def subscribed() -> bool:
        gw.ddata(m("Gross Weight", D.DOUBLE, 500.0), seq=3)
        return counter(client, "batches", "sparkplug_no_birth") >= 1

    wait_until(subscribed, interval=0.3, what="the server following Plant1")


def test_bad_sparkplug_input_is_counted_and_never_stops_good_data(
    plant: tuple[httpx.Client, Gateway],
) -> None:
    client, gw = plant

    # garbage on the topic of a node not yet in step: malformed, not the node's data
    gw.raw(f"spBv1.0/{GROUP}/DDATA/{NODE}/{DEVICE}", b"hello, not protobuf")
    expect(client, "batches", "sparkplug_malformed")
    assert counter(client, "batches", "sparkplug_no_birth") == 0.0

    # data before any BIRTH: refused (counted), and the edge node is asked for a rebirth
    # (again until one is seen: requests are rate-limited per node, and mapping the node
    # asked it once already — on a busy box that request can reach this watch after it
    # subscribed, before the server has taken the first DDATA, so both are waited for)
    def data_before_birth() -> bool:
        gw.ddata(m("Gross Weight", D.DOUBLE, 500.0), seq=3)
        return (
            gw.rebirths() >= 1 and counter(client, "batches", "sparkplug_no_birth") >= 1
        )

    wait_until(
        data_before_birth,
        interval=0.3,
        what="DDATA before BIRTH counted as sparkplug_no_birth and a rebirth request",
    )
    assert on_hand(client, "B1") == 0

    gw.nbirth(bd_seq=5, tank=20)
    gw.dbirth(gross_g=TARE_G + 50 * UNIT_G, parts=30)
    wait_until(
        lambda: (
            (on_hand(client, "B1"), on_hand(client, "B2"), on_hand(client, "B3"))
            == (50, 30, 20)
        ),
        what="the BIRTHs' values",
    )
    # the mapped string and boolean metrics of the DBIRTH are refused, not guessed at
    assert counter(client, "items", "sparkplug_wrong_datatype") == 2.0

    # by alias only, as gateways send DATA
    gw.ddata(m(None, D.DOUBLE, TARE_G + 45 * UNIT_G, alias=1))
    gw.ndata(m(None, D.UINT16, 18, alias=7))
    wait_until(
        lambda: (on_hand(client, "B1"), on_hand(client, "B3")) == (45, 18),
        what="DDATA and NDATA by alias",
    )

    # bad values: each refused, none moves a level
    future = now_ms() + 24 * 3600 * 1000
    for bad in (
        m("Gross Weight", D.DOUBLE, math.nan),
        m("Gross Weight", D.DOUBLE, math.inf),
        m("Gross Weight", D.DOUBLE, None, null=True),
        m("Parts", D.INT64, -1),
        m("Parts", D.INT64, 2**31),
        m("Counter", D.UINT64, 2**64 - 1),
    ):
        gw.ddata(bad)
    expect(client, "items", "sparkplug_bad_value", 6)
    gw.ddata(m("Gross Weight", D.DOUBLE, 1e300))  # ingest's own range check
    expect(client, "items", "bad_weight")
    gw.ddata(m("Gross Weight", D.DOUBLE, TARE_G, ts=future))  # from the future
    expect(client, "items", "bad_timestamp")
    gw.ddata(m("Gross Weight", D.DOUBLE, TARE_G, ts=2**64 - 1))
    expect(client, "items", "sparkplug_bad_timestamp")
    gw.ddata(m("Label", D.STRING, "x" * 1000), m("Temperature", D.FLOAT, 21.5))
    expect(client, "items", "sparkplug_wrong_datatype", 3)
    expect(client, "items", "sparkplug_unmapped_metric")

    # bad topics and payloads
    gw.raw(
        f"spBv1.0/{GROUP}/DDATA/{NODE}", b"\x08\x01"
    )  # a device message without device
    gw.raw(f"spBv1.0/{GROUP}/XDATA/{NODE}", b"")
    gw.raw(f"spBv1.0/{GROUP}/NDATA/{'n' * 65}", b"")
    gw.raw(f"spBv1.0/{GROUP}/DDATA/{NODE}/", b"")
    expect(client, "batches", "sparkplug_bad_topic", 4)
    gw.raw(f"spBv1.0/{GROUP}/DDATA/{NODE}/{DEVICE}", b"\xff\xfe garbage")
    gw.raw(f"spBv1.0/{GROUP}/NDATA/{NODE}", b"")  # valid protobuf, no timestamp
    gw.raw(f"spBv1.0/{GROUP}/NDATA/{NODE}", b"\x00" * (protocol.MAX_PAYLOAD_BYTES + 1))
    expect(client, "batches", "sparkplug_malformed", 3)
    expect(client, "batches", "sparkplug_oversized")
    gw.send("NDATA", spb.NData(now_ms(), seq=300, metrics=()))
    expect(client, "batches", "sparkplug_bad_seq")
    # an edge node nobody mapped, in a followed group: ignored, never asked for anything
    gw.nbirth(bd_seq=0, tank=1, node="Line9")
    expect(client, "batches", "sparkplug_unmapped_node")
    assert gw.rebirths("Line9") == 0

    # after all that, good data from the node in step still applies
    gw.nbirth(bd_seq=5, tank=17)
    gw.dbirth(gross_g=TARE_G + 44 * UNIT_G, parts=29)
    gw.ddata(m(None, D.DOUBLE, TARE_G + 40 * UNIT_G, alias=1))
    wait_until(
        lambda: (
            (on_hand(client, "B1"), on_hand(client, "B2"), on_hand(client, "B3"))
            == (40, 29, 17)
        ),
        what="good data after the bad",
    )

    # an alias no BIRTH announced: refused, rebirth requested, nothing applied until then
    asked = gw.rebirths()
    gw.ddata(m(None, D.DOUBLE, TARE_G, alias=99))
    expect(client, "batches", "sparkplug_unknown_alias")
    wait_until(lambda: gw.rebirths() > asked, what="a rebirth for the unknown alias")
    gw.ddata(m(None, D.DOUBLE, TARE_G + 1 * UNIT_G, alias=1))
    expect(client, "batches", "sparkplug_no_birth", 2)
    assert on_hand(client, "B1") == 40

    # a late will of an older session changes nothing; the current one marks it offline
    gw.nbirth(bd_seq=5, tank=17)
    gw.ndeath(bd_seq=4)
    expect(client, "batches", "sparkplug_stale_death")
    assert client.get("/api/v1/agents/gw-1").json()["state"] == "online"
    gw.ndeath(bd_seq=5)
    wait_until(
        lambda: client.get("/api/v1/agents/gw-1").json()["state"] == "offline",
        what="gw-1 offline after its NDEATH",
    )


@pytest.fixture
def quiet_plant(
    tmp_path: Path, mosquitto: Any
) -> Iterator[tuple[httpx.Client, Gateway]]:
    """B1 fed by gw-1 through Sparkplug; an agent silent for SILENT_S would count as offline."""
    db_url = f"sqlite:///{tmp_path / 'state.db'}"
    seed(
        db_url,
        [BinSeed("B1", "gw-1", "SKU-1", UNIT_G, TARE_G, 0, 40, 200, "S1")],
        [SupplierSeed("S1", "Supplier 1", None, None, mqtt_orders=True)],
        site=SITE,
    )
    with (
        running_app(
            data_dir=tmp_path,
            db_url=db_url,
            mqtt_url=mosquitto.url,
            sparkplug_groups=GROUP,
            sparkplug_rebirth_interval_s=0.2,
            alert_agent_silent_s=SILENT_S,
        ) as (_app, url),
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        r = client.put(
            "/api/v1/sparkplug/mappings",
            json={
                "group_id": GROUP,
                "edge_node": NODE,
                "device": DEVICE,
                "metric": "Gross Weight",
                "bin_id": "B1",
                "unit": "grams",
            },
        )
        assert r.status_code == 201, r.text
        gateway = Gateway(int(mosquitto.url.rsplit(":", 1)[1]))
        try:
            yield client, gateway
        finally:
            gateway.close()


# The heartbeat comes every SILENT_S / 4 and an agent's last_seen_ms is written at most once
# a second, so 5 s leaves a busy box seconds of slack (at 2 s, one 1.5 s stall of the test
# machine turned the agent offline once in a full CI run).
SILENT_S = 5.0


def test_a_live_gateway_that_reports_nothing_stays_online(
    quiet_plant: tuple[httpx.Client, Gateway],
) -> None:
    """Report by exception: after its BIRTH a gateway may say nothing for hours. Its MQTT
    session (and will) is its sign of life, so its agent must not turn offline by silence."""
    client, gw = quiet_plant

    wait_followed(client, gw)
    gw.nbirth(bd_seq=1, tank=0)
    gw.dbirth(gross_g=TARE_G + 5 * UNIT_G, parts=0)
    wait_until(lambda: on_hand(client, "B1") == 5, what="the BIRTH applied")
    first = client.get("/api/v1/agents/gw-1").json()["last_seen_ms"]

    def silent_long_and_still_online() -> bool:
        agent = client.get("/api/v1/agents/gw-1").json()
        assert agent["state"] == "online", agent
        return bool(agent["last_seen_ms"] >= first + 2 * SILENT_S * 1000)

    # two silence thresholds without a single message from the gateway
    wait_until(silent_long_and_still_online, interval=0.2, what="2 x 5 s of silence")


def test_a_metric_mapped_on_a_node_already_followed_gets_its_value_by_rebirth(
    quiet_plant: tuple[httpx.Client, Gateway],
) -> None:
    """Found by an outside try: with Line1 already born, mapping another of its metrics
    (or sending a mapped one to another bin) left that bin without a level until the
    gateway happened to report the metric again, hours later for one reporting by
    exception, and no rebirth was asked. Now the node is asked for its current values."""
    client, gw = quiet_plant

    wait_followed(client, gw)
    gw.nbirth(bd_seq=1, tank=0)
    gw.dbirth(gross_g=TARE_G + 5 * UNIT_G, parts=7)
    wait_until(lambda: on_hand(client, "B1") == 5, what="the BIRTH applied")
    for bin_id in ("B2", "B3"):
        r = client.post(
            "/api/v1/bins",
            json={
                "id": bin_id,
                "site_id": SITE,
                "sku_id": "SKU-1",
                "agent_id": "gw-1",
                "tare_g": 0.0,
                "reorder_point": 0,
                "order_qty": 10,
            },
        )
        assert r.status_code == 201, r.text

    def map_parts(bin_id: str) -> None:
        r = client.put(
            "/api/v1/sparkplug/mappings",
            json={
                "group_id": GROUP,
                "edge_node": NODE,
                "device": DEVICE,
                "metric": "Parts",
                "bin_id": bin_id,
                "unit": "count",
            },
        )
        assert r.status_code in (200, 201), r.text

    for bin_id, parts in (("B2", 7), ("B3", 9)):  # a new metric, then to another bin
        before = gw.rebirths()
        map_parts(bin_id)
        wait_until(
            lambda n=before: gw.rebirths() > n,  # type: ignore[misc]
            what=f"a rebirth request after mapping Parts to {bin_id}",
        )
        gw.nbirth(bd_seq=1, tank=0)
        gw.dbirth(gross_g=TARE_G + 5 * UNIT_G, parts=parts)
        wait_until(
            lambda b=bin_id, p=parts: on_hand(client, b) == p,  # type: ignore[misc]
            what=f"{bin_id} at the Parts value of the new BIRTH",
        )
    assert on_hand(client, "B1") == 5


def test_a_birth_value_is_current_however_long_ago_its_tag_changed(
    quiet_plant: tuple[httpx.Client, Gateway],
) -> None:
    """Found by an outside try: a gateway's BIRTH carries each tag's last-change time
    (Ignition does). A bin untouched for 40 days had its BIRTH value refused as
    bad_timestamp (over 30 days old), so after a rebirth its level did not catch up
    as docs/sparkplug.md promises. A BIRTH value is now dated at the BIRTH."""
    client, gw = quiet_plant

    wait_followed(client, gw)
    gw.nbirth(bd_seq=1, tank=0)
    forty_days_ago = now_ms() - 40 * 86_400_000
    metrics = (
        m("Gross Weight", D.DOUBLE, TARE_G + 6 * UNIT_G, alias=1, ts=forty_days_ago),
    )
    gw.send("DBIRTH", spb.DBirth(now_ms(), seq=gw.next_seq(), metrics=metrics), DEVICE)
    wait_until(lambda: on_hand(client, "B1") == 6, what="the 40-day-old value applied")
    assert counter(client, "items", "bad_timestamp") == 0.0
    level = client.get("/api/v1/levels/B1").json()
    assert level["last_seen_ms"] > forty_days_ago + 39 * 86_400_000, level

    # DATA keeps its metrics' own times: a value 40 days old is still refused
    gw.ddata(
        m("Gross Weight", D.DOUBLE, TARE_G + 2 * UNIT_G, alias=1, ts=forty_days_ago)
    )
    expect(client, "items", "bad_timestamp")
    assert on_hand(client, "B1") == 6


def test_data_after_a_lost_message_is_not_said_to_come_before_the_birth(
    quiet_plant: tuple[httpx.Client, Gateway], caplog: pytest.LogCaptureFixture
) -> None:
    """Found by an outside try: after a seq gap, the node's next data was logged as
    "NDATA from edge node Plant1/Line1 before its BIRTH" although its BIRTH had been
    applied seconds before; the reader looked for a gateway that never sent one."""
    client, gw = quiet_plant
    caplog.set_level(logging.WARNING, logger="jitstock.server.sparkplug")

    wait_followed(client, gw)
    gw.nbirth(bd_seq=1, tank=0)
    gw.dbirth(gross_g=TARE_G + 5 * UNIT_G, parts=0)
    wait_until(lambda: on_hand(client, "B1") == 5, what="the BIRTH applied")
    no_birth = counter(client, "batches", "sparkplug_no_birth")
    gw.seq = (gw.seq + 3) % 256  # three messages lost
    gw.ddata(m("Gross Weight", D.DOUBLE, TARE_G + 4 * UNIT_G, alias=1))
    expect(client, "batches", "sparkplug_seq_gap")
    gw.ndata(m("Tank Level", D.UINT16, 3, alias=7))  # the node's own topic: its own log
    expect(client, "batches", "sparkplug_no_birth", no_birth + 1)
    lines = [
        r.getMessage()
        for r in caplog.records
        if "NDATA from edge node" in r.getMessage()
    ]
    assert lines, [r.getMessage() for r in caplog.records]
    assert "out of step" in lines[-1], lines
    assert "before its BIRTH" not in lines[-1], lines
    assert on_hand(client, "B1") == 5  # nothing applied while out of step


def test_data_by_an_alias_the_birth_gave_twice_feeds_no_bin(
    quiet_plant: tuple[httpx.Client, Gateway],
) -> None:
    """Found by an outside try: a BIRTH that gave alias 1 to two metrics (a gateway
    misconfiguration Sparkplug forbids) had DATA by that alias applied to whichever
    metric the BIRTH listed last: a value meant for an unmapped tag moved bin B1."""
    client, gw = quiet_plant

    wait_followed(client, gw)
    gw.nbirth(bd_seq=1, tank=0)
    metrics = (
        m("Temperature", D.DOUBLE, 21.0, alias=1),
        m("Gross Weight", D.DOUBLE, TARE_G + 5 * UNIT_G, alias=1),
    )
    gw.send("DBIRTH", spb.DBirth(now_ms(), seq=gw.next_seq(), metrics=metrics), DEVICE)
    wait_until(lambda: on_hand(client, "B1") == 5, what="the BIRTH applied by name")

    # 300 = a temperature; read as grams it would be B1 at 20 parts
    gw.ddata(m(None, D.DOUBLE, TARE_G + 20 * UNIT_G, alias=1))
    expect(client, "items", "sparkplug_duplicate_alias")
    assert on_hand(client, "B1") == 5  # without the check: 20
    # a metric sent by name is not ambiguous
    gw.ddata(m("Gross Weight", D.DOUBLE, TARE_G + 3 * UNIT_G))
    wait_until(lambda: on_hand(client, "B1") == 3, what="the named value applied")
    assert counter(client, "batches", "sparkplug_unknown_alias") == 0.0


def test_a_mapping_for_a_group_the_server_does_not_follow_is_refused(
    quiet_plant: tuple[httpx.Client, Gateway],
) -> None:
    """Found by an outside try: a mapping for group Plant9 (not in
    JITSTOCK_SPARKPLUG_GROUPS) answered 201 and then waited for data forever, its node
    'online: null' in the status. Refused now, naming the groups followed."""
    client, _ = quiet_plant
    before = client.get("/api/v1/sparkplug/mappings").json()
    for group in ("Plant9", GROUP.lower()):
        r = client.put(
            "/api/v1/sparkplug/mappings",
            json={
                "group_id": group,
                "edge_node": NODE,
                "device": DEVICE,
                "metric": "Parts",
                "bin_id": "B1",
                "unit": "count",
            },
        )
        assert r.status_code == 422, r.text
        assert "group_id" in r.text
        assert f"'{group}' is not followed" in r.text
        assert f"JITSTOCK_SPARKPLUG_GROUPS: {GROUP}" in r.text
    assert client.get("/api/v1/sparkplug/mappings").json() == before
