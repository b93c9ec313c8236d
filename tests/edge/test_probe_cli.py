"""`jitstock-edge check-port <pty>` as a child process against simulated scale heads.

Exit codes: 0 identified (a format the agent reads), 1 nothing usable, 2 cannot open
or in use. A port another process holds exclusively is refused and never read.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import serial

from jitstock import protocol as p
from jitstock.edge.frames import FrameError, parse_stream_line
from jitstock.edge.scanner import split_lines
from jitstock.firmware_sim.scale import SimulatedScale
from tests.edge.mqtt_support import Collector
from tests.edge.pty_support import talking_port
from tests.services import Mosquitto
from tests.waits import WAIT_S, wait_until


def check_port(port: str, timeout_s: float = 3.0) -> subprocess.CompletedProcess[str]:
    """Run the real command line, as an installer would."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "jitstock.edge.cli",
            "check-port",
            port,
            "--timeout",
            str(timeout_s),
        ],
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@pytest.mark.parametrize(
    ("stream_format", "unit", "expect"),
    [
        ("gs", "g", "continuous output, gross"),
        ("gs", "kg", "continuous output, gross"),
        ("gs", "lb", "continuous output, gross"),
        ("nt", "g", "net weight"),
        ("ad", "g", "A&D standard format"),
        ("ad", "kg", "A&D standard format"),
    ],
)
def test_continuous_variants_are_identified(
    tmp_path: Path, stream_format: str, unit: str, expect: str
) -> None:
    with SimulatedScale(
        "B1", "stream", stream_format=stream_format, unit=unit, workdir=tmp_path
    ) as scale:
        proc = check_port(scale.port)
        truth = scale.gross_g - (scale.tare_g if stream_format == "nt" else 0.0)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert expect in out
    assert "protocol=stream" in out
    assert f"unit {unit}" in out
    last = float(out.split("last ")[1].split(" g")[0])
    assert abs(last - truth) < 2.0  # noise of the load cell model, converted to grams


def test_toledo_continuous_is_named_but_refused(tmp_path: Path) -> None:
    with SimulatedScale("B1", "stream", stream_format="toledo", workdir=tmp_path) as s:
        proc = check_port(s.port)
    assert proc.returncode == 1
    assert "Mettler Toledo continuous output" in proc.stdout
    assert "does not read it" in proc.stdout


def test_sics_scale_with_a_moving_load_answers_si(tmp_path: Path) -> None:
    # a strict MT-SICS scale holds `S` until the load settles, which never happens here
    with SimulatedScale(
        "B1", "sics", sics_stable_timeout_s=30.0, workdir=tmp_path
    ) as scale:
        scale.sway(True)
        proc = check_port(scale.port)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "MT-SICS scale (protocol=sics), answered SI" in proc.stdout
    assert "moving" in proc.stdout


def test_sics_scale_in_kg(tmp_path: Path) -> None:
    with SimulatedScale("B1", "sics", unit="kg", workdir=tmp_path) as scale:
        proc = check_port(scale.port)
    assert proc.returncode == 0
    assert "stable (sent in kg, x1000)" in proc.stdout


def test_silent_port_exits_1(tmp_path: Path) -> None:
    with talking_port(tmp_path) as port:
        proc = check_port(port, timeout_s=1.0)
    assert proc.returncode == 1
    assert "silent" in proc.stdout
    assert "SI or S" in proc.stdout


def test_unknown_weight_format_exits_1(tmp_path: Path) -> None:
    with talking_port(tmp_path, b"NET   1234.5 g\r\n") as port:
        proc = check_port(port, timeout_s=2.0)
    assert proc.returncode == 1
    assert "format jitstock-edge does not know" in proc.stdout


def test_missing_port_exits_2(tmp_path: Path) -> None:
    proc = check_port(str(tmp_path / "nope"), timeout_s=0.5)
    assert proc.returncode == 2
    assert "cannot open" in proc.stdout


