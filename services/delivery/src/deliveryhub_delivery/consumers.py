"""Event handlers of the delivery service: each turns one message into one service call."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from pydantic import BaseModel

from deliveryhub_contracts.events import OrderCanceled, OrderCancelRequested, OrderCreated, OrderPaid
from deliveryhub_contracts.legacy import LegacyOrderCreated, LegacyOrderPaid
from deliveryhub_contracts.topology import DELIVERY_ORDER_EVENTS, Names, legacy_queues
from deliveryhub_delivery.models import InboxMessage
from deliveryhub_delivery.repository import SqlDeliveryRepository
from deliveryhub_delivery.service import delivery_service
from deliveryhub_delivery.settings import DeliverySettings
from deliveryhub_kit.consumer import (
    ConsumerOptions,
    Decoder,
    InboxConsumer,
    Route,
    Routes,
    event_routes,
    plain_json_decoder,
)
from deliveryhub_kit.runtime import ServiceRuntime
from deliveryhub_kit.unit_of_work import UnitOfWork

# Legacy messages carry no id: their ids are derived from their content in this namespace.
LEGACY_NAMESPACE = uuid.UUID("6f1c2a8e-3b7d-4e0a-9d51-2c4b8f7a1e30")


async def on_order_created(work: UnitOfWork, event: OrderCreated) -> None:
    await delivery_service(work).on_order_created(event)


async def on_order_paid(work: UnitOfWork, event: OrderPaid) -> None:
    await delivery_service(work).on_order_paid(event)


async def on_order_canceled(work: UnitOfWork, event: OrderCanceled) -> None:
    await delivery_service(work).on_order_canceled(event)


async def on_order_cancel_requested(work: UnitOfWork, event: OrderCancelRequested) -> None:
    await delivery_service(work).on_order_cancel_requested(event)


async def on_legacy_order_created(work: UnitOfWork, message: LegacyOrderCreated) -> None:
    await delivery_service(work).on_legacy_order_created(message)


async def on_legacy_order_paid(work: UnitOfWork, message: LegacyOrderPaid) -> None:
    await delivery_service(work).on_legacy_order_paid(message)


async def lock_deliveries(work: UnitOfWork, payloads: Sequence[BaseModel]) -> None:
    """Lock, in one query, the deliveries of the orders a batch of events is about."""
    await SqlDeliveryRepository(work).lock_many(order_id(payload) for payload in payloads)


def order_id(payload: BaseModel) -> uuid.UUID:
    if isinstance(payload, LegacyOrderPaid):
        return payload.id
    if isinstance(
        payload, OrderCreated | OrderPaid | OrderCanceled | OrderCancelRequested | LegacyOrderCreated
    ):
        return payload.order_id
    raise TypeError(f"no order id in {type(payload).__name__}")


ORDER_EVENT_ROUTES = event_routes(
    on_order_created, on_order_paid, on_order_canceled, on_order_cancel_requested
)


def build_consumers(runtime: ServiceRuntime[DeliverySettings]) -> Sequence[InboxConsumer]:
    """The order-events consumer, and the legacy queues' when a legacy prefix is set."""
    settings = runtime.settings
    names = Names(settings.broker_prefix)
    options = ConsumerOptions.from_settings(settings)

    def consumer(name: str, queue: str, routes: Routes, decoder: Decoder | None = None) -> InboxConsumer:
        return InboxConsumer(
            name=name,
            queue=queue,
            dead_letter_queue=names.dead_letter_queue(queue),
            database=runtime.database,
            broker=runtime.broker,
            inbox_model=InboxMessage,
            routes=routes,
            decoder=decoder,
            prepare_batch=lock_deliveries,
            options=options,
            metrics=runtime.metrics,
        )

    consumers = [consumer("order-events", names.queue(DELIVERY_ORDER_EVENTS), ORDER_EVENT_ROUTES)]
    if settings.legacy_queue_prefix:
        created_queue, paid_queue = legacy_queues(settings.legacy_queue_prefix)
        consumers.append(
            consumer(
                created_queue,
                created_queue,
                {"legacy.order_created": Route(LegacyOrderCreated, on_legacy_order_created)},
                plain_json_decoder("legacy.order_created", LegacyOrderCreated, LEGACY_NAMESPACE),
            )
        )
        consumers.append(
            consumer(
                paid_queue,
                paid_queue,
                {"legacy.order_paid": Route(LegacyOrderPaid, on_legacy_order_paid)},
                plain_json_decoder("legacy.order_paid", LegacyOrderPaid, LEGACY_NAMESPACE),
            )
        )
    return consumers
