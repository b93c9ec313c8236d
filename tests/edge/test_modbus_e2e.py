"""Issue 17 acceptance (Modbus): simulated indicators drive bins end to end.

Two indicators share one simulated RS-485 bus (a pty, unit ids 1 and 2) and a third sits
behind a Modbus TCP address; a real `jitstock-edge` process polls them with pymodbus and
publishes through a real Mosquitto to a real server, whose API shows each bin's level
follow the picks. Timeouts, exception responses and bad CRCs mark the bin faulty in the
agent's status; it recovers when the indicator answers again.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from jitstock.firmware_sim.modbus import SimulatedModbusBus
from jitstock.server.seed import BinSeed
from tests.edge.edge_process import AGENT, SITE, start_edge, statuses, stop, toml_config
from tests.edge.mqtt_support import Collector
from tests.server.server_support import api_get, running_app, seed, wait_until

UNIT_G, TARE_G = 12.5, 500.0


def on_hand(base: str, bin_id: str) -> Any:
    return (api_get(base, f"/api/v1/levels/{bin_id}") or {}).get("on_hand")


def sensor(sub: Collector, bin_id: str) -> tuple[bool, str | None] | None:
    """The bin's (ok, fault) in the newest status that lists it."""
    for status in reversed(statuses(sub)):
        for s in status.sensors:
            if s.bin == bin_id:
                return s.ok, s.fault
    return None


@pytest.fixture
def buses(tmp_path: Path) -> Iterator[tuple[SimulatedModbusBus, SimulatedModbusBus]]:
    rtu = SimulatedModbusBus("rtu", workdir=tmp_path, name="ttyUSB-rs485")
    tcp = SimulatedModbusBus("tcp", word_order="little")
    kw = {"unit_weight_g": UNIT_G, "tare_g": TARE_G, "settle_s": 0.3}
    rtu.add_unit(1, "B1", count=100, seed=1, **kw)
    rtu.add_unit(2, "B2", count=60, seed=2, **kw)
    tcp.add_unit(7, "B3", count=80, seed=3, **kw)
    rtu.start()
    tcp.start()
    yield rtu, tcp
    rtu.stop()
    tcp.stop()


def test_modbus_indicators_drive_bins_and_faults_recover(
    tmp_path: Path, mosquitto: Any, buses: tuple[SimulatedModbusBus, SimulatedModbusBus]
) -> None:
    rtu, tcp = buses
    db_url = f"sqlite:///{tmp_path / 'state.db'}"
    seed(
        db_url,
        [
            BinSeed(b, AGENT, f"SKU-{b}", UNIT_G, TARE_G, 5, 40, 200, None)
            for b in ("B1", "B2", "B3")
        ],
        [],
        site=SITE,
    )
    common = {"protocol": "modbus", "poll_interval_s": 0.1, "timeout_s": 0.3}
    config = toml_config(
        tmp_path,
        mosquitto.url,
        scales=[
            # int32 in 0.1 g with the stable bit of the status word
            {
                **common,
                "port": rtu.port,
                "bin": "B1",
                "unit_id": 1,
                "weight_register": 0,
                "data_type": "int32",
                "factor": 0.1,
                "status_register": 4,
                "stable_bit": 0,
            },
            # float32 grams on the same bus, another unit id
            {
                **common,
                "port": rtu.port,
                "bin": "B2",
                "unit_id": 2,
                "weight_register": 2,
                "data_type": "float32",
            },
            # Modbus TCP, little-endian word order, input registers
            {
                **common,
                "port": tcp.url,
                "bin": "B3",
                "unit_id": 7,
                "weight_register": 0,
                "register_type": "input",
                "data_type": "int32",
                "word_order": "little",
                "factor": 0.1,
            },
        ],
        signal={"stability_window_s": 0.4, "step_g": 2.0},
    )
    sub = Collector(mosquitto.port, [f"jit/v1/{SITE}/{AGENT}/status"])
    edge = start_edge(config, tmp_path / "edge.log")
    b1, b2, b3 = rtu.units[1], rtu.units[2], tcp.units[7]
    try:
        with running_app(data_dir=tmp_path, db_url=db_url, mqtt_url=mosquitto.url) as (
            _app,
            base,
        ):
            for bin_id, count in (("B1", 100), ("B2", 60), ("B3", 80)):
                wait_until(
                    partial(lambda b, c: on_hand(base, b) == c, bin_id, count),
                    what=f"{bin_id} first level",
                )
            b1.pick(7)
            b2.refill(5)
            b3.pick(30)
            wait_until(lambda: on_hand(base, "B1") == 93, what="B1 after the pick")
            wait_until(lambda: on_hand(base, "B2") == 65, what="B2 after the refill")
            wait_until(lambda: on_hand(base, "B3") == 50, what="B3 after the pick")

            # a silent indicator (timeouts): faulty, the other unit on the bus keeps weighing
            b1.timeouts(25)
            wait_until(
                lambda: sensor(sub, "B1") == (False, "timeout"), what="B1 timeout fault"
            )
            b2.pick(4)
            wait_until(
                lambda: on_hand(base, "B2") == 61,
                what="B2 weighed during B1's timeouts",
            )
            wait_until(lambda: sensor(sub, "B1") == (True, None), what="B1 recovered")

            # exception responses (device busy), on RTU and TCP
            b2.exception_responses(30)
            b3.exception_responses(30)
            wait_until(
                lambda: sensor(sub, "B2") == (False, "modbus_exception"),
                what="B2 exception fault",
            )
            wait_until(
                lambda: sensor(sub, "B3") == (False, "modbus_exception"),
                what="B3 exception fault",
            )
            wait_until(lambda: sensor(sub, "B2") == (True, None), what="B2 recovered")
            wait_until(lambda: sensor(sub, "B3") == (True, None), what="B3 recovered")

            # answers with a wrong CRC are no answers
            b1.bad_crc(25)
            wait_until(
                lambda: sensor(sub, "B1") == (False, "timeout"), what="B1 bad CRC fault"
            )
            wait_until(
                lambda: sensor(sub, "B1") == (True, None),
                what="B1 recovered from bad CRCs",
            )
            b1.pick(3)
            wait_until(lambda: on_hand(base, "B1") == 90, what="B1 weighs again")
    finally:
        stop(edge)
        sub.close()
