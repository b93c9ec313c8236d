"""The first attempt of the orders one ingest flush created, claimed in that flush's
transaction with a few statements for all of them.

:meth:`jitstock.server.dispatch.Dispatcher.claim_created` calls :func:`claim_new`.
The claim is the dispatcher's (see :mod:`jitstock.server.dispatch`, step 1): the
order's ``attempts`` goes from n−1 to n only if it still is n−1 (compare-and-set),
``next_attempt_ms`` moves out by the claim lease, attempt row n is inserted, and the
job carries the signed body's input.  Here it is done set-wise: one select of the
orders, one UPDATE per distinct previous attempt count (one, for new orders), one
executemany of attempt rows; the suppliers and the bodies' look-ups
(:func:`jitstock.server.webhooks.new_order_bodies`) come from the catalogue
generation's cache (:mod:`jitstock.server.catalog_cache`).
"""

from __future__ import annotations

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from jitstock.server import catalog_cache
from jitstock.server.db.models import Order, OrderAttempt
from jitstock.server.db.session import is_postgresql
from jitstock.server.driver_sql import Prepared
from jitstock.server.order_attempt import Job
from jitstock.server.supplier.email_channel import email_recipient
from jitstock.server.webhooks import new_order_bodies, previous_secret

_ORDER_COLUMNS = tuple(Order.__table__.c)
_DUE = (
    select(*_ORDER_COLUMNS)
    .where(
        Order.id.in_(bindparam("ids", expanding=True)),
        Order.state == "created",
        Order.next_attempt_ms <= bindparam("now"),
    )
    .order_by(Order.next_attempt_ms, Order.id)
)
# PostgreSQL: another process's claim of the same row is skipped, not waited for
_DUE_LOCKED = _DUE.with_for_update(skip_locked=True)
_CLAIM_STMT = (
    update(Order)
    .where(
        Order.id.in_(bindparam("ids", expanding=True)),
        Order.state == "created",
        Order.attempts == bindparam("was"),
    )
    .values(attempts=bindparam("n"), next_attempt_ms=bindparam("due"))
    .execution_options(synchronize_session=False)
)
_CLAIMED_STMT = select(Order.id).where(
    Order.id.in_(bindparam("ids", expanding=True)),
    Order.attempts == bindparam("n"),
    Order.next_attempt_ms == bindparam("due"),
)
# the claim's writes run as driver SQL (no JSON; see driver_sql)
_CLAIM = Prepared(_CLAIM_STMT, ["ids"])
_CLAIMED = Prepared(_CLAIMED_STMT, ["ids"])
# the first attempt's body, kept for every retry (same webhook-id, same bytes)
_KEEP_BODY = Prepared(
    update(Order)
    .where(Order.id == bindparam("oid"), Order.created_body.is_(None))
    .values(created_body=bindparam("body"))
    .execution_options(synchronize_session=False)
)
_ATTEMPT = Prepared(
    insert(OrderAttempt.__table__).values(  # type: ignore[arg-type]
        order_id=bindparam("order_id"), n=bindparam("n"), at_ms=bindparam("at_ms")
    )
)


def claim_new(
    s: Session,
    order_ids: list[str],
    now_ms: int,
    lease_ms: int,
    mqtt_enabled: bool,
) -> list[Job]:
    """Claim the next attempt of these due orders in the caller's transaction; the jobs."""
    if not order_ids:
        return []
    s.flush()
    conn = s.connection()
    stmt = _DUE_LOCKED if is_postgresql(s) else _DUE
    rows = conn.execute(stmt, {"ids": sorted(set(order_ids)), "now": now_ms}).all()
    if not rows:
        return []
    due = now_ms + lease_ms
    by_attempts: dict[int, list[str]] = {}
    for r in rows:
        by_attempts.setdefault(r.attempts, []).append(r.id)
    claimed: set[str] = set()
    for was, ids in by_attempts.items():
        params = {"ids": ids, "was": was, "n": was + 1, "due": due}
        done = _CLAIM.execute(conn, params)
        if done.rowcount == len(ids):
            claimed.update(ids)
        else:  # some moved meanwhile (cannot, under our locks): claimed only what we set
            check = {"ids": ids, "n": was + 1, "due": due}
            claimed.update(_CLAIMED.execute(conn, check).scalars())
    rows = [r for r in rows if r.id in claimed]
    if not rows:
        return []
    _ATTEMPT.executemany(
        conn, [{"order_id": r.id, "n": r.attempts + 1, "at_ms": now_ms} for r in rows]
    )
    # this catalogue generation's supplier rows (see catalog_cache)
    suppliers = catalog_cache.suppliers(conn, (r.supplier_id for r in rows))
    fresh = [r for r in rows if r.created_body is None]
    bodies = new_order_bodies(s, fresh) if fresh else {}
    if fresh:
        _KEEP_BODY.executemany(
            conn, [{"oid": r.id, "body": bodies[r.id]} for r in fresh]
        )
    for r in rows:
        if r.created_body is not None:
            bodies[r.id] = bytes(r.created_body)
    jobs = []
    for r in rows:
        supplier = suppliers.get(r.supplier_id)
        jobs.append(
            Job(
                order_id=r.id,
                n=r.attempts + 1,
                site_id=r.site_id,
                bin_id=r.bin_id,
                supplier_id=r.supplier_id,
                body=bodies[r.id],
                webhook_url=supplier.webhook_url if supplier else None,
                webhook_secret=supplier.webhook_secret if supplier else None,
                previous_secret=previous_secret(supplier, now_ms),
                email_to=email_recipient(supplier),
                mqtt=bool(supplier and supplier.mqtt_orders and mqtt_enabled),
            )
        )
    return jobs
