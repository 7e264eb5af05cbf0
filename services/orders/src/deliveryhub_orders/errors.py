"""The orders service's errors; `deliveryhub_kit.http_errors` maps them to HTTP."""

from __future__ import annotations

from deliveryhub_kit.errors import Conflict, NotFound


class OrderNotFound(NotFound):
    code = "order_not_found"


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"
