"""`jitstock server`: run ingest, replenishment, dispatch and the API in one process."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from jitstock.server.settings import ServerSettings


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
    overrides = {
        k: v
        for k, v in (("http_host", args.host), ("http_port", args.port))
        if v is not None
    }
    settings = ServerSettings(**overrides)

    from jitstock.server.app import ServerApp

    app = ServerApp(settings)
    app.start()

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
