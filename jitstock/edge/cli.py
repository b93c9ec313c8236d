"""`jitstock-edge`: run the agent (`--config edge.toml`) or probe a port (`check-port /dev/ttyUSB0`)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable
from types import FrameType

from jitstock import __version__
from jitstock.edge.settings import MAX_BAUDRATE

log = logging.getLogger("jitstock.edge")

# What --help lists under the options: every device kind and its config (deploy/edge.example.toml).
DEVICE_KINDS = """device kinds (one [[scales]] or [[scanners]] table each; docs/connect-devices.md):
  serial scale, continuous output  [[scales]] port = "/dev/ttyUSB0", protocol = "stream"
  serial scale, MT-SICS            [[scales]] port = "/dev/ttyUSB1", protocol = "sics"
  Modbus RTU indicator (RS-485)    [[scales]] port = "/dev/ttyUSB2", protocol = "modbus",
                                   unit_id = 1, weight_register = 0 (several units per port)
  Modbus TCP indicator             [[scales]] port = "tcp://192.168.10.20:502",
                                   protocol = "modbus", unit_id = 1, weight_register = 0
  serial barcode scanner           [[scanners]] port = "/dev/ttyACM0", id = "gun-1"
  USB HID barcode scanner          [[scanners]] port = "/dev/input/by-id/usb-...-event-kbd",
                                   id = "gun-2", kind = "hid", layout = "us" or "de"
  Sparkplug B gateways and PLCs publish to the server, not through this agent
  (docs/sparkplug.md)

check a port before configuring it: jitstock-edge check-port /dev/ttyUSB0
(or tcp://host:502 --unit 1 for Modbus TCP)"""

# Longest check-port budget: an installer waits at the terminal; a scale sends within seconds.
MAX_PROBE_S = 600.0

# Exit code of a refused start (configuration, TLS files, outbox owned by another
# process): the systemd unit's RestartPreventExitStatus=2 keeps it from looping.
EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jitstock-edge",
        description="jitstock edge agent: scales and barcode scanners to MQTT, nothing lost.",
        epilog=DEVICE_KINDS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"jitstock-edge {__version__}"
    )
    parser.add_argument(
        "--config",
        help="TOML or YAML settings file (JITSTOCK_* environment variables override it)",
    )
    parser.add_argument(
        "--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR"
    )
    sub = parser.add_subparsers(dest="command")
    check = sub.add_parser(
        "check-port",
        help="print what a serial port or Modbus TCP address speaks (for installers)",
    )
    check.add_argument(
        "port",
        help="e.g. /dev/ttyUSB0, a pyserial URL, or tcp://host[:port] (Modbus TCP)",
    )
    check.add_argument(
        "--timeout",
        type=_seconds,
        default=3.0,
        help=f"seconds to listen and ask (above 0, at most {MAX_PROBE_S:g})",
    )
    check.add_argument("--baudrate", type=_baudrate, default=9600)
    check.add_argument(
        "--unit",
        type=_unit_id,
        default=1,
        help="Modbus unit id to ask (1-247, default 1)",
    )
    check.add_argument(
        "--parity",
        choices=("N", "E", "O"),
        default="N",
        help="serial parity (Modbus RTU indicators often use E)",
    )
    check.add_argument(
        "--register",
        type=_register,
        default=0,
        help="Modbus holding register to read (0-65535, default 0)",
    )
    return parser


def _bounded(low: int, high: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{what} must be {low}..{high}")
        return value

    return parse


_unit_id = _bounded(1, 247, "unit id")
_register = _bounded(0, 65535, "register")
_baudrate = _bounded(1, MAX_BAUDRATE, "baud rate")


def _seconds(text: str) -> float:
    """A probe's time budget: finite and positive (``inf`` used to probe forever)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            "timeout must be a number of seconds"
        ) from None
    if not 0 < value <= MAX_PROBE_S:  # False for NaN too
        raise argparse.ArgumentTypeError(
            f"timeout must be above 0 and at most {MAX_PROBE_S:g}"
        )
    return value


def check_port(
    port: str,
    timeout_s: float,
    baudrate: int,
    unit: int = 1,
    register: int = 0,
    parity: str = "N",
) -> int:
    """Describe what ``port`` speaks; 0 identified, 1 nothing usable, 2 cannot open or in use."""
    from jitstock.edge.probe import diagnose

    found = diagnose(
        port,
        timeout_s=timeout_s,
        baudrate=baudrate,
        unit=unit,
        register=register,
        parity=parity,
    )
    print(found.text)
    return found.exit_code


def _refuse(message: str) -> int:
    """Say why the agent will not start, on one line; exit code 2 (systemd does not restart)."""
    print(f"jitstock-edge: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_CONFIG


def run_agent(config: str | None) -> int:
    """Build the agent from settings and run it until SIGTERM/SIGINT."""
    from jitstock.edge.agent import Agent
    from jitstock.edge.outbox import OutboxError
    from jitstock.edge.settings import ConfigError, load_settings

    try:
        settings = load_settings(config)
    except ConfigError as exc:
        return _refuse(f"bad configuration: {exc}")
    try:
        agent = Agent(settings)
    except OutboxError as exc:
        # a second instance, an outbox of another agent, an unwritable directory:
        # a restart cannot fix any of them, so exit 2 (RestartPreventExitStatus=2)
        return _refuse(f"{config or 'environment'}: outbox_path: {exc}")

    def _stop(signum: int, frame: FrameType | None) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        agent.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    return agent.run()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `jitstock-edge` console script."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "check-port":
        return check_port(
            args.port,
            args.timeout,
            args.baudrate,
            args.unit,
            args.register,
            args.parity,
        )
    # without --config, the environment alone (JITSTOCK_SITE, JITSTOCK_AGENT, ...) configures the agent
    return run_agent(args.config)


if __name__ == "__main__":
    sys.exit(main())
