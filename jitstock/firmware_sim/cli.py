"""`jitstock sim`: simulated scales and scanners on pseudo-terminals, for people and demos.

    jitstock sim scales --bins 12 --protocol stream|sics|mixed --speed 1 --seed 1
        [--stream-format gs|nt|ad|toledo]
    jitstock sim scanner [--every SECONDS]
    jitstock sim modbus --transport rtu|tcp --units 2 [--word-order big|little]
        [--pick-every SECONDS]

Both print the pty paths (stable symlinks) to point a real jitstock-edge at, then run
until Ctrl-C / SIGTERM and exit cleanly.
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from jitstock.clock import REAL_CLOCK, Clock, ScaledClock
from jitstock.firmware_sim.fleet import BinSpec, SimulatedFleet
from jitstock.firmware_sim.modbus import SimulatedModbusBus
from jitstock.firmware_sim.scale import STREAM_FORMATS, ScaleProtocol, StreamFormat
from jitstock.firmware_sim.scanner import SimulatedScanner

# Every Nth bin of a fleet is intermittent (used in bursts), like kitted parts beside runners.
INTERMITTENT_EVERY = 4
# Unit weights the demo bins pick from: screws to brackets.
UNIT_WEIGHTS_G = (2.5, 4.0, 12.5, 25.0, 48.0, 110.0)


def _number(
    low: float, high: float, what: str, *, above: bool = False
) -> Callable[[str], float]:
    """An argparse type: a finite number from ``low`` (excluded when ``above``) to ``high``.

    NaN, infinity, zero rates and negative periods crashed a simulator thread (a
    ZeroDivisionError, Event.wait's time_t overflow) or were silently "never".
    """

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}") from None
        if not ((low < value) if above else (low <= value)) or not value <= high:
            raise argparse.ArgumentTypeError(f"must be {what}")  # NaN lands here too
        return value

    return parse


def _bins(text: str) -> int:
    """Scales in a fleet: each is a pty and a thread, so a thousand at most."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a whole number") from None
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError("must be 1 to 1000")
    return value


# A period of a simulated scan or pick: a day at most (longer overflows Event.wait's time_t).
_every = _number(0, 86_400, "0 (never) to 86400 seconds")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="jitstock sim", description=__doc__.split("\n\n")[0]
    )
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser(
        "scales", help="a fleet of simulated scales driven by a demand model"
    )
    s.add_argument(
        "--bins", type=_bins, default=12, help="number of scales (1-1000, default 12)"
    )
    s.add_argument("--protocol", choices=("stream", "sics", "mixed"), default="stream")
    s.add_argument(
        "--speed",
        type=_number(0, 10_000, "above 0 and at most 10000", above=True),
        default=1.0,
        help="simulated time per real second",
    )
    s.add_argument("--seed", type=int, default=1)
    s.add_argument(
        "--rate-hz",
        type=_number(0, 1_000, "above 0 and at most 1000", above=True),
        default=10.0,
        help="stream frames per second",
    )
    s.add_argument(
        "--stream-format",
        choices=STREAM_FORMATS,
        default="gs",
        help="stream line layout: gs 'ST,GS,+0001234.5 g', nt (net), ad (A&D "
        "'ST,+001234.5  g'), toledo (Mettler Toledo continuous); see docs/scales.md",
    )
    s.add_argument(
        "--parts-per-hour",
        type=_number(0, 1_000_000, "0 to 1000000"),
        default=120.0,
        help="mean demand per bin",
    )
    s.add_argument("--no-refill", action="store_true", help="let bins run dry")
    s.add_argument(
        "--workdir", type=Path, default=None, help="where the port symlinks go"
    )
    c = sub.add_parser("scanner", help="a simulated barcode scanner")
    c.add_argument("--workdir", type=Path, default=None)
    c.add_argument(
        "--every", type=_every, default=0.0, help="scan a random code every N seconds"
    )
    c.add_argument("--seed", type=int, default=1)
    m = sub.add_parser(
        "modbus",
        help="Modbus weighing indicators (unit ids 1..N) on one RTU pty or a TCP port",
    )
    m.add_argument("--transport", choices=("rtu", "tcp"), default="rtu")
    m.add_argument("--units", type=int, default=2, help="indicators on the bus (1-247)")
    m.add_argument("--word-order", choices=("big", "little"), default="big")
    m.add_argument(
        "--pick-every", type=_every, default=0.0, help="take a part every N seconds"
    )
    m.add_argument("--seed", type=int, default=1)
    m.add_argument("--workdir", type=Path, default=None)
    return p


