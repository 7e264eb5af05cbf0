"""The orders service's app factory: `uvicorn --factory deliveryhub_orders.app:create_app`."""

from __future__ import annotations

from fastapi import FastAPI

from deliveryhub_contracts.topology import ORDERS_DELIVERY_EVENTS, Names
from deliveryhub_kit.app import build_app
from deliveryhub_kit.broker import Broker
from deliveryhub_kit.runtime import ServiceRuntime, Wiring
from deliveryhub_kit.topology import service_topology
from deliveryhub_orders import api
from deliveryhub_orders.__main__ import MIGRATIONS
from deliveryhub_orders.consumers import build_consumers
from deliveryhub_orders.models import InboxMessage, OutboxMessage
from deliveryhub_orders.settings import OrdersSettings


def create_app(settings: OrdersSettings | None = None, *, broker: Broker | None = None) -> FastAPI:
    """Build the orders service; nothing connects until the app starts."""
    settings = settings or OrdersSettings()
    topology = service_topology(
        Names(settings.broker_prefix),
        consumes=ORDERS_DELIVERY_EVENTS,
        retry_delays=settings.retry_delays_seconds,
    )
    wiring = Wiring(
        outbox_model=OutboxMessage,
        inbox_model=InboxMessage,
        topologies=[topology],
        consumers=build_consumers,
        migrations=MIGRATIONS,
    )
    return build_app(
        title="Delivery Hub: orders",
        description="Customers place, pay and cancel orders and follow their delivery.",
        runtime=ServiceRuntime(settings, wiring, broker=broker),
        routers=[api.router],
    )