def test_port_held_exclusively_is_refused_and_not_read(tmp_path: Path) -> None:
    """The holder (here this test, as the agent would) keeps every byte and every frame whole."""
    with SimulatedScale("B1", "stream", workdir=tmp_path) as scale:
        held = serial.serial_for_url(
            scale.port, baudrate=9600, timeout=0.05, exclusive=True
        )
        lines: list[bytes] = []
        stop = threading.Event()

        def read() -> None:
            buf = bytearray()
            while not stop.is_set():
                buf += held.read(held.in_waiting or 1)
                lines.extend(split_lines(buf))

        t = threading.Thread(target=read)
        t.start()
        try:
            wait_until(lambda: len(lines) >= 5, what="frames to the holder")
            proc = check_port(scale.port)
            seen = len(lines)
            wait_until(lambda: len(lines) >= seen + 5, what="frames after the probe")
        finally:
            stop.set()
            t.join()
            held.close()
    assert proc.returncode == 2
    assert "in use by another process" in proc.stdout
    assert "is jitstock-edge running?" in proc.stdout
    assert f"pid {os.getpid()}" in proc.stdout
    bad = []
    for line in lines[1:]:  # the first may be cut by the moment the holder opened
        try:
            parse_stream_line(line)
        except FrameError:
            bad.append(line)
    assert bad == []


def test_check_port_on_the_running_agents_port_does_not_disturb_it(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """Issue 11 item 5: refused with a clear message; the agent's status stays ok throughout."""
    site, agent = "plant1", "probe-pi"
    with (
        SimulatedScale("B1", "stream", workdir=tmp_path) as stream,
        SimulatedScale("B2", "sics", workdir=tmp_path) as sics,
    ):
        config = tmp_path / "edge.toml"
        config.write_text(
            f'site = "{site}"\nagent = "{agent}"\nmqtt_url = "{mosquitto.url}"\n'
            f'outbox_path = "{tmp_path / "outbox.db"}"\ntick_s = 0.2\n\n'
            f'[[scales]]\nport = "{stream.port}"\nbin = "B1"\nprotocol = "stream"\n\n'
            f'[[scales]]\nport = "{sics.port}"\nbin = "B2"\nprotocol = "sics"\n'
        )
        sub = Collector(mosquitto.port, [f"jit/v1/{site}/{agent}/+"])
        log = tmp_path / "edge.log"
        with open(log, "ab") as out:
            edge = subprocess.Popen(
                [sys.executable, "-m", "jitstock.edge.cli", "--config", str(config)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

        def statuses() -> list[p.Status]:
            return [p.decode_status(m.payload) for m in sub.snapshot("/status")]

        def grams(bin_: str) -> list[float]:
            return [
                r["grams"]
                for m in sub.snapshot("/readings")
                for r in m.doc["readings"]
                if r["bin"] == bin_
            ]

        def all_ok() -> bool:
            s = statuses()
            return (
                bool(s)
                and len(s[-1].sensors) == 2
                and all(x.ok for x in s[-1].sensors)
                and all(grams(b) for b in ("B1", "B2"))
            )

        try:
            wait_until(all_ok, what=f"both bins ok and reading; log {log}")
            before = len(statuses())
            results = [check_port(stream.port), check_port(sics.port)]
            # the agent still reads both ports: a pick after the probes is published
            stream.pick(4)
            sics.pick(4)
            for bin_, scale in (("B1", stream), ("B2", sics)):
                wait_until(
                    lambda b=bin_, s=scale: abs(grams(b)[-1] - s.gross_g) < 2.0,
                    what=f"{bin_} reading after the probes; log {log}",
                )
        finally:
            edge.terminate()
            edge.wait(WAIT_S)
            sub.close()
    for proc in results:
        assert proc.returncode == 2, proc.stdout
        assert "in use by another process" in proc.stdout
        assert "is jitstock-edge running?" in proc.stdout
    faults = [
        (x.bin, x.fault) for st in statuses()[before:] for x in st.sensors if not x.ok
    ]
    assert faults == []
    assert "garbage" not in log.read_text()


def test_a_hid_scanners_input_device_is_named_not_opened() -> None:
    """An installer runs check-port on every device, the USB scanner too: it is told how
    that one is configured instead of pyserial's "Inappropriate ioctl for device"."""
    proc = check_port("/dev/input/by-id/usb-Datalogic_Gryphon_GD4500-event-kbd")
    assert proc.returncode == 1
    assert 'kind = "hid"' in proc.stdout
    assert "not a serial port" in proc.stdout
