"""The pages behind the signed links of e-mailed purchase orders (suppliers without an API).

``GET /supplier-links/<token>`` shows the order and a small form; ``POST`` to the
same address performs the action through the functions the REST API uses
(:func:`~jitstock.server.api.order_actions.ack_order`,
:func:`~jitstock.server.supplier.shipping.ship_order`), so the rules, audit rows,
transitions and events are the same.  The token is the only credential
(:mod:`jitstock.server.supplier.links`): a tampered or expired one gets a 403
page and changes nothing.  Pages are plain HTML without script or inline style
(the dashboard's CSP applies), never cached, never indexed.

Times on these pages are UTC: the supplier's time zone is not known.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from jitstock.server.api import effects
from jitstock.server.api.deps import CtxDep
from jitstock.server.api.errors import (
    Conflict,
    FieldInvalid,
    NotFound,
    clean_message,
)
from jitstock.server.api.order_actions import (
    ACKABLE_STATES,
    PROMISE_CHANGE_STATES,
    ack_order,
)
from jitstock.server.api.schemas import AckRequest
from jitstock.server.api.supplier_schemas import ShipRequest
from jitstock.server.db.models import Order
from jitstock.server.db.session import transaction
from jitstock.server.supplier import IllegalTransition, InvalidRequest, OrderNotFound
from jitstock.server.supplier.lifecycle import TRANSITIONS
from jitstock.server.supplier.links import (
    ACTOR_PREFIX,
    LinkClaim,
    LinkRefused,
    LinkSigner,
)
from jitstock.server.supplier.po_pdf import utc_text
from jitstock.server.supplier.shipping import outstanding, ship_order
from jitstock.server.webhooks import order_data

router = APIRouter(include_in_schema=False)

# A promise date without a time means midday (UTC): neither end of the day by accident.
DEFAULT_TIME = "12:00"
_NO_STORE = {"cache-control": "no-store"}
SHIPPABLE_STATES = frozenset(s for s, to in TRANSITIONS.items() if "shipped" in to)
REFUSED = {
    "expired": "This link has expired.",
    "tampered": "This link is not valid: it was changed or cut short.",
    "malformed": "This link is not valid: it was changed or cut short.",
}


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="robots" content="noindex">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)} - jitstock</title></head>"
        f"<body><main><h1>{html.escape(title)}</h1>{body}</main></body></html>",
        status_code=status,
        headers=_NO_STORE,
    )


def _p(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


def _signer(ctx: Any) -> LinkSigner | None:
    signer: LinkSigner | None = getattr(ctx, "supplier_links", None)
    return signer


def _summary(data: dict[str, Any]) -> str:
    ship = data.get("ship_to") or {}
    where = ", ".join(
        str(v) for v in (ship.get("name"), ship.get("address"), ship.get("dock")) if v
    )
    rows = [
        ("Order", data["id"]),
        ("Part", f"{data['sku']} {data.get('description') or ''}".strip()),
        ("Your part no.", data.get("supplier_sku") or "-"),
        ("Quantity", f"{data['qty']} {data.get('unit') or ''}".strip()),
        ("Needed by", utc_text(data.get("needed_by_ms"))),
        ("Ship to", f"{where}, bin {data['bin']}" if where else f"bin {data['bin']}"),
        ("State", data["state"]),
        ("Promised", utc_text(data.get("promised_ms"))),
    ]
    cells = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in rows
    )
    return f"<table>{cells}</table>"


def _ack_form(error: str | None = None) -> str:
    return (
        (f'<p role="alert"><strong>{html.escape(error)}</strong></p>' if error else "")
        + '<form method="post">'
        + '<p><label>Promised delivery date (UTC) <input type="date" '
        'name="promised_date" required></label></p>'
        + '<p><label>Time (UTC) <input type="time" name="promised_time" '
        f'value="{DEFAULT_TIME}"></label></p>'
        + '<p><button type="submit">Acknowledge the order</button></p></form>'
    )


def _ship_form(left: int, error: str | None = None) -> str:
    return (
        (f'<p role="alert"><strong>{html.escape(error)}</strong></p>' if error else "")
        + '<form method="post">'
        + '<p><label>Quantity shipped <input type="number" name="qty" min="1" '
        f'value="{left}" required></label></p>'
        + '<p><label>Carrier / tracking reference <input type="text" '
        'name="carrier_ref" maxlength="200"></label></p>'
        + '<p><label>Expected delivery date (UTC, optional) <input type="date" '
        'name="expected_date"></label></p>'
        + '<p><button type="submit">Announce the shipment</button></p></form>'
    )


def _form_for(claim: LinkClaim, order: Order, error: str | None = None) -> str:
    if claim.action == "ack":
        return _ack_form(error)
    return _ship_form(outstanding(order), error)


def _actionable(claim: LinkClaim, order: Order) -> str | None:
    """Why the link's action is no longer possible (None: it is)."""
    if claim.action == "ack":
        if order.state in (*ACKABLE_STATES, *PROMISE_CHANGE_STATES):
            return None
        return f"Order {order.id} is {order.state}: it can no longer be acknowledged."
    if order.state in SHIPPABLE_STATES:
        return None
    return f"Order {order.id} is {order.state}: a shipment can no longer be announced."


