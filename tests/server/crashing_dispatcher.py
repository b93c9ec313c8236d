"""A dispatcher process that claims an order and hangs before sending it, to be SIGKILLed.

Usage: python -m tests.server.crashing_dispatcher DB_URL MARKER_FILE
Writes MARKER_FILE once the claim is committed and the request is about to go out.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx

from jitstock.server.db.session import make_engine, make_session_factory
from jitstock.server.dispatch import Dispatcher, RetryPolicy


def main(url: str, marker: str) -> None:
    def hang_before_sending(request: httpx.Request) -> None:
        Path(marker).write_text(request.headers["webhook-id"])
        time.sleep(3600)  # the test kills us here: claimed, nothing on the wire

    engine = make_engine(url)
    with httpx.Client(event_hooks={"request": [hang_before_sending]}) as http:
        Dispatcher(
            make_session_factory(engine),
            http,
            retry=RetryPolicy(timeout_s=1.0, claim_lease_s=5.0),
        ).run_once()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