def fleet_specs(
    n: int,
    protocol: str,
    parts_per_hour: float,
    seed: int,
    stream_format: StreamFormat = "gs",
) -> list[BinSpec]:
    """The demo fleet: n bins named B01.., protocols per `protocol` (mixed alternates)."""
    rng = random.Random(seed)
    specs = []
    for i in range(n):
        proto: ScaleProtocol = (
            ("stream" if i % 2 == 0 else "sics") if protocol == "mixed" else protocol  # type: ignore[assignment]
        )
        unit_weight = rng.choice(UNIT_WEIGHTS_G)
        count = max(20, int(rng.uniform(1500, 4000) / unit_weight))
        specs.append(
            BinSpec(
                f"B{i + 1:02d}",
                proto,
                unit_weight_g=unit_weight,
                count=count,
                parts_per_hour=parts_per_hour * rng.uniform(0.3, 2.0),
                intermittent=(i % INTERMITTENT_EVERY == INTERMITTENT_EVERY - 1),
                stream_format=stream_format,
            )
        )
    return specs


def setup_header(stream_format: StreamFormat) -> str:
    """What the columns of ``setup_row`` are, and how a bin is set up from them."""
    lines = [
        "# bin, port, protocol, tare (empty bin on the scale: the bin's tare_g), unit "
        "weight (unit_weight_g), parts in the bin now, the scale's reading now",
        "# edge.toml: one [[scales]] per row (port, bin, protocol); server: a bin per "
        "row with tare_g and unit_weight_g (POST /api/v1/bins or the bins CSV import)",
    ]
    if stream_format == "nt":
        lines.append(
            '# --stream-format nt sends net weight: per stream scale set net_weight = "add_tare" '
            "and tare_g = the tare below in edge.toml (docs/scales.md, Net and gross)"
        )
    return "\n".join(lines)


def setup_row(spec: BinSpec, port: str, protocol: str) -> str:
    """One bin's set-up, tab-separated: bin, port, protocol, tare, unit weight, count, reading."""
    reading = spec.tare_g + spec.count * spec.unit_weight_g
    if protocol == "stream" and spec.stream_format == "nt":
        reading -= spec.tare_g
    return "\t".join(
        (
            spec.bin,
            port,
            protocol,
            f"tare {spec.tare_g:g} g",
            f"{spec.unit_weight_g:g} g/part",
            f"{spec.count} parts",
            f"reads {reading:g} g",
        )
    )


class _StopSignals:
    """SIGINT and SIGTERM set an event, from before a command prints its ports until it ends.

    Installed first: a caller that reads the port line and at once sends SIGINT must stop the
    sim, also when SIGINT arrives ignored (a service, a `&` job of a non-interactive shell, CI),
    where Python leaves it ignored and a later handler came too late — the sim ran on for ever.
    """

    def __init__(self) -> None:
        self.stopped = threading.Event()
        self._old: dict[int, object] = {}

    def __enter__(self) -> _StopSignals:
        def handler(signum: int, frame: FrameType | None) -> None:
            self.stopped.set()

        self._old = {
            s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)
        }
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, h in self._old.items():
            signal.signal(sig, h)  # type: ignore[arg-type]

    def wait(self) -> None:
        """Block until a stop signal (woken every 0.2 s so the handler runs promptly)."""
        while not self.stopped.wait(0.2):
            pass


