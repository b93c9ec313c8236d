"""A real API server per test: uvicorn on a free port over a migrated temp SQLite state DB,
the SQLite time series store, real Metrics and BinRegistry; httpx clients with keys per role."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine

from jitstock.server.api import create_api
from jitstock.server.db.migrate import upgrade
from jitstock.server.db.session import SessionFactory, make_engine, make_session_factory
from jitstock.server.metrics import Metrics
from jitstock.server.registry import BinRegistry
from jitstock.server.settings import ServerSettings
from jitstock.server.state import SqlState
from jitstock.server.tsdb import TimeSeriesStore, open_store
from tests.services import free_port
from tests.waits import WAIT_S

# Any fixed instant: tests compare times the API stamps with this clock.
START_MS = 1_800_000_000_000
# Generous: a loaded 2-core CI box may take a while to import and bind.
SERVER_START_TIMEOUT_S = WAIT_S


class ManualClock:
    """A clock that moves only when a test moves it."""

    def __init__(self, start_ms: int = START_MS) -> None:
        self.now_ms = start_ms

    def monotonic(self) -> float:
        return self.now_ms / 1000

    def time_ms(self) -> int:
        return self.now_ms

    def sleep(self, seconds: float) -> None:
        self.now_ms += int(seconds * 1000)


class WakeCounter:
    """Dispatcher stand-in: dispatch itself is tested in tests/server/test_dispatch.py."""

    def __init__(self) -> None:
        self.wakes = 0

    def wake(self) -> None:
        self.wakes += 1


@dataclass
class Ctx:
    """What ServerApp gives create_api, built from real parts."""

    settings: ServerSettings
    session_factory: SessionFactory
    tsdb: TimeSeriesStore
    metrics: Metrics
    registry: BinRegistry
    dispatcher: WakeCounter
    clock: ManualClock
    engine: Engine
    mqtt_up: bool = True

    def mqtt_connected(self) -> bool:
        return self.mqtt_up


class ApiServer:
    """uvicorn serving an app in a thread."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, name="uvicorn", daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        deadline = threading.Event()
        for _ in range(int(SERVER_START_TIMEOUT_S / 0.01)):
            if self._server.started:
                return
            deadline.wait(0.01)
        raise RuntimeError("uvicorn did not start")

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=SERVER_START_TIMEOUT_S)


@dataclass
class Api:
    """A running API and clients for it."""

    url: str
    ctx: Ctx
    admin_key: str
    _clients: list[httpx.Client] = field(default_factory=list)

    def client(self, key: str | None = None, *, header: str = "bearer") -> httpx.Client:
        """An httpx client sending ``key`` as a bearer token (or X-API-Key), or no key."""
        headers = {}
        if key is not None:
            headers = (
                {"Authorization": f"Bearer {key}"}
                if header == "bearer"
                else {"X-API-Key": key}
            )
        c = httpx.Client(base_url=self.url, headers=headers, timeout=10.0)
        self._clients.append(c)
        return c

    def new_key(self, role: str, name: str | None = None) -> str:
        """A fresh key with ``role``, issued through the API by the bootstrap admin."""
        r = self.client(self.admin_key).post(
            "/api/v1/keys", json={"name": name or f"{role}-key", "role": role}
        )
        assert r.status_code == 201, r.text
        return str(r.json()["key"])

    def close(self) -> None:
        for c in self._clients:
            c.close()


def build_ctx(tmp_path: Path, db_url: str | None = None, **settings: Any) -> Ctx:
    """Real parts over temp files: migrated state DB (temp SQLite unless db_url), SQLite tsdb, metrics, registry."""
    db_url = db_url or f"sqlite:///{tmp_path / 'state.db'}"
    upgrade(db_url)
    engine = make_engine(db_url)
    factory = make_session_factory(engine)
    registry = BinRegistry()
    registry.set_loader(SqlState(factory, registry).load_registry)
    s = ServerSettings(data_dir=tmp_path, db_url=db_url, **settings)
    tsdb = open_store(sqlite_path=tmp_path / "ts.db", spool_path=tmp_path / "spool.db")
    return Ctx(
        s, factory, tsdb, Metrics(), registry, WakeCounter(), ManualClock(), engine
    )


