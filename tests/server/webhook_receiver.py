"""A real HTTP supplier endpoint for tests: verifies Standard Webhooks signatures, answers
as scripted, and checks every verified body against the published contract (the
OpenAPI ``webhooks`` of the server that sent it) once it is given one."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from jsonschema import Draft202012Validator
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.waits import WAIT_S


class WebhookContract:
    """The webhook schemas of an OpenAPI document, one validator per delivery type."""

    def __init__(self, openapi: dict[str, Any]) -> None:
        components = openapi.get("components", {})
        self.validators: dict[str, Draft202012Validator] = {}
        for name, item in openapi.get("webhooks", {}).items():
            schema = item["post"]["requestBody"]["content"]["application/json"][
                "schema"
            ]
            # $refs point into #/components: resolve them against a root that has them
            self.validators[name] = Draft202012Validator(
                {**schema, "components": components}
            )

    @classmethod
    def fetch(cls, base_url: str) -> WebhookContract:
        """The contract a running server publishes at /openapi.json."""
        r = httpx.get(f"{base_url}/openapi.json", timeout=WAIT_S)
        r.raise_for_status()
        return cls(r.json())

    def problems(self, headers: dict[str, str], payload: Any) -> list[str]:
        """Where a verified delivery breaks the contract (empty: it keeps it)."""
        kind = payload.get("type") if isinstance(payload, dict) else None
        validator = self.validators.get(str(kind))
        if validator is None:
            return [f"delivery type {kind!r} is not in the OpenAPI webhooks"]
        out = [
            f"{kind}: {e.json_path}: {e.message}"
            for e in validator.iter_errors(payload)
        ]
        if headers.get("webhook-id") != payload.get("id"):
            out.append(f"{kind}: webhook-id {headers.get('webhook-id')!r} != body id")
        return out


@dataclass
class Received:
    """One request as the supplier saw it."""

    headers: dict[str, str]
    body: bytes
    verified: bool
    payload: Any
    status: int
    # when it arrived (time.monotonic())
    at: float = field(default_factory=time.monotonic)


class WebhookReceiver:
    """Threaded HTTP server on a free port; ``script(503, 503, 200)`` sets the next answers (then 200)."""

    def __init__(self, secret: str) -> None:
        self.webhook = Webhook(secret)
        self.received: list[Received] = []
        self.contract: WebhookContract | None = None
        # every contract problem of a verified delivery, with the delivery's id
        self.contract_problems: list[str] = []
        self._script: deque[tuple[int, dict[str, str]]] = deque()
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    payload = receiver.webhook.verify(body, headers)
                    verified = True
                except WebhookVerificationError:
                    payload, verified = None, False
                with receiver._cond:
                    if not verified:
                        status, extra = 401, {}
                    elif receiver._script:
                        status, extra = receiver._script.popleft()
                    else:
                        status, extra = 200, {}
                # Recorded before the answer goes out: a sender that saw the answer
                # finds the delivery in ``received`` (a CI run once looked between the
                # answer and the record, and found nothing).
                got = Received(headers, body, verified, payload, status)
                receiver._check(got)
                with receiver._cond:
                    receiver.received.append(got)
                    receiver._cond.notify_all()
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/orders"
        # A short poll interval so stop() (shutdown) returns promptly.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
        )

    def check_contract(self, contract: WebhookContract) -> None:
        """Validate every verified delivery (those so far and all later) against ``contract``."""
        with self._cond:
            self.contract = contract
            earlier = list(self.received)
        for got in earlier:
            self._check(got)

    def _check(self, got: Received) -> None:
        contract = self.contract
        if contract is None or not got.verified:
            return
        problems = contract.problems(got.headers, got.payload)
        with self._cond:
            self.contract_problems += problems

    def assert_contract(self) -> None:
        """Fail when a verified delivery broke the contract."""
        assert self.contract is not None, "no contract to check against"
        assert self.contract_problems == [], "\n".join(self.contract_problems)

    def script(self, *statuses: int, headers: dict[str, str] | None = None) -> None:
        """Answer the next requests with these statuses (and headers), then 200."""
        with self._cond:
            self._script.extend((s, dict(headers or {})) for s in statuses)

    def clear_script(self) -> None:
        """Forget scripted answers not used yet: answer 200 from now on."""
        with self._cond:
            self._script.clear()

    def wait_for(self, n: int, timeout: float = WAIT_S) -> list[Received]:
        """Block until at least ``n`` requests arrived; return them all."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.received) >= n, timeout):
                raise TimeoutError(
                    f"{len(self.received)} webhooks received, expected {n}"
                )
            return list(self.received)

    def accepted(self) -> list[Received]:
        """Requests with a valid signature that were answered 2xx (deliveries that counted)."""
        with self._cond:
            return [r for r in self.received if r.verified and 200 <= r.status < 300]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
