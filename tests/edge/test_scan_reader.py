"""ScanReader's reopen loop (shared by the serial and the HID scanner readers), on a clock
the test owns: when it tries the device again after failures and after a loss."""

from __future__ import annotations

import logging

import pytest

from jitstock.edge.scan_reader import DeviceGone, ScanReader
from tests.edge.conftest import ManualClock, RecordingSink
from tests.waits import wait_until


class ScriptedDevice(ScanReader[str]):
    """A device that fails to open, opens, is lost, fails again, then stays: as scripted."""

    def __init__(
        self, script: list[str], clock: ManualClock, sink: RecordingSink
    ) -> None:
        super().__init__("/dev/scripted", "gun-9", sink, clock)
        self._script = script
        self._clock_ = clock
        self.tries: list[float] = []  # clock time of each open attempt

    def _open(self) -> str:
        self.tries.append(self._clock_.monotonic())
        step = self._script.pop(0) if self._script else "stay"
        if step == "fail":
            raise OSError(2, "No such file or directory")
        return step

    def _serve(self, handle: str) -> None:
        if handle == "lost":
            raise DeviceGone("end of file (device removed)")
        self._stop.wait()

    def _close(self, handle: str) -> None:
        pass


def test_backoff_doubles_while_missing_and_starts_over_after_the_device_opened(
    sink: RecordingSink,
) -> None:
    """A scanner unplugged for a while, back, then unplugged again is retried from 0.5 s,
    not 30 s apart because of the first outage."""
    clock = ManualClock()
    reader = ScriptedDevice(
        ["fail"] * 8 + ["lost"] + ["fail"] * 3 + ["stay"], clock, sink
    )
    reader.start()
    try:
        wait_until(lambda: len(reader.tries) == 13, what="13 open attempts")
    finally:
        reader.stop()
    gaps = [b - a for a, b in zip(reader.tries, reader.tries[1:], strict=False)]
    first_outage = [0.5, 1, 2, 4, 8, 16, 30, 30]  # capped at 30 s
    after_loss = [0.5, 0.5, 1, 2]  # the loss waits 0.5 s, then the backoff starts over
    assert gaps == pytest.approx(first_outage + after_loss)
    assert reader.stats["open_failures"] == 11
    assert reader.stats["reopens"] == 1


def test_a_device_lost_again_and_again_does_not_flood_the_log(
    sink: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    """A path that opens and fails at once (a regular file given as a HID device, a flaky
    cable) logged "is back" every 0.5 s; now once per 30 s like the loss itself."""
    caplog.set_level(logging.INFO, logger="jitstock.edge.scan_reader")
    reader = ScriptedDevice(["lost"] * 20 + ["stay"], ManualClock(), sink)
    reader.start()
    try:
        wait_until(lambda: reader.stats["reopens"] == 20, what="20 reopens")
    finally:
        reader.stop()
    assert sum("is back" in m for m in caplog.messages) == 1
    assert sum(" gone: " in m for m in caplog.messages) == 1
