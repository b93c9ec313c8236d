"""USB HID scanners: key events to codes (us/de layouts) and the reader on a FIFO input path."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from jitstock.edge.hid import HidScannerReader, KeyDecoder
from jitstock.edge.keymap import Keymap
from jitstock.protocol import MAX_CODE_LEN
from tests.edge.conftest import RecordingSink
from tests.edge.hid_support import (
    EV_KEY,
    KEY_TAB,
    FakeInputDevice,
    record,
    tap,
    typed,
)

# US positions: K=37 B=48 '-'=12 '1'=2 '/'=53 z=44 y=21 a=30
US_CODE = [(37, True), (48, True), (12, False), (2, False), (53, False), (44, False)]
# The same keys on a German scanner: '-' is key 53, '/' is Shift+7 (key 8), Y and Z swapped
DE_KEYS = [
    (37, True),
    (48, True),
    (53, False),
    (8, False),
    (8, True),
    (21, True),
    (44, False),
]


def decode(
    layout: str, keys: list[tuple[int, bool]], suffix: int = 28
) -> list[str | None]:
    """Run key events through a decoder; the codes (or None for garbage) it ends."""
    dec = KeyDecoder(layout)  # type: ignore[arg-type]
    out: list[str | None] = []
    for code, shift in [*keys, (suffix, False)]:
        events = [(42, 1)] if shift else []
        events += [(code, 1), (code, 0)]
        events += [(42, 0)] if shift else []
        for c, v in events:
            text, bad = dec.key(c, v, 0.0)
            if text is not None or bad is not None:
                out.append(text)
    return out


def test_us_and_de_layouts_with_shift() -> None:
    assert decode("us", US_CODE) == ["KB-1/z"]
    assert decode("de", DE_KEYS) == ["KB-7/Zy"]
    # shifted digits differ: Shift+2 is '@' (us) and '"' (de); ß and the umlauts exist on de only
    assert decode("us", [(3, True)]) == ["@"]
    assert decode("de", [(3, True), (12, False), (39, True), (26, False)]) == ['"ßÖü']
    assert decode("us", [(12, False)], suffix=KEY_TAB) == ["-"]


def test_altgr_caps_lock_and_keypad() -> None:
    km = Keymap("de")
    assert km.char(16, shift=False, altgr=True) == "@"  # AltGr+Q
    assert km.char(30, shift=False, caps=True) == "A"
    assert km.char(12, shift=False, caps=True) == "ß"  # Caps Lock shifts letters only
    assert Keymap("us").char(79, shift=True) == "1"  # keypad 1, whatever the shift
    with pytest.raises(ValueError, match="layout"):
        Keymap("fr")  # type: ignore[arg-type]


def test_garbage_codes_are_dropped_and_the_next_code_reads() -> None:
    dec = KeyDecoder("us")
    # F1 (59) has no character: that code is garbage; the following one is fine
    results = []
    for code in (30, 59, 28, 31, 28):
        results.append(dec.key(code, 1, 0.0))
    assert results[2][0] is None
    assert "59" in str(results[2][1])
    assert results[4] == ("s", None)
    # a code longer than the wire contract allows
    for _ in range(MAX_CODE_LEN + 5):
        dec.key(30, 1, 0.0)
    text, bad = dec.key(28, 1, 0.0)
    assert text is None
    assert "longer" in str(bad)
    # a lone Enter is no scan and no garbage; auto-repeat and unknown values change nothing
    assert dec.key(28, 1, 0.0) == (None, None)
    for value in (2, -1, 2**31 - 1):
        assert dec.key(30, value, 0.0) == (None, None)
    assert dec.key(28, 1, 0.0) == (None, None)


def test_a_modifier_left_down_ends_with_the_code() -> None:
    """Noise that presses AltGr or Shift and never releases it garbles one code, not all."""
    dec = KeyDecoder("de")
    dec.key(100, 1, 0.0)  # AltGr (KEY_RIGHTALT) down, its release lost
    dec.key(42, 1, 0.0)  # Shift down, its release lost
    dec.key(2, 1, 0.0)
    dec.key(28, 1, 0.0)  # the noisy code ends (whatever it was)
    for code in (2, 3, 4):
        assert dec.key(code, 1, 0.0) == (None, None)
        assert dec.key(code, 0, 0.0) == (None, None)
    assert dec.key(28, 1, 0.0) == ("123", None)


@pytest.fixture
def device(tmp_path: Path) -> Iterator[FakeInputDevice]:
    dev = FakeInputDevice(tmp_path / "by-id" / "usb-Barcode_Scanner-event-kbd")
    dev.plug()
    yield dev
    dev.unplug()


@pytest.fixture
def reader(device: FakeInputDevice, sink: RecordingSink) -> Iterator[HidScannerReader]:
    r = HidScannerReader(
        str(device.path),
        "gun-1",
        sink,
        layout="us",
        backoff_initial_s=0.05,
        backoff_max_s=0.2,
    )
    r.start()
    yield r
    r.stop()


def test_reader_decodes_records_and_survives_hostile_bytes(
    device: FakeInputDevice, reader: HidScannerReader, sink: RecordingSink
) -> None:
    device.write(typed(US_CODE))
    sink.wait_for(lambda: [c for _, _, c in sink.scans] == ["KB-1/z"])
    assert sink.health_of("gun-1")[-1] == (True, None)
    # hostile records: huge codes, wrong types, extreme values; then a good scan still reads
    device.write(
        record(EV_KEY, 65535, 1) + record(0xFFFF, 30, 1) + record(EV_KEY, 30, -(2**31))
    )
    device.write(tap(28))  # ends the garbage code
    device.write(typed([(30, True), (31, False)]))
    sink.wait_for(lambda: [c for _, _, c in sink.scans][-1:] == ["As"])
    assert reader.stats["garbage"] >= 1
    assert reader.stats["not_grabbed"] >= 1  # a FIFO cannot be grabbed: tolerated


def test_unplug_marks_faulty_and_replug_reads_again(
    device: FakeInputDevice, reader: HidScannerReader, sink: RecordingSink
) -> None:
    device.write(typed(US_CODE))
    sink.wait_for(lambda: len(sink.scans) == 1)
    device.unplug()
    sink.wait_for(lambda: sink.health_of("gun-1")[-1] == (False, "port_error"))
    device.plug()
    sink.wait_for(lambda: sink.health_of("gun-1")[-1] == (True, None))
    device.write(typed([(31, True), (2, False)]))
    sink.wait_for(lambda: [c for _, _, c in sink.scans] == ["KB-1/z", "S1"])
    assert reader.stats["reopens"] >= 1


def test_missing_device_is_retried_not_fatal(
    tmp_path: Path, sink: RecordingSink
) -> None:
    path = tmp_path / "event-kbd"
    r = HidScannerReader(
        str(path), "gun-2", sink, backoff_initial_s=0.05, backoff_max_s=0.1
    )
    r.start()
    try:
        sink.wait_for(lambda: sink.health_of("gun-2") == [(False, "port_error")])
        sink.wait_for(lambda: r.stats["open_failures"] >= 3)
        dev = FakeInputDevice(path)
        dev.plug()
        dev.write(typed([(30, False)]))
        sink.wait_for(lambda: [c for _, _, c in sink.scans] == ["a"])
        dev.unplug()
    finally:
        r.stop()
    assert not os.path.exists(path)


KEY_LEFTCTRL, KEY_RIGHTBRACE = 29, 27


def us_keys(text: str) -> list[tuple[int, bool]]:
    """The (key code, shift) a US-layout scanner types ``text`` with."""
    km = Keymap("us")
    where = {
        km.char(code, shift=shift): (code, shift)
        for shift in (True, False)
        for code in range(1, 87)
        if km.char(code, shift=shift) is not None
    }
    return [where[c] for c in text]


def ctrl(code: int) -> bytes:
    """Ctrl + one key, as a keyboard-wedge scanner types a control character."""
    return record(EV_KEY, KEY_LEFTCTRL, 1) + tap(code) + record(EV_KEY, KEY_LEFTCTRL, 0)


def test_ctrl_rightbrace_is_gs_other_control_characters_are_garbage(
    device: FakeInputDevice, reader: HidScannerReader, sink: RecordingSink
) -> None:
    """A GS1-128 label typed by a keyboard wedge: FNC1 comes as Ctrl+] (GS)."""
    scan = (
        b"".join(tap(c, s) for c, s in us_keys("]C10104006381333931"))
        + ctrl(KEY_RIGHTBRACE)
        + b"".join(tap(c, s) for c, s in us_keys("10LOT42"))
        + ctrl(KEY_RIGHTBRACE)
        + typed(us_keys("3012"))
    )
    device.write(scan)
    sink.wait_for(lambda: len(sink.scans) == 1)
    assert sink.scans[0][2] == "]C10104006381333931\x1d10LOT42\x1d3012"
    # Ctrl+A (SOH), a lone Ctrl+] and Ctrl+] twice: garbage; the next code reads
    device.write(b"".join(tap(c, s) for c, s in us_keys("AB")) + ctrl(30) + tap(28))
    device.write(ctrl(KEY_RIGHTBRACE) + tap(28))
    device.write(ctrl(KEY_RIGHTBRACE) + ctrl(KEY_RIGHTBRACE) + tap(28))
    device.write(typed(us_keys("0104006381333931")))
    sink.wait_for(lambda: len(sink.scans) == 2)
    assert sink.scans[1][2] == "0104006381333931"
    assert reader.stats["garbage"] == 3


def test_ctrl_rightbrace_is_gs_on_a_german_layout_too() -> None:
    dec = KeyDecoder("de")
    for ctrl_key in (KEY_RIGHTBRACE, 10):  # the US ] key; AltGr+9, ] on de
        dec.key(2, 1, 0.0)
        dec.key(KEY_LEFTCTRL, 1, 0.0)
        if ctrl_key == 10:
            dec.key(100, 1, 0.0)
        dec.key(ctrl_key, 1, 0.0)
        dec.key(100, 0, 0.0)
        dec.key(KEY_LEFTCTRL, 0, 0.0)
        dec.key(3, 1, 0.0)
        assert dec.key(28, 1, 0.0) == ("1\x1d2", None)


def test_a_ctrl_left_down_ends_with_the_code() -> None:
    dec = KeyDecoder("us")
    dec.key(KEY_LEFTCTRL, 1, 0.0)  # its release lost
    dec.key(30, 1, 0.0)
    text, bad = dec.key(28, 1, 0.0)
    assert text is None
    assert "Ctrl+a" in str(bad)
    for code in (30, 31):
        dec.key(code, 1, 0.0)
    assert dec.key(28, 1, 0.0) == ("as", None)
