"""Use cases of the delivery service; free of HTTP and of the broker."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from deliveryhub_contracts.events import (
    DELIVERY_SOURCE,
    DeliveryAppointed,
    DeliveryCanceled,
    DeliveryFinished,
    OrderCanceled,
    OrderCancelRequested,
    OrderCreated,
    OrderPaid,
)
from deliveryhub_contracts.events import Deliveryman as DeliverymanPayload
from deliveryhub_contracts.legacy import LegacyOrderCreated, LegacyOrderPaid
from deliveryhub_delivery import domain
from deliveryhub_delivery.domain import DeliveryView, OrderChange, OrderFacts
from deliveryhub_delivery.errors import DeliveryNotFound, UnknownDeliveryman
from deliveryhub_delivery.models import Delivery, Deliveryman, OutboxMessage
from deliveryhub_delivery.repository import DeliveryQuery, SqlDeliveryRepository
from deliveryhub_kit.db import utcnow
from deliveryhub_kit.identity import Principal, Role
from deliveryhub_kit.lists import Page
from deliveryhub_kit.outbox import EventSink, Outbox
from deliveryhub_kit.unit_of_work import UnitOfWork

# A delivery as read for a route: loaded to change it, or a plain row to show it.
Shown = TypeVar("Shown", Delivery, DeliveryView)

MANAGER_CANCEL_REASON = "canceled by the shop manager"


class DeliveryRepository(Protocol):
    async def get(self, delivery_id: uuid.UUID, *, for_update: bool = False) -> Delivery | None: ...
    async def read(self, delivery_id: uuid.UUID) -> DeliveryView | None: ...
    def add(self, delivery: Delivery) -> None: ...
    async def list(self, query: DeliveryQuery, *, limit: int, offset: int) -> Page[DeliveryView]: ...
    async def open_deliveries(self) -> dict[uuid.UUID, int]: ...
    async def get_deliveryman(self, deliveryman_id: uuid.UUID) -> Deliveryman | None: ...
    async def list_deliverymen(self) -> Sequence[Deliveryman]: ...


class DeliveryService:
    def __init__(
        self,
        deliveries: DeliveryRepository,
        events: EventSink,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._deliveries = deliveries
        self._events = events
        self._clock = clock

    async def list_deliveries(
        self, principal: Principal, query: DeliveryQuery | None = None, *, limit: int = 100, offset: int = 0
    ) -> Page[DeliveryView]:
        """Every delivery for a manager; a courier sees only the ones appointed to them."""
        query = query or DeliveryQuery()
        if principal.role is Role.COURIER:
            if query.deliveryman_id not in (None, principal.deliveryman_id):
                return Page((), 0)
            query = replace(query, deliveryman_id=principal.deliveryman_id)
        return await self._deliveries.list(query, limit=limit, offset=offset)

    async def get_delivery(self, principal: Principal, delivery_id: uuid.UUID) -> DeliveryView:
        """The delivery as shown, if the caller may see it (read, never locked)."""
        return _shown(principal, delivery_id, await self._deliveries.read(delivery_id))

    async def appoint_deliveryman(self, delivery_id: uuid.UUID, deliveryman_id: uuid.UUID) -> Delivery:
        delivery = await self._existing(delivery_id)
        deliveryman = await self._deliveries.get_deliveryman(deliveryman_id)
        if deliveryman is None:
            raise UnknownDeliveryman(f"there is no courier with id {deliveryman_id}")
        domain.appoint(delivery, deliveryman, self._clock())
        self._events.emit(
            DeliveryAppointed(
                order_id=delivery.id,
                deliveryman=DeliverymanPayload(id=deliveryman.id, name=deliveryman.name),
                version=delivery.version,
            ),
            subject=str(delivery.id),
        )
        return delivery

    async def finish_delivery(self, principal: Principal, delivery_id: uuid.UUID) -> Delivery:
        """The appointed courier (or a manager) marks the delivery done."""
        delivery = await self._visible(principal, delivery_id, for_update=True)
        now = self._clock()
        domain.finish(delivery, now)
        assert delivery.deliveryman_id is not None
        self._events.emit(
            DeliveryFinished(
                order_id=delivery.id,
                deliveryman_id=delivery.deliveryman_id,
                finished_at=now,
                version=delivery.version,
            ),
            subject=str(delivery.id),
        )
        return delivery

    async def cancel_delivery(self, delivery_id: uuid.UUID, reason: str = MANAGER_CANCEL_REASON) -> Delivery:
        delivery = await self._existing(delivery_id)
        domain.cancel(delivery, reason, self._clock())
        self._announce_canceled(delivery, reason)
        return delivery

    def _announce_canceled(self, delivery: Delivery, reason: str) -> None:
        self._events.emit(
            DeliveryCanceled(order_id=delivery.id, reason=reason, version=delivery.version),
            subject=str(delivery.id),
        )

    async def list_deliverymen(self) -> Sequence[tuple[Deliveryman, int]]:
        """The couriers, each with how many deliveries they have appointed and open."""
        open_deliveries = await self._deliveries.open_deliveries()
        return [(man, open_deliveries.get(man.id, 0)) for man in await self._deliveries.list_deliverymen()]

    async def on_order_created(self, event: OrderCreated) -> None:
        await self._absorb(_snapshot_facts(event, OrderChange.CREATED))

    async def on_order_paid(self, event: OrderPaid) -> None:
        await self._absorb(_snapshot_facts(event, OrderChange.PAID))

    async def on_order_canceled(self, event: OrderCanceled) -> None:
        await self._absorb(
            OrderFacts(event.order_id, OrderChange.CANCELED, version=event.version, reason=event.reason)
        )

    async def on_order_cancel_requested(self, event: OrderCancelRequested) -> None:
        """Cancel the delivery unless it is done; the orders service hears which from its events."""
        facts = OrderFacts(
            event.order_id, OrderChange.CANCEL_REQUESTED, version=event.version, reason=event.reason
        )
        delivery = await self._absorb(facts)
        if delivery is not None:
            self._announce_canceled(delivery, event.reason)

    async def on_legacy_order_created(self, message: LegacyOrderCreated) -> None:
        date = message.date if message.date.tzinfo else message.date.replace(tzinfo=UTC)
        await self._absorb(
            OrderFacts(message.order_id, OrderChange.CREATED, address=message.address, date=date)
        )

    async def on_legacy_order_paid(self, message: LegacyOrderPaid) -> None:
        await self._absorb(OrderFacts(message.id, OrderChange.PAID))

    async def _absorb(self, facts: OrderFacts) -> Delivery | None:
        """Apply an order event; the delivery when it canceled it on the order's request."""
        now = self._clock()
        delivery = await self._deliveries.get(facts.order_id, for_update=True)
        if delivery is None:
            delivery = domain.new_delivery(facts.order_id, now)
            self._deliveries.add(delivery)
        return delivery if domain.absorb_order_facts(delivery, facts, now) else None

    async def _existing(self, delivery_id: uuid.UUID) -> Delivery:
        delivery = await self._deliveries.get(delivery_id, for_update=True)
        if delivery is None or delivery.awaits_snapshot:
            raise DeliveryNotFound(f"there is no delivery {delivery_id}")
        return delivery

    async def _visible(
        self, principal: Principal, delivery_id: uuid.UUID, *, for_update: bool = False
    ) -> Delivery:
        """The delivery, if the caller may see it: a courier sees only their own."""
        return _shown(principal, delivery_id, await self._deliveries.get(delivery_id, for_update=for_update))


def _shown(principal: Principal, delivery_id: uuid.UUID, delivery: Shown | None) -> Shown:
    """The delivery if the caller may see it: never a placeholder, and a courier only their own."""
    is_courier = principal.role is Role.COURIER
    if (
        delivery is None
        or delivery.awaits_snapshot
        or (is_courier and delivery.deliveryman_id != principal.deliveryman_id)
    ):
        # Word for word the same whether it exists or is another's: a courier cannot probe ids.
        raise DeliveryNotFound(
            f"there is no delivery {delivery_id}{' appointed to you' if is_courier else ''}"
        )
    return delivery


def _snapshot_facts(event: OrderCreated | OrderPaid, change: OrderChange) -> OrderFacts:
    return OrderFacts(
        event.order_id,
        change,
        version=event.version,
        address=event.address,
        date=event.date,
        customer_id=event.customer_id,
    )


def delivery_service(work: UnitOfWork) -> DeliveryService:
    """The service over one transaction: SQL repository, events into the outbox."""
    return DeliveryService(SqlDeliveryRepository(work), Outbox(work, OutboxMessage, DELIVERY_SOURCE))
