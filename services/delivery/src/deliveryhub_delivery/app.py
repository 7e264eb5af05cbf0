"""The delivery service's app factory: `uvicorn --factory deliveryhub_delivery.app:create_app`."""

from __future__ import annotations

from fastapi import FastAPI

from deliveryhub_contracts.topology import DELIVERY_ORDER_EVENTS, Names, legacy_queues
from deliveryhub_delivery import api
from deliveryhub_delivery.__main__ import MIGRATIONS
from deliveryhub_delivery.consumers import build_consumers
from deliveryhub_delivery.models import InboxMessage, OutboxMessage
from deliveryhub_delivery.settings import DeliverySettings
from deliveryhub_kit.app import build_app
from deliveryhub_kit.broker import Broker, Topology
from deliveryhub_kit.runtime import ServiceRuntime, Wiring
from deliveryhub_kit.topology import legacy_topology, service_topology


def topologies(settings: DeliverySettings) -> list[Topology]:
    names = Names(settings.broker_prefix)
    delays = settings.retry_delays_seconds
    declared = [service_topology(names, consumes=DELIVERY_ORDER_EVENTS, retry_delays=delays)]
    if settings.legacy_queue_prefix:
        declared.append(legacy_topology(legacy_queues(settings.legacy_queue_prefix), retry_delays=delays))
    return declared


def create_app(settings: DeliverySettings | None = None, *, broker: Broker | None = None) -> FastAPI:
    """Build the delivery service; nothing connects until the app starts."""
    settings = settings or DeliverySettings()
    wiring = Wiring(
        outbox_model=OutboxMessage,
        inbox_model=InboxMessage,
        topologies=topologies(settings),
        consumers=build_consumers,
        migrations=MIGRATIONS,
    )
    runtime = ServiceRuntime(settings, wiring, broker=broker)
    return build_app(
        title="Delivery Hub: delivery",
        description="Deliveries and couriers: appoint a courier, mark an order delivered.",
        runtime=runtime,
        routers=[api.router],
    )
