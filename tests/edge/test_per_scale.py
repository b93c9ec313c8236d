"""Per-scale settings: thresholds and division per [[scales]] entry, net frames handled
explicitly (refused with a fault label, or net + a configured tare)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jitstock.edge.frames import Frame, parse_stream_line
from jitstock.edge.scale import ScalePortConfig, ScaleReader
from jitstock.edge.settings import ConfigError, load_settings
from jitstock.edge.stability import SignalPath, SignalSettings
from jitstock.firmware_sim.scale import SimulatedScale
from tests.edge.conftest import ManualClock, RecordingSink

FAST = SignalSettings(stability_window_s=0.5, keepalive_s=60.0, no_data_timeout_s=1.0)
TARE_G = 500.0


def test_scale_keys_override_signal_defaults(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(
        'site = "p"\nagent = "a"\n[signal]\nstep_g = 3.0\nstability_spread_g = 2.5\n'
        '[[scales]]\nport = "/dev/x"\nbin = "A"\n'
        '[[scales]]\nport = "/dev/y"\nbin = "B"\nprotocol = "sics"\n'
        "step_g = 25.0\ndivision_g = 20.0\nstability_window_s = 1.5\n"
    )
    s = load_settings(path)
    a, b = (s.scale_signal(x) for x in s.scales)
    assert (a.step_g, a.stability_spread_g, a.division_g) == (3.0, 2.5, 0.0)
    assert (b.step_g, b.stability_spread_g, b.stability_window_s) == (25.0, 2.5, 1.5)
    assert (b.step_limit_g, b.spread_limit_g) == (25.0, 20.0)
    # net frames: refused on stream scales, net + tare_g on MT-SICS (always net) by default
    assert s.scales[0].port_config().net_policy == "reject"
    assert s.scales[1].port_config().net_policy == "add_tare"


def test_bad_scale_threshold_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(
        'site = "p"\nagent = "a"\n[[scales]]\nport = "/x"\nbin = "A"\nstep_g = -1\n'
    )
    with pytest.raises(ConfigError, match=r"scales\[0\]\.step_g"):
        load_settings(path)


def run_flicker(settings: SignalSettings, clock: ManualClock) -> list[float]:
    """A 20 g-division scale at a division boundary for 15 s: 1000 / 1020, 2.5 s each."""
    path = SignalPath(settings, clock)
    out = []
    for i in range(150):
        o = path.feed(Frame(1000.0 if (i // 25) % 2 else 1020.0, True))
        if o is not None and not o.keepalive:
            out.append(o.grams)
        clock.advance(0.1)
    return out


def test_one_division_flicker_is_one_reading_not_a_stream_of_changes(
    manual_clock: ManualClock,
) -> None:
    noisy = run_flicker(SignalSettings(), ManualClock())
    assert len(noisy) > 1, "without division_g the flicker publishes changes"
    quiet = run_flicker(SignalSettings(division_g=20.0), manual_clock)
    assert len(quiet) == 1


def test_nt_frame_is_marked_net() -> None:
    assert parse_stream_line(b"ST,NT,+0000012.0 g").net
    assert not parse_stream_line(b"ST,GS,+0000012.0 g").net


@pytest.mark.parametrize("policy", ["reject", "add_tare"])
def test_net_frames_are_refused_or_converted_with_the_configured_tare(
    tmp_path: Path, sink: RecordingSink, policy: str
) -> None:
    with SimulatedScale(
        "N1", "stream", stream_format="nt", tare_g=TARE_G, count=40, workdir=tmp_path
    ) as sim:
        reader = ScaleReader(
            ScalePortConfig(sim.port, "N1", net_weight=policy, tare_g=TARE_G),  # type: ignore[arg-type]
            FAST,
            sink,
        )
        reader.start()
        try:
            if policy == "reject":
                sink.wait_for(lambda: (False, "net_weight") in sink.health_of("N1"))
                assert sink.readings_of("N1") == []
            else:
                sink.wait_for(lambda: sink.readings_of("N1"))
                assert sink.readings_of("N1")[0].grams == pytest.approx(
                    sim.gross_g, abs=2.0
                )
                assert (False, "net_weight") not in sink.health_of("N1")
        finally:
            reader.stop()