@pytest.fixture
def make_api(tmp_path: Path) -> Iterator[Any]:
    """Factory: start an API with extra ServerSettings; everything is stopped after the test."""
    started: list[tuple[ApiServer, Api]] = []

    def make(db_url: str | None = None, **settings: Any) -> Api:
        key = "jsk_" + secrets.token_urlsafe(32)
        settings.setdefault("bootstrap_admin_key", key)
        d = tmp_path / f"api{len(started)}"
        d.mkdir()
        ctx = build_ctx(d, db_url, **settings)
        server = ApiServer(create_api(ctx))
        server.start()
        api = Api(server.url, ctx, key)
        started.append((server, api))
        return api

    yield make
    for server, api in started:
        api.close()
        server.stop()
        api.ctx.tsdb.close()
        api.ctx.engine.dispose()


@pytest.fixture
def api(make_api: Any) -> Api:
    """An API with auth on and a bootstrap admin key."""
    return make_api()  # type: ignore[no-any-return]


@pytest.fixture
def admin(api: Api) -> httpx.Client:
    """Client with the bootstrap admin key."""
    return api.client(api.admin_key)


@pytest.fixture
def manager(api: Api) -> httpx.Client:
    """Client with a manager key."""
    return api.client(api.new_key("manager", "line-manager"))


@pytest.fixture
def viewer(api: Api) -> httpx.Client:
    """Client with a viewer key."""
    return api.client(api.new_key("viewer", "wallboard"))


SITE = {"id": "plant1", "name": "Plant 1"}
SKU = {"id": "M6-bolt", "name": "M6 bolt", "unit_weight_g": 4.0, "unit_cost": 0.05}
SUPPLIER = {
    "id": "acme",
    "name": "ACME fasteners",
    "webhook_url": "http://127.0.0.1:9/hook",
}


def bin_body(bin_id: str = "A-01", **over: Any) -> dict[str, Any]:
    """A valid bin referring to SITE, SKU and SUPPLIER."""
    body: dict[str, Any] = {
        "id": bin_id,
        "site_id": SITE["id"],
        "agent_id": "pi-1",
        "channel": f"ch-{bin_id}",
        "sku_id": SKU["id"],
        "supplier_id": SUPPLIER["id"],
        "tare_g": 500.0,
        "capacity": 400,
        "reorder_point": 50,
        "order_qty": 200,
    }
    body.update(over)
    return body


def seed_master(client: httpx.Client, bins: int = 1) -> list[str]:
    """Site, SKU, supplier and ``bins`` bins created through the API; returns the bin ids."""
    for path, body in (
        ("/api/v1/sites", SITE),
        ("/api/v1/skus", SKU),
        ("/api/v1/suppliers", SUPPLIER),
    ):
        r = client.post(path, json=body)
        assert r.status_code == 201, r.text
    ids = [f"A-{i:02d}" for i in range(1, bins + 1)]
    for bin_id in ids:
        r = client.post("/api/v1/bins", json=bin_body(bin_id))
        assert r.status_code == 201, r.text
    return ids


def errors_text(response: httpx.Response) -> str:
    """Every message of an error body, joined (what a human would read)."""
    detail = response.json()["detail"]
    if isinstance(detail, str):
        return detail
    return " | ".join(str(e["msg"]) for e in detail)


def measure(
    ctx: Ctx, bin_id: str, count: int, *, unit_g: float = 4.0, tare_g: float = 500.0
) -> None:
    """Put a bin in the state ingest leaves after a stable reading of ``count`` parts."""
    from jitstock.server.db.models import Bin
    from jitstock.server.db.session import transaction

    with transaction(ctx.session_factory) as s:
        b = s.get(Bin, bin_id)
        assert b is not None
        b.on_hand = count
        b.on_hand_confidence = 1.0
        b.last_grams = tare_g + count * unit_g
        b.last_seen_ms = ctx.clock.time_ms()
