"""A real SMTP server for tests (aiosmtpd on a free port), keeping every message it accepts."""

from __future__ import annotations

import threading
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from tests.services import free_port
from tests.waits import WAIT_S


class _Keep:
    """aiosmtpd handler: accept every message and keep it."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        with self.lock:
            self.messages.append((list(envelope.rcpt_tos), msg))
        return "250 Message accepted for delivery"


class SmtpReceiver:
    """An SMTP server on 127.0.0.1; ``port`` is chosen before start, so a test can
    point a server at it while it is still down."""

    def __init__(self, port: int | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._handler = _Keep()
        self._controller: Controller | None = None

    def start(self) -> None:
        """Listen (returns once the server answers)."""
        self._controller = Controller(
            self._handler, hostname=self.host, port=self.port, ready_timeout=WAIT_S
        )
        self._controller.start()

    def stop(self) -> None:
        """Stop listening."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def messages(self) -> list[tuple[list[str], EmailMessage]]:
        """(recipients, message) of every message accepted so far."""
        with self._handler.lock:
            return list(self._handler.messages)
