"""`jitstock sim scales`: prints usable ports, keeps running, exits cleanly on Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import serial

from jitstock.edge.probe import probe_port
from tests.waits import WAIT_S, wait_until

# Room for a loaded machine: the SICS sim must answer within what is left after listening.
PROBE_S = 5.0


@contextmanager
def sim(*args: str, **popen: Any) -> Iterator[subprocess.Popen[str]]:
    """`jitstock sim ARGS` running, its output piped; killed if still alive at the end."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "jitstock.cli", "sim", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )
    try:
        assert proc.stdout is not None
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def stop(proc: subprocess.Popen[str]) -> str:
    """Ctrl-C the sim; it must exit cleanly within the wait. Returns its stderr."""
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 0, err
    return err


def test_sim_scales_prints_ports_that_speak_and_stops_on_sigint() -> None:
    scales = ("scales", "--bins", "3", "--protocol", "mixed", "--speed", "10")
    with sim(*scales, "--seed", "1") as proc:
        assert proc.stdout is not None
        rows = [proc.stdout.readline().split("\t") for _ in range(3)]
        assert [r[0] for r in rows] == ["B01", "B02", "B03"]
        assert [r[2] for r in rows] == ["stream", "sics", "stream"]
        # what setting up the bin needs: tare (empty bin), unit weight, count, reading
        tare, unit, count, reading = rows[0][3:7]
        assert tare.startswith("tare ")
        assert unit.endswith(" g/part")
        assert count.endswith(" parts")
        assert float(reading.split()[1]) == pytest.approx(
            float(tare.split()[1]) + float(unit.split()[0]) * int(count.split()[0])
        )
        assert "protocol=stream" in probe_port(rows[0][1], timeout_s=PROBE_S)
        assert "protocol=sics" in probe_port(rows[1][1], timeout_s=PROBE_S)
        assert "Traceback" not in stop(proc)


def test_sim_scales_speaks_the_chosen_stream_format() -> None:
    with sim("scales", "--bins", "1", "--stream-format", "ad") as proc:
        assert proc.stdout is not None
        port = proc.stdout.readline().split("\t")[1]
        assert "A&D standard format" in probe_port(port, timeout_s=PROBE_S)
        stop(proc)


@pytest.mark.parametrize("transport", ["rtu", "tcp"])
def test_sim_modbus_prints_units_that_check_port_recognises(transport: str) -> None:
    with sim("modbus", "--units", "3", "--transport", transport) as proc:
        assert proc.stdout is not None
        rows = [proc.stdout.readline().rstrip("\n").split("\t") for _ in range(3)]
        assert [r[0] for r in rows] == ["M01", "M02", "M03"]
        assert [r[2] for r in rows] == ["unit_id 1", "unit_id 2", "unit_id 3"]
        assert len({r[1] for r in rows}) == 1  # one bus
        found = subprocess.run(
            [sys.executable, "-m", "jitstock.edge.cli", "check-port", rows[0][1]]
            + ["--unit", "3"],
            capture_output=True,
            text=True,
            timeout=WAIT_S,
        )
        assert found.returncode == 0, found.stdout
        assert "unit 3" in found.stdout
        assert "Traceback" not in stop(proc)


def test_sim_scanner_scans_every_n_seconds_without_a_terminal() -> None:
    """`--every` keeps scanning when stdin is at its end (a service, `&`, `</dev/null`).

    Stdin's end used to stop the random scans too: in the background the sim never scanned.
    """
    with sim("scanner", "--every", "0.2", stdin=subprocess.DEVNULL) as proc:
        assert proc.stdout is not None
        port = proc.stdout.readline().rstrip("\n").split("\t")[1]
        codes: list[str] = []
        with serial.Serial(port, timeout=0.2) as ser:

            def read_codes() -> bool:
                codes.extend(
                    line.decode().strip() for line in ser.readlines() if line.strip()
                )
                return len(codes) >= 3

            wait_until(read_codes, what="three random scans")
        assert all(c.startswith("KANBAN-") for c in codes), codes
        stop(proc)


@pytest.mark.parametrize(
    "args",
    [
        [
            "scanner",
            "--every",
            "inf",
        ],  # was an OverflowError traceback in the scan thread
        ["scanner", "--every", "nan"],  # was silently never
        ["scanner", "--every", "-1"],
        ["modbus", "--pick-every", "inf"],
        ["modbus", "--pick-every", "1e400"],
        ["scales", "--speed", "nan"],  # these three were tracebacks in a sim thread
        ["scales", "--speed", "0"],
        ["scales", "--rate-hz", "0"],
        ["scales", "--parts-per-hour", "-5"],
        ["scales", "--bins", "0"],
        ["scales", "--bins", str(2**63)],
    ],
)
def test_sim_values_that_cannot_run_are_refused(args: list[str]) -> None:
    found = subprocess.run(
        [sys.executable, "-m", "jitstock.cli", "sim", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert found.returncode == 2, found.stderr
    assert "Traceback" not in found.stderr
    assert f"argument {args[1]}: must be " in found.stderr


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize(
    "args",
    [
        ["scanner", "--every", "0.2"],
        ["scales", "--bins", "1"],
        ["modbus", "--units", "1", "--pick-every", "0.2"],
    ],
)
def test_sim_stops_on_sigint_sent_as_soon_as_its_port_is_printed(
    args: list[str],
) -> None:
    """A caller may signal the moment it has the port, also where SIGINT starts ignored.

    A non-interactive shell's `&` job and CI runners start children with SIGINT ignored, and
    Python then leaves it ignored until a handler is set: the sims set theirs only after
    printing the ports, so a Ctrl-C sent at once was lost and the sim ran on for ever (CI saw
    `sim scanner --every 0.2` outlive a 60 s wait).
    """
    with sim(*args, stdin=subprocess.DEVNULL, preexec_fn=_ignore_sigint) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip(), "no port line"
        stop(proc)
