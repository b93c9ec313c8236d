"""ScaleReader against SimulatedScales on real pseudo-terminals."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jitstock.clock import ScaledClock
from jitstock.edge.scale import ScalePortConfig, ScaleReader
from jitstock.edge.stability import SignalSettings
from jitstock.firmware_sim.pty_port import PtyPort
from jitstock.firmware_sim.scale import SimulatedScale
from tests.edge.conftest import RecordingSink

# Shorter windows than production so each scenario settles in about a second of real time.
FAST = SignalSettings(stability_window_s=0.5, keepalive_s=60.0, no_data_timeout_s=1.0)
READER_KW = {"recovery_s": 0.3, "backoff_initial_s": 0.05, "backoff_max_s": 0.2}


@pytest.fixture
def started() -> Iterator[list[object]]:
    """Collects sims/readers and stops them (readers first) whatever the test did."""
    things: list[object] = []
    yield things
    for t in things:
        if isinstance(t, ScaleReader):
            t.stop()
    for t in things:
        if not isinstance(t, ScaleReader):
            t.stop()  # type: ignore[attr-defined]


def sim_and_reader(
    started: list[object],
    sink: RecordingSink,
    bin: str,
    protocol: str = "stream",
    settings: SignalSettings = FAST,
    clock: object = None,
    workdir: Path | None = None,
    **sim_kw: object,
) -> tuple[SimulatedScale, ScaleReader]:
    kw = {"clock": clock} if clock is not None else {}
    sim = SimulatedScale(bin, protocol, workdir=workdir, rate_hz=20.0, **kw, **sim_kw)  # type: ignore[arg-type]
    sim.start()
    started.append(sim)
    reader = ScaleReader(
        ScalePortConfig(sim.port, bin, protocol, poll_interval_s=0.05),  # type: ignore[arg-type]
        settings,
        sink,
        **kw,  # type: ignore[arg-type]
        **READER_KW,  # type: ignore[arg-type]
    )
    reader.start()
    started.append(reader)
    return sim, reader


@pytest.mark.parametrize(
    ("protocol", "unit"),
    [("stream", "g"), ("sics", "g"), ("stream", "kg"), ("sics", "lb")],
)
def test_pick_of_three_gives_one_reading_37_5_g_lighter(
    started: list[object], sink: RecordingSink, protocol: str, unit: str
) -> None:
    sim, reader = sim_and_reader(started, sink, "A1", protocol, unit=unit)
    sink.wait_for(lambda: len(sink.readings) == 1)
    before = sink.readings[0].grams
    assert abs(before - sim.gross_g) < 1.0
    sim.pick(3)
    sink.wait_for(lambda: len(sink.readings) == 2)
    # a further settled second: the unstable frames in between never became a reading
    frames_then = reader.stats["frames_ok"]
    sink.wait_for(lambda: reader.stats["frames_ok"] > frames_then + 15)
    assert len(sink.readings) == 2
    after = sink.readings[1]
    assert after.stable
    assert abs((before - after.grams) - 37.5) < 1.0
    assert sink.health == [("A1", True, None)]


def test_noise_and_drift_for_a_simulated_hour_give_only_keepalives(
    started: list[object], sink: RecordingSink
) -> None:
    # 120x: a simulated hour in 30 s; a faster clock turns the scheduling delays of a busy
    # machine into simulated minutes between keep-alives
    clock = ScaledClock(120.0)
    settings = SignalSettings(
        stability_window_s=3.0, keepalive_s=60.0, no_data_timeout_s=600.0
    )
    sim = SimulatedScale("H1", drift_g_per_h=20.0, rate_hz=2.0, clock=clock, seed=7)
    sim.start()
    started.append(sim)
    reader = ScaleReader(ScalePortConfig(sim.port, "H1"), settings, sink, clock)
    reader.start()
    started.append(reader)
    sink.wait_for(lambda: clock.monotonic() > 3600.0, timeout=600)
    readings = sink.readings_of("H1")
    assert len(readings) <= 61  # one first reading, then at most a keep-alive a minute
    gaps = [b.ts_ms - a.ts_ms for a, b in zip(readings, readings[1:], strict=False)]
    assert min(gaps) >= 59_000  # nothing between keep-alives: no spurious change
    # a keep-alive every minute (a busy machine may delay one by a few simulated seconds)
    assert sorted(gaps)[len(gaps) // 2] <= 65_000, gaps
    assert all(abs(r.grams - readings[0].grams) < 25 for r in readings)
    assert sink.health == [("H1", True, None)]


@pytest.mark.parametrize("fault", ["garbage", "error_frames", "unplug"])
def test_fault_on_one_scale_marks_it_then_recovers_while_other_keeps_reporting(
    started: list[object], sink: RecordingSink, tmp_path: Path, fault: str
) -> None:
    settings = SignalSettings(
        stability_window_s=0.3, keepalive_s=0.2, no_data_timeout_s=2.0
    )
    bad, bad_reader = sim_and_reader(
        started, sink, "BAD", "sics", settings, workdir=tmp_path
    )
    good, _ = sim_and_reader(
        started, sink, "GOOD", "stream", settings, workdir=tmp_path
    )
    sink.wait_for(
        lambda: len(sink.readings_of("BAD")) >= 2 and len(sink.readings_of("GOOD")) >= 2
    )
    expected = {
        "garbage": "garbage",
        "error_frames": "scale_error",
        "unplug": "port_error",
    }[fault]
    if fault == "garbage":
        bad.inject_garbage(40)
    elif fault == "error_frames":
        bad.error_frames(3)
    else:
        bad.unplug()
    sink.wait_for(lambda: (False, expected) in sink.health_of("BAD"))
    good_before = len(sink.readings_of("GOOD"))
    sink.wait_for(lambda: len(sink.readings_of("GOOD")) >= good_before + 3)
    if fault == "unplug":
        bad.replug()
    sink.wait_for(lambda: sink.health_of("BAD")[-1] == (True, None))
    bad_now = len(sink.readings_of("BAD"))
    bad.pick(2)
    sink.wait_for(
        lambda: any(
            abs(r.grams - bad.gross_g) < 1.0 for r in sink.readings_of("BAD")[bad_now:]
        )
    )
    assert sink.health_of("GOOD") == [(True, None)]
    if fault == "unplug":
        assert bad_reader.stats["reopens"] >= 1
    else:
        assert bad_reader.stats[f"frames_bad_{expected}"] >= 1


def test_silent_port_is_no_data_and_recovers_when_frames_come(
    started: list[object], sink: RecordingSink, tmp_path: Path
) -> None:
    port = PtyPort(tmp_path / "silent.port")
    port.open()
    try:
        reader = ScaleReader(
            ScalePortConfig(str(port.link), "Q"), FAST, sink, **READER_KW
        )  # type: ignore[arg-type]
        reader.start()
        started.append(reader)
        sink.wait_for(lambda: sink.health_of("Q") == [(False, "no_data")])
        for _ in range(40):
            port.write(b"ST,GS,+0000640.0 g\r\n")
            time.sleep(0.025)  # a 40 Hz scale head
        sink.wait_for(lambda: sink.health_of("Q")[-1] == (True, None))
    finally:
        port.close()


def test_out_of_range_weight_is_a_fault(
    started: list[object], sink: RecordingSink
) -> None:
    settings = SignalSettings(stability_window_s=0.5, max_grams=1000.0)
    sim, reader = sim_and_reader(
        started, sink, "R", settings=settings, count=100
    )  # 1750 g
    sink.wait_for(lambda: sink.health_of("R") == [(False, "out_of_range")])
    assert sink.readings == []
    sim.set_count(20)  # 750 g
    sink.wait_for(lambda: sink.health_of("R")[-1] == (True, None))
    sink.wait_for(lambda: len(sink.readings) == 1)
    assert abs(sink.readings[0].grams - 750.0) < 1.0
    assert reader.stats["frames_bad_out_of_range"] > 0


def test_live_update_of_settings_and_port(
    started: list[object], sink: RecordingSink, tmp_path: Path
) -> None:
    sim, reader = sim_and_reader(started, sink, "U", workdir=tmp_path)
    sink.wait_for(lambda: len(sink.readings) == 1)
    reader.update(settings=SignalSettings(stability_window_s=0.5, keepalive_s=0.2))
    sink.wait_for(lambda: len(sink.readings) >= 4)  # keep-alives now flow
    other = SimulatedScale("U2", "sics", count=10, workdir=tmp_path)
    other.start()
    started.append(other)
    reader.update(config=ScalePortConfig(other.port, "U", "sics", poll_interval_s=0.05))
    sink.wait_for(lambda: abs(sink.readings[-1].grams - other.gross_g) < 1.0)
