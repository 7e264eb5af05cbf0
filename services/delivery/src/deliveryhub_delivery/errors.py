"""The delivery service's errors; `deliveryhub_kit.http_errors` maps them to HTTP."""

from __future__ import annotations

from deliveryhub_kit.errors import InvalidInput, NotFound


class DeliveryNotFound(NotFound):
    code = "delivery_not_found"


class UnknownDeliveryman(InvalidInput):
    code = "unknown_deliveryman"
