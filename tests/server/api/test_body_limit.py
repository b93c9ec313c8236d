"""Request bodies are bounded: a body beyond the route's limit is a 413 naming the limit,
refused before it is read (Content-Length) or as soon as a chunked body passes it, with
or without a key; the CSV imports keep their own 5 MB message; nothing changes."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import pytest

from jitstock.server.api.body_limit import MAX_IMPORT_BYTES, MAX_JSON_BYTES
from jitstock.server.api.csvio import MAX_CSV_BYTES
from tests.server.api.conftest import SITE, seed_master
from tests.waits import WAIT_S

CHUNK = 64 * 1024


def _raw(url: str, head: str, body_parts: list[bytes] = ()) -> tuple[int, dict]:  # type: ignore[assignment]
    """Send a request head and some body bytes on a raw socket; (status, JSON body) of the answer.

    Nothing more is sent after ``body_parts``: a server that waited for the rest of
    the body would never answer (the socket times out)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=WAIT_S) as s:
        s.sendall(head.encode())
        for part in body_parts:
            s.sendall(part)
        data = b""
        while b"\r\n\r\n" not in data or not _complete(data):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head_bytes, _, payload = data.partition(b"\r\n\r\n")
    status = int(head_bytes.split(b" ", 2)[1])
    return status, json.loads(payload)


def _complete(data: bytes) -> bool:
    head, _, payload = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(payload) >= int(value)
    return False


def _head(path: str, extra: str, key: str | None = None) -> str:
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"{auth}{extra}\r\n"
    )


@pytest.mark.parametrize("path", ["/api/v1/sites", "/api/v1/login"])
def test_a_declared_oversize_body_is_413_before_any_byte_is_read(api, path) -> None:
    # 200 MB announced, not one byte sent: the answer must not wait for the body
    status, body = _raw(api.url, _head(path, "Content-Length: 200000000\r\n"))
    assert status == 413
    assert str(MAX_JSON_BYTES) in body["detail"]
    assert api.client(api.admin_key).get("/api/v1/sites").json() == []


def test_a_chunked_body_is_refused_when_it_passes_the_limit(api, manager) -> None:
    key = api.new_key("manager")
    prefix = b'{"id": "plant9", "name": "' + b"x" * (MAX_JSON_BYTES + CHUNK)
    chunks = [prefix[i : i + CHUNK] for i in range(0, len(prefix), CHUNK)]
    framed = [b"%x\r\n%s\r\n" % (len(c), c) for c in chunks]
    status, body = _raw(
        api.url,
        _head("/api/v1/sites", "Transfer-Encoding: chunked\r\n", key),
        framed,
    )
    assert status == 413
    assert str(MAX_JSON_BYTES) in body["detail"]
    assert manager.get("/api/v1/sites").json() == []


def test_a_body_just_over_the_limit_is_413_with_a_key(manager) -> None:
    body = {"id": "plant9", "name": "x" * MAX_JSON_BYTES}
    r = manager.post("/api/v1/sites", json=body)
    assert r.status_code == 413, r.text
    assert str(MAX_JSON_BYTES) in r.json()["detail"]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert manager.get("/api/v1/sites").json() == []


def test_a_large_legitimate_body_still_passes(manager) -> None:
    # most of a MiB of whitespace: the bound leaves the largest real body ample room
    text = '{"id": "plant1",' + " " * (MAX_JSON_BYTES - 100) + '"name": "Plant 1"}'
    r = manager.post(
        "/api/v1/sites", content=text, headers={"content-type": "application/json"}
    )
    assert r.status_code == 201, r.text


def test_csv_import_keeps_its_own_5mb_message_and_has_a_larger_bound(
    manager, api
) -> None:
    seed_master(manager)
    before = manager.get("/api/v1/sites.csv").text
    row = f"{SITE['id']},{'y' * 80}\n".encode()
    big = b"id,name\n" + row * (MAX_CSV_BYTES // len(row) + 10)
    assert MAX_CSV_BYTES < len(big) < MAX_IMPORT_BYTES
    r = manager.post(
        "/api/v1/sites/import", content=big, headers={"content-type": "text/csv"}
    )
    assert r.status_code == 413, r.text
    assert "split it" in r.json()["detail"]
    status, body = _raw(
        api.url,
        _head(
            "/api/v1/sites/import",
            f"Content-Length: {MAX_IMPORT_BYTES + 1}\r\n",
            api.admin_key,
        ),
    )
    assert status == 413
    assert str(MAX_IMPORT_BYTES) in body["detail"]
    assert manager.get("/api/v1/sites.csv").text == before


def test_413_and_415_are_declared_in_the_openapi(viewer) -> None:
    doc = viewer.get("/openapi.json").json()
    assert "413" in doc["paths"]["/api/v1/sites"]["post"]["responses"]
    imp = doc["paths"]["/api/v1/sites/import"]["post"]["responses"]
    assert "413" in imp
    assert "415" in imp
