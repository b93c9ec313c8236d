"""SignalPath: one reading per real change, nothing from unstable or noisy frames, keep-alives."""

from __future__ import annotations

from jitstock.edge.frames import Frame
from jitstock.edge.stability import Output, SignalPath, SignalSettings
from jitstock.firmware_sim.loadcell import LoadCell
from tests.edge.conftest import ManualClock

RATE_HZ = 10.0


def run(
    path: SignalPath,
    clock: ManualClock,
    seconds: float,
    frame_at: object,
) -> list[Output]:
    """Feed frames at RATE_HZ for `seconds`, ticking after each; return every output."""
    outs: list[Output] = []
    for _ in range(int(seconds * RATE_HZ)):
        clock.advance(1 / RATE_HZ)
        frame = frame_at(clock.t)  # type: ignore[operator]
        for out in (path.feed(frame), path.tick()):
            if out is not None:
                outs.append(out)
    return outs


def cell_frames(cell: LoadCell, force_stable: bool = False) -> object:
    def at(t: float) -> Frame:
        s = cell.sample(t)
        return Frame(round(s.grams, 1), True if force_stable else s.stable)

    return at


def test_first_stable_window_publishes_once_then_silence(
    manual_clock: ManualClock,
) -> None:
    path = SignalPath(SignalSettings(keepalive_s=60), manual_clock)
    cell = LoadCell(1750.0, seed=1, t0=manual_clock.t)
    outs = run(path, manual_clock, 30, cell_frames(cell))
    assert len(outs) == 1
    assert not outs[0].keepalive
    assert outs[0].stable
    assert abs(outs[0].grams - 1750.0) < 0.5


def test_pick_gives_one_reading_and_nothing_while_settling(
    manual_clock: ManualClock,
) -> None:
    path = SignalPath(SignalSettings(), manual_clock)
    cell = LoadCell(1750.0, seed=2, t0=manual_clock.t)
    run(path, manual_clock, 3, cell_frames(cell))
    cell.set_load(1750.0 - 37.5, manual_clock.t)
    outs = run(path, manual_clock, 10, cell_frames(cell))
    assert len(outs) == 1
    assert abs(outs[0].grams - 1712.5) < 0.5


def test_settling_without_scale_flag_does_not_flap(manual_clock: ManualClock) -> None:
    """A scale that claims stable while ringing: the window and hysteresis still give one value."""
    path = SignalPath(SignalSettings(), manual_clock)
    cell = LoadCell(1000.0, seed=3, settle_s=1.5, t0=manual_clock.t)
    run(path, manual_clock, 3, cell_frames(cell, force_stable=True))
    cell.set_load(1000.0 + 10 * 48.0, manual_clock.t)  # a refill of 10 heavy parts
    outs = run(path, manual_clock, 15, cell_frames(cell, force_stable=True))
    assert len(outs) == 1
    assert abs(outs[0].grams - 1480.0) < 1.0


def test_single_frame_spikes_are_filtered(manual_clock: ManualClock) -> None:
    path = SignalPath(SignalSettings(), manual_clock)
    cell = LoadCell(800.0, seed=4, t0=manual_clock.t)
    run(path, manual_clock, 3, cell_frames(cell))
    n = 0

    def spiky(t: float) -> Frame:
        nonlocal n
        n += 1
        s = cell.sample(t)
        return Frame(s.grams + (300.0 if n % 7 == 0 else 0.0), True)

    assert run(path, manual_clock, 20, spiky) == []


def test_noise_and_drift_over_an_hour_give_only_keepalives(
    manual_clock: ManualClock,
) -> None:
    path = SignalPath(SignalSettings(keepalive_s=60), manual_clock)
    # 20 counts rms noise and 30 g/h drift: far more drift than step_g over the hour
    cell = LoadCell(
        2000.0, noise_counts=20, drift_g_per_h=30.0, seed=5, t0=manual_clock.t
    )
    outs = run(path, manual_clock, 3600, cell_frames(cell))
    assert not outs[0].keepalive
    assert all(o.keepalive for o in outs[1:])
    assert 58 <= len(outs) <= 61
    gaps = [b.ts_ms - a.ts_ms for a, b in zip(outs, outs[1:], strict=False)]
    assert min(gaps) >= 60_000
    assert (
        outs[-1].grams - outs[0].grams > 25
    )  # the drift travelled with the keep-alives


def test_no_keepalive_before_a_stable_weight(manual_clock: ManualClock) -> None:
    path = SignalPath(SignalSettings(keepalive_s=1), manual_clock)
    outs = run(path, manual_clock, 10, lambda t: Frame(500.0, False))
    assert outs == []


def test_keepalive_reports_unstable_state_with_last_stable_weight(
    manual_clock: ManualClock,
) -> None:
    path = SignalPath(SignalSettings(keepalive_s=5), manual_clock)
    run(path, manual_clock, 3, lambda t: Frame(500.0, True))
    outs = run(path, manual_clock, 6, lambda t: Frame(700.0 + (t * 37) % 50, False))
    assert [(o.grams, o.stable, o.keepalive) for o in outs] == [(500.0, False, True)]


def test_reconfigure_applies_new_step(manual_clock: ManualClock) -> None:
    path = SignalPath(SignalSettings(step_g=2.0), manual_clock)
    run(path, manual_clock, 3, lambda t: Frame(500.0, True))
    path.reconfigure(SignalSettings(step_g=10.0))
    assert run(path, manual_clock, 3, lambda t: Frame(505.0, True)) == []
    assert len(run(path, manual_clock, 3, lambda t: Frame(520.0, True))) == 1
