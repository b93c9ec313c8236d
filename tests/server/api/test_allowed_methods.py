"""A 405 names every method the resource takes, as /openapi.json declares them.

Found by schemathesis's ``unsupported_method`` check from the outside: Starlette put
the first route's methods only in ``Allow`` (``PUT /api/v1/bins/A-01`` said
``Allow: GET``; the bin also takes PATCH and DELETE).
"""

from __future__ import annotations

import re

from tests.server.api.conftest import Api

METHODS = {"get", "post", "put", "patch", "delete", "head", "options", "trace"}


def _declared(spec: dict[str, object], path: str) -> set[str]:
    """The methods /openapi.json declares for every path template matching ``path``."""
    out: set[str] = set()
    paths = spec["paths"]
    assert isinstance(paths, dict)
    for template, ops in paths.items():
        pattern = (
            "^"
            + re.sub(
                r"\{[^}/]+\}",
                "[^/]+",
                re.escape(template).replace(r"\{", "{").replace(r"\}", "}"),
            )
            + "$"
        )
        if re.match(pattern, path):
            out |= {m.upper() for m in ops if m in METHODS}
    return out


def test_every_405_lists_exactly_the_documented_methods(api: Api) -> None:
    client = api.client(api.admin_key)
    spec = client.get("/openapi.json").json()
    checked = 0
    for template, ops in spec["paths"].items():
        path = re.sub(r"\{[^}/]+\}", "x-1", template)
        declared = _declared(spec, path)
        method = next(
            m for m in ("PUT", "PATCH", "DELETE", "POST") if m not in declared
        )
        r = client.request(method, path)
        assert r.status_code == 405, (method, path, r.status_code, r.text)
        allow = {m.strip() for m in r.headers["allow"].split(",")}
        assert allow - {"HEAD"} == declared, (method, path, allow, declared, ops)
        checked += 1
    assert checked >= 60  # every documented path was tried


def test_405_on_a_bin_names_get_patch_and_delete(api: Api) -> None:
    r = api.client(api.admin_key).put("/api/v1/bins/A-01", json={})
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, PATCH, DELETE"
    # the body and the security headers are still the framework's
    assert r.json() == {"detail": "Method Not Allowed"}
    assert r.headers["x-content-type-options"] == "nosniff"
