"""The lean yardstick: `POST /api/orders` with nothing around the two writes it must make.

The same pydantic validation of the body as the orders service, the order row and its
`order.created` outbox row (a CloudEvent, as the service writes it) in one transaction on asyncpg,
the created order as JSON. No ORM, no middleware, no authentication, no relay: the ceiling the
orders service is measured against. The bench starts it on its own port and scratch database:
`python -m uvicorn --factory deliveryhub_cli.bench.yardstick:create_app`, with
`YARDSTICK_DATABASE_URL` naming the database (a migrated orders schema).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import Response

from deliveryhub_contracts.events import ORDERS_SOURCE, OrderCreated, make_envelope
from deliveryhub_kit.app import NO_FRAMEWORK_TELEMETRY
from deliveryhub_orders.schemas import OrderCreate

# At most the services' own pool, opened as the load asks for it (as theirs is): a pool opened
# whole at start-up takes connections that other clients of the server may need.
POOL_SIZE = 20

_INSERT_ORDER = (
    "INSERT INTO orders (id, customer_id, address, date, items, total, status, version,"
    " courier_version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 'created', 1, 0, $7, $7)"
)
_INSERT_EVENT = (
    "INSERT INTO outbox (event_id, routing_key, body, created_at, next_attempt_at, attempts)"
    " VALUES ($1, $2, $3, $4, $4, 0)"
)


def create_app() -> FastAPI:
    url = os.environ["YARDSTICK_DATABASE_URL"]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await asyncpg.create_pool(url, min_size=1, max_size=POOL_SIZE)
        try:
            yield
        finally:
            await app.state.pool.close()

    # No telemetry of the framework's either, as the services are built.
    app = FastAPI(lifespan=lifespan, openapi_url=None, telemetry=NO_FRAMEWORK_TELEMETRY)

    @app.post("/api/orders", status_code=201)
    async def place_order(body: OrderCreate, request: Request) -> Response:
        now = datetime.now(UTC)
        order_id, customer_id = uuid.uuid4(), uuid.uuid4()
        items = [{"name": i.name, "quantity": i.quantity, "price": str(i.price)} for i in body.items]
        total = sum((i.price * i.quantity for i in body.items), Decimal(0))
        event = OrderCreated(
            order_id=order_id,
            customer_id=customer_id,
            address=body.address,
            date=body.date,
            total=total,
            version=1,
        )
        envelope = make_envelope(event, source=ORDERS_SOURCE, subject=str(order_id), time=now)
        async with request.app.state.pool.acquire() as connection, connection.transaction():
            await connection.execute(
                _INSERT_ORDER, order_id, customer_id, body.address, body.date, json.dumps(items), total, now
            )
            await connection.execute(
                _INSERT_EVENT, envelope.id, envelope.routing_key, envelope.to_json().decode(), now
            )
        document = {
            "id": str(order_id),
            "customer_id": str(customer_id),
            "address": body.address,
            "date": body.date.isoformat(),
            "items": items,
            "total": float(total),
            "status": "created",
            "created_at": now.isoformat(),
        }
        return Response(json.dumps(document), status_code=201, media_type="application/json")

    return app
