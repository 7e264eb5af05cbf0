"""Event handlers of the orders service: each turns one message into one service call."""

from __future__ import annotations

from collections.abc import Sequence

from deliveryhub_contracts.events import DeliveryAppointed, DeliveryCanceled, DeliveryFinished
from deliveryhub_contracts.topology import ORDERS_DELIVERY_EVENTS, Names
from deliveryhub_kit.consumer import ConsumerOptions, InboxConsumer, event_routes
from deliveryhub_kit.runtime import ServiceRuntime
from deliveryhub_kit.unit_of_work import UnitOfWork
from deliveryhub_orders.models import InboxMessage
from deliveryhub_orders.service import order_service


async def on_delivery_appointed(work: UnitOfWork, event: DeliveryAppointed) -> None:
    await order_service(work).on_delivery_appointed(event)


async def on_delivery_finished(work: UnitOfWork, event: DeliveryFinished) -> None:
    await order_service(work).on_delivery_finished(event)


async def on_delivery_canceled(work: UnitOfWork, event: DeliveryCanceled) -> None:
    await order_service(work).on_delivery_canceled(event)


DELIVERY_EVENT_ROUTES = event_routes(on_delivery_appointed, on_delivery_finished, on_delivery_canceled)


def build_consumers(runtime: ServiceRuntime) -> Sequence[InboxConsumer]:
    """The delivery-events consumer."""
    names = Names(runtime.settings.broker_prefix)
    queue = names.queue(ORDERS_DELIVERY_EVENTS)
    return [
        InboxConsumer(
            name="delivery-events",
            queue=queue,
            dead_letter_queue=names.dead_letter_queue(queue),
            database=runtime.database,
            broker=runtime.broker,
            inbox_model=InboxMessage,
            routes=DELIVERY_EVENT_ROUTES,
            options=ConsumerOptions.from_settings(runtime.settings),
            metrics=runtime.metrics,
        )
    ]