def _verify(ctx: Any, token: str) -> LinkClaim | HTMLResponse:
    """The link's claim, or the page refusing it."""
    signer = _signer(ctx)
    if signer is None:
        return _page("Link not available", _p("Links are not enabled."), 404)
    try:
        return signer.verify(token, ctx.clock.time_ms())
    except LinkRefused as exc:
        return _page(
            "Link refused",
            _p(REFUSED[exc.reason])
            + _p(
                "Nothing was changed. Ask your customer for a new purchase order e-mail."
            ),
            403,
        )


def _load(session: Session, order_id: str) -> Order | None:
    return session.get(Order, order_id, populate_existing=True)


@router.get("/supplier-links/{token}", response_class=HTMLResponse)
def link_page(token: str, ctx: CtxDep) -> HTMLResponse:
    """The order and the form of the link's action."""
    claim = _verify(ctx, token)
    if isinstance(claim, HTMLResponse):
        return claim
    with transaction(ctx.session_factory, readonly=True) as s:
        order = _load(s, claim.order_id)
        if order is None:
            return _page("Order not found", _p(f"No order {claim.order_id}."), 404)
        summary = _summary(order_data(s, order))
        blocked = _actionable(claim, order)
        form = "" if blocked else _form_for(claim, order)
    title = "Acknowledge order" if claim.action == "ack" else "Announce shipment"
    if blocked:
        return _page(title, summary + _p(blocked), 409)
    return _page(title, summary + form)


def _utc_ms(date: str, time: str = DEFAULT_TIME) -> int:
    """'YYYY-MM-DD' and 'HH:MM' in UTC as epoch milliseconds (ValueError if not)."""
    stamp = datetime.strptime(f"{date.strip()} {time.strip()}", "%Y-%m-%d %H:%M")
    return int(stamp.replace(tzinfo=UTC).timestamp() * 1000)