def _scales(args: argparse.Namespace, stop: _StopSignals) -> int:
    clock: Clock = REAL_CLOCK if args.speed == 1 else ScaledClock(args.speed)
    specs = fleet_specs(
        args.bins, args.protocol, args.parts_per_hour, args.seed, args.stream_format
    )
    fleet = SimulatedFleet(specs, clock, args.seed, args.workdir, rate_hz=args.rate_hz)
    fleet.start()
    try:
        # the header first (stderr): the rows on stdout stay one tab-separated line per bin
        print(setup_header(args.stream_format), file=sys.stderr, flush=True)
        for bin_, port, proto in fleet.ports():
            print(setup_row(fleet.specs[bin_], port, proto))
        print(
            f"# {len(specs)} scales running at speed {args.speed}; Ctrl-C to stop",
            file=sys.stderr,
        )
        sys.stdout.flush()
        fleet.run_demand(auto_refill=not args.no_refill)
        stop.wait()
    finally:
        fleet.stop()
    return 0


def _scanner(args: argparse.Namespace, stop: _StopSignals) -> int:
    scanner = SimulatedScanner(args.workdir)
    scanner.start()
    rng = random.Random(args.seed)
    try:
        print(f"scanner\t{scanner.port}")
        print(
            "# type codes (one per line) to scan them; Ctrl-C to stop", file=sys.stderr
        )
        sys.stdout.flush()
        # stopped at Ctrl-C only: stdin at its end (a service, `&`, </dev/null) must not stop --every

        def feed_stdin() -> None:
            for line in sys.stdin:
                if line.strip():
                    scanner.scan(line.strip())

        def feed_random() -> None:
            while not stop.stopped.wait(args.every):
                scanner.scan(
                    f"KANBAN-{rng.randrange(1, 13):02d}-{rng.randrange(10**6):06d}"
                )

        threading.Thread(target=feed_stdin, daemon=True).start()
        if args.every > 0:
            threading.Thread(target=feed_random, daemon=True).start()
        stop.wait()
    finally:
        scanner.stop()
    return 0


def _modbus(args: argparse.Namespace, stop: _StopSignals) -> int:
    if not 1 <= args.units <= 247:
        print("jitstock sim modbus: --units must be 1..247", file=sys.stderr)
        return 2
    bus = SimulatedModbusBus(
        args.transport, word_order=args.word_order, workdir=args.workdir
    )
    rng = random.Random(args.seed)
    for unit_id in range(1, args.units + 1):
        unit_weight = rng.choice(UNIT_WEIGHTS_G)
        bus.add_unit(
            unit_id,
            f"M{unit_id:02d}",
            unit_weight_g=unit_weight,
            count=max(20, int(rng.uniform(1500, 4000) / unit_weight)),
            tare_g=500.0,
            seed=args.seed + unit_id,
        )
    bus.start()
    try:
        print(
            "# bin, port, unit_id, tare, unit weight, parts now; registers: 0-1 int32 "
            "0.1 g (factor = 0.1), 2-3 float32 g, 4 status (bit 0 stable), 5 int16 g; "
            f"word_order = {args.word_order!r} (docs/connect-devices.md)",
            file=sys.stderr,
        )
        for unit in bus.units.values():
            print(
                "\t".join(
                    (
                        unit.bin,
                        bus.address,
                        f"unit_id {unit.unit_id}",
                        f"tare {unit.tare_g:g} g",
                        f"{unit.unit_weight_g:g} g/part",
                        f"{unit.count} parts",
                    )
                )
            )
        print("# Ctrl-C to stop", file=sys.stderr)
        sys.stdout.flush()

        def picks() -> None:
            units = list(bus.units.values())
            while not stop.stopped.wait(args.pick_every):
                rng.choice(units).pick(1)

        if args.pick_every > 0:
            threading.Thread(target=picks, daemon=True).start()
        stop.wait()
    finally:
        bus.stop()
    return 0


def main(argv: list[str]) -> int:
    """Entry point of `jitstock sim`."""
    args = _parser().parse_args(argv)
    with _StopSignals() as stop:
        if args.what == "scales":
            return _scales(args, stop)
        if args.what == "modbus":
            return _modbus(args, stop)
        return _scanner(args, stop)
