"""Webhook URLs carry credentials: only admin keys see them whole, through every way a
supplier is read (one, list, CSV); a redacted URL sent back does not overwrite the real one."""

from __future__ import annotations

import csv
import io

import httpx

from tests.server.api.conftest import Api

SECRET_URL = "https://acme-user:hunter2-pass@hooks.acme.example:8443/jit/orders?token=tok-9f8e7d&site=plant1#frag"
REDACTED = "https://***@hooks.acme.example:8443/***?token=***&site=***#***"
CSV = {"content-type": "text/csv"}


def _create(admin: httpx.Client) -> None:
    r = admin.post(
        "/api/v1/suppliers",
        json={"id": "acme", "name": "ACME", "webhook_url": SECRET_URL},
    )
    assert r.status_code == 201, r.text


def _csv_url(client: httpx.Client) -> str:
    r = client.get("/api/v1/suppliers.csv")
    assert r.status_code == 200
    (row,) = csv.DictReader(io.StringIO(r.text))
    return row["webhook_url"]


def test_viewers_and_managers_see_the_url_without_credentials(
    api: Api, admin: httpx.Client, manager: httpx.Client, viewer: httpx.Client
) -> None:
    _create(admin)
    for client in (viewer, manager):
        one = client.get("/api/v1/suppliers/acme")
        assert one.status_code == 200
        assert one.json()["webhook_url"] == REDACTED
        (listed,) = client.get("/api/v1/suppliers").json()
        assert listed["webhook_url"] == REDACTED
        assert _csv_url(client) == REDACTED
        for text in (one.text, client.get("/api/v1/suppliers.csv").text):
            assert "hunter2" not in text
            assert "tok-9f8e7d" not in text
    assert admin.get("/api/v1/suppliers/acme").json()["webhook_url"] == SECRET_URL
    assert _csv_url(admin) == SECRET_URL


def test_sending_the_redacted_url_back_keeps_the_real_one(
    admin: httpx.Client, manager: httpx.Client
) -> None:
    _create(admin)
    shown = manager.get("/api/v1/suppliers/acme").json()
    r = manager.patch(
        "/api/v1/suppliers/acme",
        json={"name": "ACME GmbH", "webhook_url": shown["webhook_url"]},
    )
    assert r.status_code == 200, r.text
    got = admin.get("/api/v1/suppliers/acme").json()
    assert (got["name"], got["webhook_url"]) == ("ACME GmbH", SECRET_URL)

    # the same through a manager's CSV export edited and imported back
    text = manager.get("/api/v1/suppliers.csv").text.replace("ACME GmbH", "ACME AG")
    r = manager.post("/api/v1/suppliers/import", content=text, headers=CSV)
    assert r.status_code == 200, r.text
    assert r.json()["updated"] == 1
    got = admin.get("/api/v1/suppliers/acme").json()
    assert (got["name"], got["webhook_url"]) == ("ACME AG", SECRET_URL)

    # a real new URL still replaces it
    new = "https://hooks.acme.example/v2"
    r = manager.patch("/api/v1/suppliers/acme", json={"webhook_url": new})
    assert r.status_code == 200
    assert admin.get("/api/v1/suppliers/acme").json()["webhook_url"] == new


def test_a_redacted_url_is_no_address_for_another_supplier(
    admin: httpx.Client, manager: httpx.Client
) -> None:
    """Copied from a manager's view into a new or another supplier, the redacted URL
    would be stored as its address (every order to https://***@...): refused, nothing
    changed."""
    _create(admin)
    shown = manager.get("/api/v1/suppliers/acme").json()["webhook_url"]
    assert shown == REDACTED
    r = manager.post(
        "/api/v1/suppliers",
        json={"id": "acme-2", "name": "ACME 2", "webhook_url": shown},
    )
    assert r.status_code == 422, r.text
    assert "redacted URL" in r.text
    assert "webhook_url" in r.text
    assert manager.get("/api/v1/suppliers/acme-2").status_code == 404
    r = manager.post(
        "/api/v1/suppliers",
        json={"id": "borg", "name": "Borg", "webhook_url": "https://borg.example/h"},
    )
    assert r.status_code == 201, r.text
    for url in (
        shown,
        "https://hooks.borg.example/in?key=***",
        "https://hooks.borg.example/***",
    ):
        r = manager.patch("/api/v1/suppliers/borg", json={"webhook_url": url})
        assert r.status_code == 422, r.text
    got = admin.get("/api/v1/suppliers/borg").json()["webhook_url"]
    assert got == "https://borg.example/h"


def test_a_token_in_the_path_is_hidden_and_kept(
    admin: httpx.Client, manager: httpx.Client, viewer: httpx.Client
) -> None:
    """Slack- and Zapier-style hooks carry their token in the path: a non-admin sees
    scheme, host and port only; the redacted form sent back leaves the real URL."""
    url = "https://hooks.example.com:8443/in/SECRETPATH123"
    r = admin.post(
        "/api/v1/suppliers", json={"id": "acme", "name": "ACME", "webhook_url": url}
    )
    assert r.status_code == 201, r.text
    for client in (viewer, manager):
        shown = client.get("/api/v1/suppliers/acme").json()["webhook_url"]
        assert shown == "https://hooks.example.com:8443/***"
        for text in (
            client.get("/api/v1/suppliers/acme").text,
            client.get("/api/v1/suppliers").text,
            client.get("/api/v1/suppliers.csv").text,
        ):
            assert "SECRETPATH123" not in text
    r = manager.patch(
        "/api/v1/suppliers/acme",
        json={"name": "ACME AG", "webhook_url": "https://hooks.example.com:8443/***"},
    )
    assert r.status_code == 200, r.text
    sheet = manager.get("/api/v1/suppliers.csv").text.replace("ACME AG", "ACME SE")
    r = manager.post("/api/v1/suppliers/import", content=sheet, headers=CSV)
    assert r.status_code == 200, r.text
    got = admin.get("/api/v1/suppliers/acme").json()
    assert (got["name"], got["webhook_url"]) == ("ACME SE", url)
    assert _csv_url(admin) == url
