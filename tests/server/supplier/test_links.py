"""Signed supplier links: what a holder can and cannot do with one, and the secret's file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from jitstock.server.settings import SettingRefused
from jitstock.server.supplier.links import (
    SECRET_FILE,
    LinkRefused,
    LinkSigner,
    link_secret,
)

NOW = 1_760_000_000_000
SIGNER = LinkSigner(b"k" * 32, ttl_s=60.0)


def test_a_link_names_one_order_and_action_until_it_expires() -> None:
    token = SIGNER.token("ord-1", "ack", NOW)
    claim = SIGNER.verify(token, NOW + 59_999)
    assert (claim.order_id, claim.action, claim.expires_ms) == (
        "ord-1",
        "ack",
        NOW + 60_000,
    )
    with pytest.raises(LinkRefused) as refused:
        SIGNER.verify(token, NOW + 60_000)
    assert refused.value.reason == "expired"


def test_a_changed_link_is_refused() -> None:
    token = SIGNER.token("ord-1", "ack", NOW)
    payload, sig = token.split(".")
    other_payload, _ = SIGNER.token("ord-2", "ship", NOW).split(".")
    for bad in (
        f"{other_payload}.{sig}",  # another order or action under this signature
        f"{payload}.{sig[:-1]}",
        f"{payload}x.{sig}",
        LinkSigner(b"z" * 32, ttl_s=60.0).token("ord-1", "ack", NOW),  # another server
    ):
        with pytest.raises(LinkRefused) as refused:
            SIGNER.verify(bad, NOW)
        assert refused.value.reason == "tampered", bad
    for bad in ("", "no-dot", ".", f"{payload}."):
        with pytest.raises(LinkRefused) as refused:
            SIGNER.verify(bad, NOW)
        assert refused.value.reason == "malformed", bad


def test_the_secret_is_generated_once_and_private(tmp_path: Path) -> None:
    first = link_secret(None, tmp_path)
    assert link_secret(None, tmp_path) == first
    assert stat.S_IMODE((tmp_path / SECRET_FILE).stat().st_mode) == 0o600
    assert link_secret("s" * 16, tmp_path) == b"s" * 16
    with pytest.raises(SettingRefused):
        link_secret("short", tmp_path)
