"""In-memory stand-ins for the services' repositories and event sinks, for unit tests of the service layer."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence

from deliveryhub_contracts.events import Payload
from deliveryhub_delivery.domain import Courier, DeliveryStatus, DeliveryView
from deliveryhub_delivery.models import Delivery, Deliveryman
from deliveryhub_delivery.repository import DeliveryQuery
from deliveryhub_kit.lists import Page, Sort
from deliveryhub_orders.models import IdempotencyRecord, Order
from deliveryhub_orders.repository import OrderQuery
from tests.support import couriers

# The seeded couriers as the delivery service's rows.
LAPTEV = Deliveryman(id=couriers.LAPTEV.id, name=couriers.LAPTEV.name)
ZUEV = Deliveryman(id=couriers.ZUEV.id, name=couriers.ZUEV.name)


def _view(delivery: Delivery) -> DeliveryView:
    man = delivery.deliveryman
    return DeliveryView.of(delivery, Courier(man.id, man.name) if man else None)


class FakeDeliveryRepository:
    """Deliveries and couriers in dictionaries, with the SQL repository's visible behaviour."""

    def __init__(self, deliverymen: Sequence[Deliveryman] = ()) -> None:
        self.deliveries: dict[uuid.UUID, Delivery] = {}
        self.deliverymen = {man.id: man for man in deliverymen}

    async def get(self, delivery_id: uuid.UUID, *, for_update: bool = False) -> Delivery | None:
        return self.deliveries.get(delivery_id)

    async def read(self, delivery_id: uuid.UUID) -> DeliveryView | None:
        delivery = self.deliveries.get(delivery_id)
        return None if delivery is None else _view(delivery)

    def add(self, delivery: Delivery) -> None:
        self.deliveries[delivery.id] = delivery

    async def list(self, query: DeliveryQuery, *, limit: int, offset: int) -> Page[DeliveryView]:
        found = [
            delivery
            for delivery in self.deliveries.values()
            if delivery.address is not None
            and (query.status is None or delivery.status == query.status)
            and (query.deliveryman_id is None or delivery.deliveryman_id == query.deliveryman_id)
            and not (query.unassigned and delivery.deliveryman_id is not None)
        ]
        newest_first = query.sort is Sort.NEWEST
        found.sort(key=lambda delivery: (-delivery.created_at.timestamp(), delivery.id))
        if not newest_first:
            found.sort(key=lambda delivery: (delivery.created_at.timestamp(), delivery.id))
        return Page([_view(delivery) for delivery in found[offset : offset + limit]], len(found))

    async def open_deliveries(self) -> dict[uuid.UUID, int]:
        return dict(
            Counter(
                delivery.deliveryman_id
                for delivery in self.deliveries.values()
                if delivery.status == DeliveryStatus.ACTIVATED and delivery.deliveryman_id is not None
            )
        )

    async def get_deliveryman(self, deliveryman_id: uuid.UUID) -> Deliveryman | None:
        return self.deliverymen.get(deliveryman_id)

    async def list_deliverymen(self) -> Sequence[Deliveryman]:
        return sorted(self.deliverymen.values(), key=lambda man: man.name)


class FakeOrderRepository:
    """Orders and idempotency keys in dictionaries, with the SQL repository's visible behaviour."""

    def __init__(self) -> None:
        self.orders: dict[uuid.UUID, Order] = {}
        self.keys: dict[tuple[uuid.UUID, str], IdempotencyRecord] = {}

    async def get(self, order_id: uuid.UUID, *, for_update: bool = False) -> Order | None:
        return self.orders.get(order_id)

    async def list(self, query: OrderQuery, *, limit: int, offset: int) -> Page[Order]:
        search = query.search
        found = [
            order
            for order in self.orders.values()
            if (query.customer_id is None or order.customer_id == query.customer_id)
            and (query.status is None or order.status == query.status)
            and (search is None or order.id.hex.startswith(search.id_prefix or "-"))
        ]
        found.sort(key=lambda order: (-order.created_at.timestamp(), order.id))
        return Page(found[offset : offset + limit], len(found))

    async def get_idempotency_record(self, customer_id: uuid.UUID, key: str) -> IdempotencyRecord | None:
        return self.keys.get((customer_id, key))

    async def add(self, order: Order, record: IdempotencyRecord | None) -> bool:
        if record is not None:
            if (record.customer_id, record.key) in self.keys:
                return False
            self.keys[record.customer_id, record.key] = record
        self.orders[order.id] = order
        return True


class RecordingEventSink:
    """Keeps what the service emits, in order."""

    def __init__(self) -> None:
        self.emitted: list[tuple[Payload, str]] = []

    def emit(self, payload: Payload, *, subject: str) -> None:
        self.emitted.append((payload, subject))
