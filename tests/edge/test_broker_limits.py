"""No silent broker drops: batches are split to fit the broker's MQTT 5 Maximum Packet
Size (CONNACK) and, where the broker does not tell (message_size_limit: Mosquitto 2.0
answers with a PUBACK reason paho takes as malformed, and the connection drops), the
agent halves its limit and re-splits the batch instead of re-sending it forever."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from jitstock import protocol as p
from jitstock.firmware_sim.scanner import SimulatedScanner
from tests.edge.edge_process import AGENT, SITE, start_edge, stop, toml_config
from tests.edge.mqtt_support import Collector
from tests.services import Mosquitto

CODES = 40
CODE_LEN = 200


@pytest.fixture(params=["max_packet_size 4096", "message_size_limit 3000"])
def small_broker(request: pytest.FixtureRequest, tmp_path: Path):
    workdir = tmp_path / "broker"
    workdir.mkdir()
    broker = Mosquitto(workdir, extra_conf=request.param)
    broker.start()
    yield broker, request.param
    broker.stop()


def test_a_burst_larger_than_the_broker_takes_arrives_whole_in_several_batches(
    tmp_path: Path, small_broker: tuple[Mosquitto, str]
) -> None:
    broker, conf = small_broker
    limit = int(conf.split()[1])
    with SimulatedScanner(workdir=tmp_path) as scanner:
        config = toml_config(
            tmp_path,
            broker.url,
            scanners=[{"port": scanner.port, "id": "gun"}],
            extra={"tick_s": 3.0},  # the whole burst lands in one tick
        )
        sub = Collector(broker.port, [f"jit/v1/{SITE}/{AGENT}/+"])
        proc = start_edge(config, tmp_path / "edge.log")
        try:
            # the first status comes after the first tick: the scanner port is open by then
            sub.wait_for(lambda: sub.snapshot("/status"), what="agent up")
            codes = [f"{i:03d}" + "X" * (CODE_LEN - 3) for i in range(CODES)]
            for code in codes:
                assert scanner.scan(code)
                time.sleep(0.01)

            def got() -> list[str]:
                out: list[str] = []
                for m in sub.snapshot("/scans"):
                    out += [s.code for s in p.decode_scans(m.payload)[0].scans]
                return out

            sub.wait_for(lambda: sorted(set(got())) == codes, what="every scan")
            payloads = [m.payload for m in sub.snapshot("/scans")]
            assert len(payloads) >= 3, "the burst was split"
            assert all(len(x) <= limit for x in payloads)
            assert got() == codes  # in order, none twice
            seqs = sub.seqs()
            if "max_packet_size" in conf:
                # the limit was known before the first publish: no gap, no refusal
                assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
                assert "refused" not in (tmp_path / "edge.log").read_text()
            else:
                # refused once as too large, split and re-sent under new seqs
                assert (
                    "exceeds the broker's limit" in (tmp_path / "edge.log").read_text()
                )
        finally:
            stop(proc)
            sub.close()
