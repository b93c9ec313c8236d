"""Headless Chromium with no way off this machine: /docs and /redoc render from local
assets under their CSP, and the dashboard page raises no CSP violation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from jitstock.server.api import create_api
from tests.server.api.conftest import ApiServer, build_ctx

# Rendering a 1.5 MB bundle on a busy 2-core box can take a while; this is an upper bound.
RENDER_TIMEOUT_MS = 60_000


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    ctx = build_ctx(tmp_path)
    srv = ApiServer(create_api(ctx))
    srv.start()
    yield srv.url
    srv.stop()
    ctx.tsdb.close()
    ctx.engine.dispose()


@pytest.fixture
def offline_page(
    browser: Any, server: str
) -> Iterator[tuple[Any, list[str], list[str]]]:
    """A page whose requests to anything but the server fail; yields (page, outside, csp)."""
    context = browser.new_context()
    page = context.new_page()
    outside: list[str] = []
    violations: list[str] = []
    own = urlsplit(server).netloc

    def route(r: Any) -> None:
        url = r.request.url
        if urlsplit(url).netloc == own or url.startswith(("data:", "blob:")):
            r.continue_()
        else:
            outside.append(url)
            r.abort()

    page.route("**/*", route)
    page.on(
        "console",
        lambda m: (
            violations.append(m.text)
            if "Content Security Policy" in m.text or "Refused to" in m.text
            else None
        ),
    )
    yield page, outside, violations
    context.close()


def test_swagger_ui_renders_offline_under_its_csp(offline_page, server: str) -> None:
    page, outside, violations = offline_page
    response = page.goto(server + "/docs")
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    page.wait_for_selector(".swagger-ui .opblock", timeout=RENDER_TIMEOUT_MS)
    assert outside == []
    assert violations == []


def test_redoc_renders_offline_under_its_csp(offline_page, server: str) -> None:
    page, outside, violations = offline_page
    page.goto(server + "/redoc")
    page.wait_for_selector("h1:has-text('jitstock')", timeout=RENDER_TIMEOUT_MS)
    assert outside == []
    # ReDoc's footer links its vendor logo from a CDN: the CSP blocking that image is the
    # policy working (nothing leaves the machine); anything else would be a real violation.
    assert [v for v in violations if "cdn.redoc.ly" not in v] == []


def test_the_dashboard_page_raises_no_csp_violation(offline_page, server: str) -> None:
    page, outside, violations = offline_page
    response = page.goto(server + "/")
    assert "script-src 'self';" in response.headers["content-security-policy"]
    page.wait_for_load_state("load")
    page.wait_for_function("document.readyState === 'complete'")
    assert outside == []
    assert violations == []
