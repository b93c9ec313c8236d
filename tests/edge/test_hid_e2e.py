"""Issue 17 acceptance (HID): key events typed into a scanner's input device reach the server.

A real `jitstock-edge` process reads a FIFO standing in for
``/dev/input/by-id/…-event-kbd`` (real ``input_event`` records, German layout, Shift,
Enter suffix), publishes through a real Mosquitto; the server stores the scan in a real
InfluxDB. The scanner is unplugged (the path disappears), the agent's status shows it
faulty, it is plugged back on the same path and the next scan arrives too.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

from jitstock.server.seed import BinSeed
from tests.edge.edge_process import AGENT, SITE, start_edge, statuses, stop, toml_config
from tests.edge.hid_support import FakeInputDevice, typed
from tests.edge.mqtt_support import Collector
from tests.server.server_support import running_app, seed, wait_until

# German scanner: Shift+K Shift+B '-'(53) '7'(8) '/'(Shift+8) 'Z'(Shift+21) 'y'(44)
DE_KEYS = [
    (37, True),
    (48, True),
    (53, False),
    (8, False),
    (8, True),
    (21, True),
    (44, False),
]
# the second scan, after the replug: "Ä-2" (Shift+40, 53, 3)
DE_KEYS_2 = [(40, True), (53, False), (3, False)]


def scanner_ok(sub: Collector) -> bool | None:
    """gun-1's health in the newest status (None before the first status that lists it)."""
    for status in reversed(statuses(sub)):
        for s in status.sensors:
            if s.bin == "gun-1":
                return s.ok
    return None


def test_hid_scan_reaches_the_server_and_survives_unplug(
    tmp_path: Path, mosquitto: Any, influxdb: Any
) -> None:
    db_url = f"sqlite:///{tmp_path / 'state.db'}"
    seed(
        db_url,
        [BinSeed("B1", AGENT, "SKU-1", 10.0, 0.0, 5, 40, 200, None)],
        [],
        site=SITE,
    )
    device = FakeInputDevice(
        tmp_path / "dev-input-by-id" / "usb-Datalogic_Scanner-event-kbd"
    )
    device.plug()
    config = toml_config(
        tmp_path,
        mosquitto.url,
        scanners=[
            {"port": str(device.path), "id": "gun-1", "kind": "hid", "layout": "de"}
        ],
    )
    sub = Collector(mosquitto.port, [f"jit/v1/{SITE}/{AGENT}/status"])
    edge = start_edge(config, tmp_path / "edge.log")
    influx_db = f"jit_{secrets.token_hex(4)}"
    try:
        with running_app(
            data_dir=tmp_path,
            db_url=db_url,
            mqtt_url=mosquitto.url,
            influx_url=influxdb.url,
            influx_db=influx_db,
        ) as (app, _base):
            since = int(time.time() * 1000) - 60_000

            def codes() -> list[str]:
                rows = app.tsdb.query_raw(
                    "scan",
                    {"scanner": "gun-1"},
                    since,
                    int(time.time() * 1000) + 60_000,
                )
                return [r["code"] for r in rows]

            device.write(typed(DE_KEYS))
            wait_until(lambda: codes() == ["KB-7/Zy"], what="the scan in InfluxDB")
            wait_until(lambda: scanner_ok(sub) is True, what="gun-1 ok in the status")

            device.unplug()
            wait_until(
                lambda: scanner_ok(sub) is False, what="gun-1 faulty while unplugged"
            )
            fault = [s.fault for s in statuses(sub)[-1].sensors if s.bin == "gun-1"]
            assert fault == ["port_error"]

            device.plug()
            wait_until(
                lambda: scanner_ok(sub) is True, what="gun-1 ok after the replug"
            )
            device.write(typed(DE_KEYS_2))
            wait_until(
                lambda: codes() == ["KB-7/Zy", "Ä-2"], what="the scan after replug"
            )
    finally:
        stop(edge)
        sub.close()
        device.unplug()
    log = (tmp_path / "edge.log").read_text()
    assert log.count("gone: end of file") == 1, log  # logged once, not per retry
