"""ScannerReader against a SimulatedScanner on a real pty."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jitstock.edge.scanner import ScannerReader, decode_code, split_lines
from jitstock.firmware_sim.scanner import SimulatedScanner
from jitstock.protocol import MAX_CODE_LEN
from tests.edge.conftest import RecordingSink


@pytest.fixture
def scanner_and_reader(
    sink: RecordingSink,
) -> Iterator[tuple[SimulatedScanner, ScannerReader]]:
    scanner = SimulatedScanner()
    scanner.start()
    reader = ScannerReader(
        scanner.port, "S1", sink, backoff_initial_s=0.05, backoff_max_s=0.2
    )
    reader.start()
    yield scanner, reader
    reader.stop()
    scanner.stop()


def wait_until_reading(scanner: SimulatedScanner, sink: RecordingSink) -> None:
    """The reader may open the port a moment after start: scan a probe code until it shows."""
    for _ in range(100):
        scanner.scan("PROBE")
        try:
            sink.wait_for(lambda: bool(sink.scans), timeout=0.1)
            return
        except AssertionError:
            continue
    raise AssertionError("reader never saw the scanner")


def test_scanned_codes_arrive_in_order(
    scanner_and_reader: tuple[SimulatedScanner, ScannerReader], sink: RecordingSink
) -> None:
    scanner, reader = scanner_and_reader
    wait_until_reading(scanner, sink)
    codes = [f"KANBAN-07-{i:06d}" for i in range(20)]
    for code in codes:
        scanner.scan(code)
    sink.wait_for(lambda: len(sink.scans) >= 21)
    assert [c for _, _, c in sink.scans if c != "PROBE"] == codes
    assert {s for s, _, _ in sink.scans} == {"S1"}


def test_garbage_is_counted_and_dropped_odd_terminators_work(
    scanner_and_reader: tuple[SimulatedScanner, ScannerReader], sink: RecordingSink
) -> None:
    scanner, reader = scanner_and_reader
    wait_until_reading(scanner, sink)
    scanner.send_raw(b"\x01\x02\xff\xfe\r\n")  # line noise
    scanner.send_raw(b"CR-ONLY\r")
    scanner.send_raw(b"LF-ONLY\n")
    scanner.send_raw(
        b"X" * 400 + b"\r\n"
    )  # longer than any code the wire contract allows
    scanner.scan("AFTER")
    sink.wait_for(lambda: sink.scans[-1][2] == "AFTER")
    assert [c for _, _, c in sink.scans if c != "PROBE"] == [
        "CR-ONLY",
        "LF-ONLY",
        "AFTER",
    ]
    assert reader.stats["garbage"] >= 2


def test_split_and_decode() -> None:
    buf = bytearray(b"A1\r\nB2\n\rC3\rpartial")
    assert split_lines(buf) == [b"A1", b"B2", b"C3"]
    assert buf == b"partial"
    assert decode_code(b"  ABC-1 ") == "ABC-1"
    assert decode_code(b"AB\x07C") is None
    assert decode_code(b"\xc3\x28") is None


# GS1 carton labels as scanners send them: FNC1 as GS (\x1d), with or without an AIM
# symbology identifier, in the printed form, GS at an end, a lot of non-ASCII letters
GS1_CODES = [
    "]C10104006381333931\x1d10LOT42\x1d3012",
    "]d2010400638133393110LOT-ß\x1d3005",
    "\x1d0104006381333931\x1d",
    "(01)04006381333931(30)7",
    "]Q1JSORD:ord_7f3a",
]


def test_gs1_codes_keep_gs_and_identifier_and_the_limit_counts_characters(
    scanner_and_reader: tuple[SimulatedScanner, ScannerReader], sink: RecordingSink
) -> None:
    scanner, reader = scanner_and_reader
    wait_until_reading(scanner, sink)
    for code in GS1_CODES:
        assert scanner.scan(code)
    assert scanner.scan("ß" * MAX_CODE_LEN)  # 256 characters, 512 bytes: a code
    assert scanner.scan("ß" * (MAX_CODE_LEN + 1))  # 257 characters: garbage
    for raw in (
        b"\x1d\r\n",  # nothing but GS
        b" \x1d\x1d \r\n",
        b"AB\x00C\r\n",  # NUL
        b"AB\x1bC\r\n",  # ESC: a control character other than GS
        b"9" * 10_240 + b"\r\n",  # 10 KB
    ):
        assert scanner.send_raw(raw)
    assert scanner.scan("AFTER")
    sink.wait_for(lambda: sink.scans[-1][2] == "AFTER")
    assert [c for _, _, c in sink.scans if c != "PROBE"] == [
        *GS1_CODES,
        "ß" * MAX_CODE_LEN,
        "AFTER",
    ]
    assert reader.stats["garbage"] == 6


def test_decode_keeps_gs_inside_and_refuses_other_control_characters() -> None:
    assert decode_code(b" ]C10104006381333931\x1d3012\r") == (
        "]C10104006381333931\x1d3012"
    )
    assert decode_code(b"\x1d01\x1d") == "\x1d01\x1d"  # GS is no blank to trim
    for line in (b"\x1d", b" \x1d\x1d ", b"01\x1c02", b"\x7f", "\x85".encode()):
        assert decode_code(line) is None, line
    assert decode_code(("€" * MAX_CODE_LEN).encode()) == "€" * MAX_CODE_LEN
    assert decode_code(("€" * (MAX_CODE_LEN + 1)).encode()) is None
