"""Event handlers of the orders service: each turns one message into one service call."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from deliveryhub_contracts.events import DeliveryAppointed, DeliveryCanceled, DeliveryFinished
from deliveryhub_contracts.topology import ORDERS_DELIVERY_EVENTS, Names
from deliveryhub_kit.consumer import EventRoute, InboxConsumer, route
from deliveryhub_kit.runtime import ServiceRuntime
from deliveryhub_orders.models import InboxMessage
from deliveryhub_orders.service import order_service


async def on_delivery_appointed(session: AsyncSession, event: DeliveryAppointed) -> None:
    await order_service(session).on_delivery_appointed(event)


async def on_delivery_finished(session: AsyncSession, event: DeliveryFinished) -> None:
    await order_service(session).on_delivery_finished(event)


async def on_delivery_canceled(session: AsyncSession, event: DeliveryCanceled) -> None:
    await order_service(session).on_delivery_canceled(event)


DELIVERY_EVENT_ROUTES: dict[str, EventRoute] = {
    "delivery.appointed": route(DeliveryAppointed, on_delivery_appointed),
    "delivery.finished": route(DeliveryFinished, on_delivery_finished),
    "delivery.canceled": route(DeliveryCanceled, on_delivery_canceled),
}


def build_consumers(runtime: ServiceRuntime) -> Sequence[InboxConsumer]:
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
            prefetch=runtime.settings.consumer_prefetch,
            batch_size=runtime.settings.consumer_batch_size,
            lanes=runtime.settings.consumer_lanes,
            max_message_bytes=runtime.settings.max_message_bytes,
            retry_delays=runtime.settings.retry_delays_seconds,
            outage_hold_seconds=runtime.settings.consumer_outage_hold_seconds,
            metrics=runtime.metrics,
        )
    ]