@router.post("/supplier-links/{token}", response_class=HTMLResponse)
def link_action(
    token: str,
    ctx: CtxDep,
    promised_date: Annotated[str | None, Form()] = None,
    promised_time: Annotated[str | None, Form()] = None,
    qty: Annotated[str | None, Form()] = None,
    carrier_ref: Annotated[str | None, Form()] = None,
    expected_date: Annotated[str | None, Form()] = None,
) -> HTMLResponse:
    """Perform the link's action with the form's values."""
    claim = _verify(ctx, token)
    if isinstance(claim, HTMLResponse):
        return claim
    title = "Acknowledge order" if claim.action == "ack" else "Announce shipment"
    now = ctx.clock.time_ms()
    try:
        with transaction(ctx.session_factory) as s:
            order = _load(s, claim.order_id)
            if order is None:
                raise NotFound("order", claim.order_id)
            actor = ACTOR_PREFIX + order.supplier_id
            if claim.action == "ack":
                ack = _checked(
                    AckRequest,
                    promised_ms=_promise(promised_date, promised_time),
                )
                order = ack_order(s, order.id, ack.promised_ms, actor, now)
                done = (
                    f"Order {order.id} is acknowledged, delivery promised for "
                    f"{utc_text(order.promised_ms)}. Thank you."
                )
            else:
                notice = _checked(
                    ShipRequest,
                    qty=_quantity(qty),
                    expected_ms=_expected(expected_date),
                    carrier_ref=(carrier_ref or "").strip() or None,
                )
                order = ship_order(
                    s,
                    order.id,
                    qty=notice.qty,
                    expected_ms=notice.expected_ms,
                    carrier_ref=notice.carrier_ref,
                    actor=actor,
                    now_ms=now,
                )
                done = (
                    f"Order {order.id}: shipment of {order.asn_qty} announced. "
                    "Thank you."
                )
            summary = _summary(order_data(s, order))
    except (FieldInvalid, InvalidRequest) as exc:
        return _refill(ctx, claim, title, str(exc))
    except (Conflict, IllegalTransition) as exc:
        return _page(title, _p(str(exc)) + _p("Nothing was changed."), 409)
    except (NotFound, OrderNotFound):
        return _page("Order not found", _p(f"No order {claim.order_id}."), 404)
    effects.supply_changed(ctx)  # its lifecycle events go out now
    return _page(title, _p(done) + summary)


def _refill(ctx: Any, claim: LinkClaim, title: str, error: str) -> HTMLResponse:
    """The form again, with what was wrong (422)."""
    with transaction(ctx.session_factory, readonly=True) as s:
        order = _load(s, claim.order_id)
        if order is None:
            return _page("Order not found", _p(f"No order {claim.order_id}."), 404)
        body = _summary(order_data(s, order)) + _form_for(claim, order, error)
    return _page(title, body, 422)


M = TypeVar("M", bound=BaseModel)
# the request model's field -> the form's field that fills it
_FORM_FIELD = {"promised_ms": "promised_date", "expected_ms": "expected_date"}


def _checked(model: type[M], **values: Any) -> M:
    """The form's values through the API's own request model (POST /orders/{id}/ack,
    /ship): the same bounds and text rules; the first problem as a FieldInvalid of the
    form's field (the page shows the form again, nothing changed)."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        problem = exc.errors(include_input=False)[0]
        name = str(problem["loc"][0]) if problem["loc"] else "form"
        raise FieldInvalid(
            _FORM_FIELD.get(name, name), clean_message(problem["msg"])
        ) from None


def _promise(date: str | None, time: str | None) -> int:
    if not date:
        raise FieldInvalid("promised_date", "a promised delivery date is required")
    try:
        return _utc_ms(date, time or DEFAULT_TIME)
    except ValueError as exc:
        raise FieldInvalid(
            "promised_date", f"{date} {time or ''} is not a date and time"
        ) from exc


def _quantity(text: str | None) -> int | None:
    if text is None or not text.strip():
        return None
    # digits only: int() would also take '1_0', '+5', ' 7 ' inside and non-ASCII digits
    if not re.fullmatch(r"[0-9]+", text.strip()):
        raise FieldInvalid("qty", f"{text!r} is not a whole number")
    return int(text.strip())  # its bounds: ShipRequest's


def _expected(date: str | None) -> int | None:
    if not date or not date.strip():
        return None
    try:
        return _utc_ms(date)
    except ValueError as exc:
        raise FieldInvalid("expected_date", f"{date} is not a date") from exc
