"""Security headers on every response and a strict CSP on every HTML page; the API docs
come from this server, never from a CDN."""

from __future__ import annotations

import re

import httpx

from tests.server.api.conftest import Api

HTML_PAGES = ["/", "/docs", "/redoc"]


def _csp(r: httpx.Response) -> dict[str, str]:
    out = {}
    for part in r.headers["content-security-policy"].split(";"):
        name, _, value = part.strip().partition(" ")
        out[name] = value
    return out


def test_every_html_page_has_csp_without_inline_script_and_no_framing(
    api: Api,
) -> None:
    client = api.client()
    for path in HTML_PAGES:
        r = client.get(path)
        assert r.status_code == 200, path
        assert r.headers["content-type"].startswith("text/html")
        csp = _csp(r)
        assert csp["script-src"] == "'self'", (path, csp)
        assert csp["frame-ancestors"] == "'none'"
        assert csp["object-src"] == "'none'"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["x-frame-options"] == "DENY"
        # no inline script and no inline handlers in the page itself
        for tag in re.findall(r"<script[^>]*>(.*?)</script>", r.text, re.S):
            assert tag.strip() == "", (path, tag[:80])
        assert not re.search(r"\son[a-z]+\s*=", r.text), path
    assert "'unsafe-inline'" not in client.get("/").headers["content-security-policy"]


def test_json_and_assets_are_never_sniffed(api: Api) -> None:
    client = api.client()
    for path in ["/api/v1/bins", "/openapi.json", "/ui/app.js", "/docs/assets/nope"]:
        r = client.get(path)
        assert r.headers["x-content-type-options"] == "nosniff", path
        assert r.headers["referrer-policy"] == "no-referrer", path


def test_docs_pages_load_only_local_assets_that_the_server_has(api: Api) -> None:
    client = api.client()
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        refs = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert refs, page
        for ref in refs:
            assert ref.startswith("/"), (page, ref)  # nothing from another origin
            r = client.get(ref)
            assert r.status_code == 200, (page, ref)
            assert len(r.content) > 0
    bundle = client.get("/docs/assets/swagger-ui-bundle.js")
    assert bundle.headers["content-type"].startswith("text/javascript")
    assert "SwaggerUIBundle" in bundle.text[:5000] or len(bundle.content) > 500_000
