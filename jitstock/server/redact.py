"""Keeping secrets out of logs, error fields and API answers.

Webhook URLs may carry credentials (``https://user:pass@host/hook?token=…``, or
the token in the path, ``https://hooks.example.com/in/T0KEN``, as Slack and Zapier
hooks do), and a remote server's error body may be anything an internal address answers
(a manager can point a webhook anywhere).  What we log or store about a remote
call is the redacted URL and the status code with its standard phrase, never
the remote body.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from urllib.parse import SplitResult, urlsplit, urlunsplit

# What replaces a password, a user name, a query value or a path.
MASK = "***"
MASKED_PATH = f"/{MASK}"
# At most this much of any error text we store or log about a remote call.
MAX_ERROR_CHARS = 200


def redact_url(url: str) -> str:
    """The URL without user:password, with every query value and the fragment masked,
    and its path (unless it is empty or ``/``) replaced by ``/***``:
    scheme, host and port are what a reader without the secret may see."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return MASK  # unparseable: we cannot tell the secret from the rest
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    if parts.username is not None or parts.password is not None:
        netloc = f"{MASK}@{netloc}"
    query = "&".join(
        f"{pair.split('=', 1)[0]}={MASK}" if "=" in pair else MASK
        for pair in parts.query.split("&")
        if pair
    )
    path = parts.path if parts.path in ("", "/") else MASKED_PATH
    return urlunsplit(
        SplitResult(parts.scheme, netloc, path, query, MASK if parts.fragment else "")
    )


def looks_redacted(url: str) -> bool:
    """True for a URL as redact_url writes it (a masked login, path, query value or
    fragment): a copy of a redacted export, never a real address."""
    try:
        parts = urlsplit(url)
        user, password = parts.username, parts.password
    except ValueError:
        return False
    return (
        (user == MASK and password is None)
        or parts.path == MASKED_PATH
        or parts.fragment == MASK
        or any(
            pair.split("=", 1)[-1] == MASK for pair in parts.query.split("&") if pair
        )
    )


# Why a redacted URL is refused as a supplier's address (API and CSV import alike).
REDACTED_URL_REFUSED = (
    "a redacted URL (*** where a login, path or token was), not this supplier's: only an "
    "admin key sees the full URL"
)


def foreign_redacted(url: str | None, current: str | None) -> bool:
    """``url`` is a redacted copy (:func:`looks_redacted`) that is not ``current``'s own
    redacted form sent back unchanged: a copy of some other answer, never an address."""
    return (
        url is not None
        and looks_redacted(url)
        and not (current is not None and url == redact_url(current))
    )


def http_status_text(code: int) -> str:
    """'HTTP 404 Not Found': the code and its standard phrase, nothing from the remote side."""
    try:
        return f"HTTP {code} {HTTPStatus(code).phrase}"
    except ValueError:
        return f"HTTP {code}"


def safe_text(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """At most ``limit`` printable characters of text (control characters become spaces)."""
    cleaned = "".join(c if c.isprintable() else " " for c in text[: limit * 2])
    cleaned = " ".join(cleaned.split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def quiet_http_client_logs() -> None:
    """httpx logs every request with its full URL at INFO; only its warnings may reach our logs."""
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
