"""`jitstock-edge`: run the agent (`--config edge.toml`) or probe a port (`check-port /dev/ttyUSB0`)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType

from jitstock import __version__

log = logging.getLogger("jitstock.edge")

# Exit code of a refused start (configuration, TLS files, outbox owned by another
# process): the systemd unit's RestartPreventExitStatus=2 keeps it from looping.
EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jitstock-edge",
        description="jitstock edge agent: serial scales and scanners to MQTT, nothing lost.",
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
        "check-port", help="print what a serial port speaks (for installers)"
    )
    check.add_argument("port", help="e.g. /dev/ttyUSB0 or a pyserial URL")
    check.add_argument(
        "--timeout", type=float, default=3.0, help="seconds to listen and ask"
    )
    check.add_argument("--baudrate", type=int, default=9600)
    return parser


def check_port(port: str, timeout_s: float, baudrate: int) -> int:
    """Describe what ``port`` speaks; 0 identified, 1 nothing usable, 2 cannot open or in use."""
    from jitstock.edge.probe import diagnose

    found = diagnose(port, timeout_s=timeout_s, baudrate=baudrate)
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
        return check_port(args.port, args.timeout, args.baudrate)
    # without --config, the environment alone (JITSTOCK_SITE, JITSTOCK_AGENT, ...) configures the agent
    return run_agent(args.config)


if __name__ == "__main__":
    sys.exit(main())
