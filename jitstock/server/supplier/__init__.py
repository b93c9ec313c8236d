"""The supplier loop (issue 5): order lifecycle, receiving, inspection, escalation, scorecards.

Error tree (translated to HTTP only in the API layer)::

    SupplyError                 anything this package refuses on purpose
    ├── OrderNotFound           no such order (or not visible to this supplier)
    ├── IllegalTransition       the order's state forbids the request (HTTP 409)
    └── InvalidRequest          a value is wrong for this order (HTTP 422)
"""

from __future__ import annotations


class SupplyError(Exception):
    """Base of the supplier loop's refusals."""


class OrderNotFound(SupplyError):
    """No such order (or one the caller may not see)."""

    def __init__(self, order_id: str) -> None:
        super().__init__(f"order {order_id!r} not found")
        self.order_id = order_id


class IllegalTransition(SupplyError):
    """The order's current state does not allow the requested change."""


class InvalidRequest(SupplyError):
    """A value does not fit the order (e.g. more rejected than received)."""

    def __init__(self, field: str, message: str, *, where: str = "body") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.where = where  # where the request carried the value: body, query, header
