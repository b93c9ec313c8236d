"""`jitstock server`: run ingest, replenishment, dispatch and the API in one process."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from pydantic import ValidationError

from jitstock.server import heap
from jitstock.server.redact import quiet_http_client_logs
from jitstock.server.settings import ServerSettings, SettingRefused

# What the process exits with when its configuration is refused (like argparse's usage errors).
EXIT_BAD_SETTINGS = 2


def settings_problem(exc: ValidationError) -> str:
    """One line naming every refused JITSTOCK_* variable and why (values never echoed)."""
    parts = []
    for e in exc.errors():
        name = "_".join(str(x) for x in e.get("loc", ()) if isinstance(x, str))
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"JITSTOCK_{name.upper()}: {msg}" if name else msg)
    return "; ".join(parts)


def load_settings(overrides: dict[str, object]) -> ServerSettings:
    """Settings from the environment and overrides, or SettingRefused with one readable line."""
    try:
        settings = ServerSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingRefused(settings_problem(exc)) from None
    settings.check_production()
    return settings


def main(argv: list[str]) -> int:
    """Entry point of `jitstock server` (configuration from JITSTOCK_* variables)."""
    parser = argparse.ArgumentParser(prog="jitstock server", description=__doc__)
    parser.add_argument("--host", help="HTTP bind address (JITSTOCK_HTTP_HOST)")
    parser.add_argument("--port", type=int, help="HTTP port (JITSTOCK_HTTP_PORT)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    quiet_http_client_logs()  # httpx would log every webhook URL, credentials and all
    overrides = {
        k: v
        for k, v in (("http_host", args.host), ("http_port", args.port))
        if v is not None
    }
    try:
        settings = load_settings(overrides)
    except SettingRefused as exc:
        sys.stderr.write(f"jitstock server: refused: {exc}\n")
        return EXIT_BAD_SETTINGS

    from jitstock.server.admin.schema import SchemaRefused, check_schema
    from jitstock.server.app import ServerApp

    try:
        check_schema(
            settings.db_url
        )  # a newer release's database: refuse, never migrate
        app = ServerApp(settings)
    except (SettingRefused, SchemaRefused) as exc:  # e.g. an unusable MQTT CA file
        sys.stderr.write(f"jitstock server: refused: {exc}\n")
        return EXIT_BAD_SETTINGS
    app.start()
    heap.settle()  # the rare full collection was the slow reorder at high rates

    def _term(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=app.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, _term)
    try:
        app.serve()
    except KeyboardInterrupt:
        pass
    finally:
        app.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
