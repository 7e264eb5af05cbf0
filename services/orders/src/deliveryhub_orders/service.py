"""Use cases of the orders service; free of HTTP and of the broker."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from deliveryhub_contracts.events import (
    ORDERS_SOURCE,
    DeliveryAppointed,
    DeliveryCanceled,
    DeliveryFinished,
    OrderCanceled,
    OrderCancelRequested,
    OrderCreated,
    OrderPaid,
)
from deliveryhub_kit.db import utcnow
from deliveryhub_kit.identity import Principal, Role
from deliveryhub_kit.lists import Page, Sort
from deliveryhub_kit.outbox import EventSink, Outbox
from deliveryhub_kit.search import Search
from deliveryhub_kit.unit_of_work import UnitOfWork
from deliveryhub_orders import domain
from deliveryhub_orders.domain import CancelOutcome, OrderStatus
from deliveryhub_orders.errors import IdempotencyKeyReused, OrderNotFound
from deliveryhub_orders.models import IdempotencyRecord, Order, OutboxMessage
from deliveryhub_orders.repository import OrderQuery, SqlOrderRepository
from deliveryhub_orders.schemas import OrderCreate, OrderOut


class OrderRepository(Protocol):
    async def get(self, order_id: uuid.UUID, *, for_update: bool = False) -> Order | None: ...
    async def list(self, query: OrderQuery, *, limit: int, offset: int) -> Page[Order]: ...
    async def get_idempotency_record(self, customer_id: uuid.UUID, key: str) -> IdempotencyRecord | None: ...
    async def add(self, order: Order, record: IdempotencyRecord | None) -> bool: ...


@dataclass(frozen=True)
class PlacedOrder:
    """The answer to placing an order; `replayed` when it repeats an earlier answer."""

    document: dict[str, Any]
    replayed: bool


class OrderService:
    def __init__(
        self,
        orders: OrderRepository,
        events: EventSink,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._orders = orders
        self._events = events
        self._clock = clock

    async def place_order(
        self, principal: Principal, request: OrderCreate, idempotency_key: str | None = None
    ) -> PlacedOrder:
        """Create an order; the same key and body return the first answer and create nothing."""
        request_hash = ""  # only a keyed request is compared with an earlier one
        if idempotency_key is not None:
            request_hash = hashlib.sha256(request.model_dump_json().encode()).hexdigest()
            earlier = await self._replay(principal.subject, idempotency_key, request_hash)
            if earlier is not None:
                return earlier
        order = domain.new_order(
            customer_id=principal.subject,
            address=request.address,
            date=request.date,
            items=[item.to_item() for item in request.items],
            now=self._clock(),
        )
        document = OrderOut.of(order).to_document()
        record = (
            IdempotencyRecord(
                customer_id=principal.subject,
                key=idempotency_key,
                request_hash=request_hash,
                order_id=order.id,
                response=document,
            )
            if idempotency_key is not None
            else None
        )
        if not await self._orders.add(order, record):
            assert idempotency_key is not None
            earlier = await self._replay(principal.subject, idempotency_key, request_hash)
            assert earlier is not None, "the key was taken but its record is not there"
            return earlier
        self._events.emit(OrderCreated(**_snapshot(order)), subject=str(order.id))
        return PlacedOrder(document=document, replayed=False)

    async def _replay(self, customer_id: uuid.UUID, key: str, request_hash: str) -> PlacedOrder | None:
        record = await self._orders.get_idempotency_record(customer_id, key)
        if record is None:
            return None
        if record.request_hash != request_hash:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used for a different order; use a new key for a new order"
            )
        return PlacedOrder(document=record.response, replayed=True)

    async def list_orders(
        self,
        principal: Principal,
        *,
        status: OrderStatus | None = None,
        search: Search | None = None,
        sort: Sort = Sort.NEWEST,
        limit: int = 100,
        offset: int = 0,
    ) -> Page[Order]:
        """A customer's own orders; every order for a manager."""
        customer_id = None if principal.role is Role.MANAGER else principal.subject
        query = OrderQuery(customer_id=customer_id, status=status, search=search, sort=sort)
        return await self._orders.list(query, limit=limit, offset=offset)

    async def get_order(self, principal: Principal, order_id: uuid.UUID) -> Order:
        return await self._visible(principal, order_id)

    async def pay_order(self, principal: Principal, order_id: uuid.UUID) -> Order:
        """The owner pays a created order."""
        order = await self._visible(principal, order_id, for_update=True, owner_only=True)
        now = self._clock()
        domain.pay(order, now)
        self._events.emit(OrderPaid(**_snapshot(order), paid_at=now), subject=str(order.id))
        return order

    async def cancel_order(self, principal: Principal, order_id: uuid.UUID) -> tuple[Order, CancelOutcome]:
        """The owner or a manager cancels an unpaid order, or asks the delivery service to cancel a
        paid one (the order is `canceling` until it answers)."""
        order = await self._visible(principal, order_id, for_update=True)
        who = "the shop manager" if principal.role is Role.MANAGER else "the customer"
        reason = f"canceled by {who}"
        outcome = domain.cancel(order, reason, self._clock())
        event = OrderCanceled if outcome is CancelOutcome.CANCELED else OrderCancelRequested
        self._events.emit(
            event(order_id=order.id, version=order.version, reason=reason), subject=str(order.id)
        )
        return order, outcome

    async def on_delivery_appointed(self, event: DeliveryAppointed) -> None:
        order = await self._for_event(event.order_id)
        domain.show_deliveryman(
            order, event.deliveryman.id, event.deliveryman.name, event.version, self._clock()
        )

    async def on_delivery_finished(self, event: DeliveryFinished) -> None:
        order = await self._for_event(event.order_id)
        domain.delivered(order, event.finished_at, self._clock())

    async def on_delivery_canceled(self, event: DeliveryCanceled) -> None:
        order = await self._for_event(event.order_id)
        domain.delivery_canceled(order, event.reason, self._clock())

    async def _for_event(self, order_id: uuid.UUID) -> Order:
        order = await self._orders.get(order_id, for_update=True)
        if order is None:
            raise OrderNotFound(f"a delivery event names order {order_id}, which does not exist")
        return order

    async def _visible(
        self,
        principal: Principal,
        order_id: uuid.UUID,
        *,
        for_update: bool = False,
        owner_only: bool = False,
    ) -> Order:
        """The order, if the caller may act on it; another customer's order does not exist for them."""
        order = await self._orders.get(order_id, for_update=for_update)
        is_owner = order is not None and order.customer_id == principal.subject
        may_see = is_owner or (principal.role is Role.MANAGER and not owner_only)
        if order is None or not may_see:
            raise OrderNotFound(f"there is no order {order_id}")
        return order


def _snapshot(order: Order) -> dict[str, Any]:
    return {
        "order_id": order.id,
        "customer_id": order.customer_id,
        "address": order.address,
        "date": order.date,
        "total": order.total,
        "version": order.version,
    }


def order_service(work: UnitOfWork) -> OrderService:
    """The service over one transaction: SQL repository, events into the outbox."""
    return OrderService(SqlOrderRepository(work), Outbox(work, OutboxMessage, ORDERS_SOURCE))
