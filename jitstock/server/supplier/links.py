"""Signed one-click links for suppliers without an API (issue 13's e-mail channel).

A link names one order, one action (``ack``: acknowledge with a promise date;
``ship``: announce shipment) and when it expires, and carries an HMAC-SHA256 of
those three under the server's link secret::

    /supplier-links/<payload>.<signature>
    payload   = base64url(JSON [order_id, action, expires_ms])
    signature = base64url(HMAC-SHA256(secret, "jitstock-link-v1." + payload))

Whoever holds the link may do that one thing to that one order until it expires:
it is as strong as the mailbox it was sent to, which is all a supplier without an
API has.  Changing any byte breaks the signature (compared in constant time).

Errors::

    LinkRefused             the link is not one this server signed, or no longer valid
                            (``reason``: 'malformed', 'tampered' or 'expired')

A configured secret that is too short, or an unusable secret file, refuses the
start (SettingRefused).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import orjson

from jitstock.server.private_files import PRIVATE_MODE
from jitstock.server.settings import SettingRefused

log = logging.getLogger(__name__)

# The audit and transition rows name who acted: the supplier, through its e-mail link.
ACTOR_PREFIX = "email-link:"

Action = Literal["ack", "ship"]
ACTIONS: tuple[Action, ...] = ("ack", "ship")
# Domain separation: a signature made for anything else with this key never verifies here.
_CONTEXT = b"jitstock-link-v1."
# The generated secret's file under data_dir (one per server installation).
SECRET_FILE = "supplier-links.key"
# Random bytes of a generated secret (HMAC-SHA256's block-size worth is plenty).
SECRET_BYTES = 32
# Shorter configured secrets are refused: a guessable key forges every link.
MIN_SECRET_CHARS = 16


class LinkRefused(Exception):
    """A link this server will not act on; ``reason`` says why, for the page."""

    def __init__(self, reason: Literal["malformed", "tampered", "expired"]) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class LinkClaim:
    """What a valid link allows."""

    order_id: str
    action: Action
    expires_ms: int


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LinkSigner:
    """Makes and checks the links of one server (one secret, one lifetime)."""

    def __init__(self, secret: bytes, ttl_s: float) -> None:
        if len(secret) < MIN_SECRET_CHARS:
            raise ValueError(f"link secret must be at least {MIN_SECRET_CHARS} bytes")
        self._key = secret
        self.ttl_ms = int(ttl_s * 1000)

    def _sign(self, payload: str) -> str:
        mac = hmac.new(self._key, _CONTEXT + payload.encode("ascii"), hashlib.sha256)
        return _b64(mac.digest())

    def token(self, order_id: str, action: Action, now_ms: int) -> str:
        """A token for ``action`` on ``order_id``, valid for the lifetime from now."""
        payload = _b64(orjson.dumps([order_id, action, now_ms + self.ttl_ms]))
        return f"{payload}.{self._sign(payload)}"

    def verify(self, token: str, now_ms: int) -> LinkClaim:
        """The claim of a token this server signed and that has not expired (else LinkRefused)."""
        payload, dot, signature = token.partition(".")
        if not dot or not payload or not signature:
            raise LinkRefused("malformed")
        if not hmac.compare_digest(
            self._sign(payload).encode("ascii"), signature.encode("ascii", "replace")
        ):
            raise LinkRefused("tampered")
        try:
            order_id, action, expires_ms = orjson.loads(_unb64(payload))
        except (binascii.Error, ValueError, TypeError) as exc:
            # signed by us yet unreadable: only a key shared with something else does that
            raise LinkRefused("malformed") from exc
        if (
            not isinstance(order_id, str)
            or action not in ACTIONS
            or not isinstance(expires_ms, int)
        ):
            raise LinkRefused("malformed")
        if now_ms >= expires_ms:
            raise LinkRefused("expired")
        return LinkClaim(order_id, action, expires_ms)


def link_secret(configured: str | None, data_dir: Path) -> bytes:
    """The configured secret, else the one generated into ``data_dir`` (created on first use).

    Several server processes on one data_dir share the file; servers on different
    hosts must be given the same JITSTOCK_SUPPLIER_LINK_SECRET.
    """
    if configured is not None:
        if len(configured) < MIN_SECRET_CHARS:
            raise SettingRefused(
                f"JITSTOCK_SUPPLIER_LINK_SECRET must be at least {MIN_SECRET_CHARS} characters"
            )
        return configured.encode()
    path = data_dir / SECRET_FILE
    if not path.exists():
        # written aside, then linked into place: a second process starting at the same
        # moment either wins or reads the winner's secret, never half a file
        tmp = path.with_name(f".{SECRET_FILE}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, PRIVATE_MODE)
        try:
            try:
                os.write(fd, (secrets.token_urlsafe(SECRET_BYTES) + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)
                log.info("generated the supplier link secret in %s", path)
            except FileExistsError:
                pass
        finally:
            tmp.unlink(missing_ok=True)
    text = path.read_text(encoding="ascii").strip()
    if len(text) < MIN_SECRET_CHARS:
        raise SettingRefused(
            f"{path} holds no usable link secret; delete it to have one generated"
        )
    return text.encode()
