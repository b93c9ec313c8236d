"""API keys and webhook secrets: generation and hashing.

API keys are 32 random bytes (256 bits).  A fast hash (SHA-256) is enough for
keys that carry this much entropy: slow password hashes (bcrypt, argon2) exist to
make guessing *low-entropy* human passwords expensive, and nobody can enumerate
2^256 keys.  A fast hash also lets the API find a key by an indexed equality
lookup on every request without a per-request KDF costing tens of milliseconds.
"""

from __future__ import annotations

import base64
import hashlib
import secrets

API_KEY_PREFIX = "jsk_"
WEBHOOK_SECRET_PREFIX = "whsec_"
# 256 bits: beyond brute force, which is what makes a plain SHA-256 hash safe.
_KEY_BYTES = 32


def new_api_key() -> str:
    """A fresh API key to show once to its owner (store only its hash)."""
    return API_KEY_PREFIX + secrets.token_urlsafe(_KEY_BYTES)


def hash_api_key(key: str) -> str:
    """Hex SHA-256 of an API key, the value kept in api_keys.key_hash."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_webhook_secret() -> str:
    """A Standard Webhooks signing secret: "whsec_" + base64 of 32 random bytes."""
    return (
        WEBHOOK_SECRET_PREFIX
        + base64.b64encode(secrets.token_bytes(_KEY_BYTES)).decode()
    )
