"""A tiny real SMTP server (stdlib sockets) that keeps the messages it receives."""

from __future__ import annotations

import socketserver
import threading
from email import message_from_bytes
from email.message import Message

from tests.services import free_port


class SmtpSink:
    """Speaks just enough SMTP (HELO/EHLO, MAIL, RCPT, DATA, QUIT) for smtplib."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.port = free_port()
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.wfile.write(b"220 sink ESMTP\r\n")
                while line := self.rfile.readline():
                    cmd = line.strip().upper()
                    if cmd.startswith((b"EHLO", b"HELO")):
                        self.wfile.write(b"250 sink\r\n")
                    elif cmd == b"DATA":
                        self.wfile.write(b"354 go ahead\r\n")
                        body = b""
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                            body += chunk
                        sink.messages.append(message_from_bytes(body))
                        self.wfile.write(b"250 ok\r\n")
                    elif cmd == b"QUIT":
                        self.wfile.write(b"221 bye\r\n")
                        return
                    else:
                        self.wfile.write(b"250 ok\r\n")

        self._server = socketserver.ThreadingTCPServer(
            ("127.0.0.1", self.port), Handler
        )
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        """Serve in a thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
