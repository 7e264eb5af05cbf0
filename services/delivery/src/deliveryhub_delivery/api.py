"""HTTP routes of the delivery service: parse, authorize, call the service, render."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from deliveryhub_delivery.domain import DeliveryStatus
from deliveryhub_delivery.repository import DeliveryQuery
from deliveryhub_delivery.schemas import AppointRequest, CourierOut, DeliveryOut
from deliveryhub_delivery.service import DeliveryService, delivery_service
from deliveryhub_kit.dependencies import (
    Limit,
    Offset,
    SearchText,
    in_transaction,
    only_reading,
    role_dependency,
    total_count_header,
)
from deliveryhub_kit.http_errors import error_responses
from deliveryhub_kit.identity import Principal, Role
from deliveryhub_kit.lists import TOTAL_HEADER, Sort
from deliveryhub_kit.search import Search

router = APIRouter(prefix="/api", tags=["delivery"], responses=error_responses(401, 403, 422, 503))


ServiceDep = Annotated[DeliveryService, in_transaction(delivery_service)]
# The routes that only read: no transaction around their statements.
ReaderDep = Annotated[DeliveryService, only_reading(delivery_service)]
Manager = Annotated[Principal, role_dependency(Role.MANAGER)]
ManagerOrCourier = Annotated[Principal, role_dependency(Role.MANAGER, Role.COURIER)]


@router.get("/delivery/", responses=total_count_header())
async def list_deliveries(
    principal: ManagerOrCourier,
    service: ReaderDep,
    response: Response,
    status: DeliveryStatus | None = None,
    deliveryman_id: uuid.UUID | None = None,
    unassigned: Annotated[bool, Query(description="Only deliveries no courier is appointed to yet")] = False,
    q: SearchText = None,
    sort: Sort = Sort.NEWEST,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[DeliveryOut]:
    """List deliveries, newest first unless told `sort=oldest`, or `sort=updated` for the latest
    changed first: all of them for a manager, their own for a courier; the number of all matches
    is in `X-Total-Count`."""
    query = DeliveryQuery(
        status=status,
        deliveryman_id=deliveryman_id,
        unassigned=unassigned,
        search=Search.parse(q),
        sort=sort,
    )
    page = await service.list_deliveries(principal, query, limit=limit, offset=offset)
    response.headers[TOTAL_HEADER] = str(page.total)
    return [DeliveryOut.of(delivery) for delivery in page.items]


@router.get("/delivery/{delivery_id}", responses=error_responses(404))
async def get_delivery(
    delivery_id: uuid.UUID, principal: ManagerOrCourier, service: ReaderDep
) -> DeliveryOut:
    """One delivery (a courier sees only the ones appointed to them)."""
    return DeliveryOut.of(await service.get_delivery(principal, delivery_id))


# 400: a body that is not UTF-8; 413: one over the size limit.
@router.post("/delivery/{delivery_id}/appoint", responses=error_responses(400, 404, 409, 413))
async def appoint_courier(
    delivery_id: uuid.UUID, body: AppointRequest, _: Manager, service: ServiceDep
) -> DeliveryOut:
    """Appoint a courier to an activated delivery."""
    return DeliveryOut.of(await service.appoint_deliveryman(delivery_id, body.deliveryman_id))


@router.post("/delivery/{delivery_id}/finish", responses=error_responses(404, 409))
async def finish_delivery(
    delivery_id: uuid.UUID, principal: ManagerOrCourier, service: ServiceDep
) -> DeliveryOut:
    """Mark the delivery done: its appointed courier, or a manager."""
    return DeliveryOut.of(await service.finish_delivery(principal, delivery_id))


@router.post("/delivery/{delivery_id}/cancel", responses=error_responses(404, 409))
async def cancel_delivery(delivery_id: uuid.UUID, _: Manager, service: ServiceDep) -> DeliveryOut:
    """Cancel a delivery that is not done; the order is canceled in turn."""
    return DeliveryOut.of(await service.cancel_delivery(delivery_id))


@router.get("/deliverymen")
async def list_deliverymen(_: Manager, service: ReaderDep) -> list[CourierOut]:
    """The couriers, each with the deliveries appointed to them and still open."""
    return [
        CourierOut(id=man.id, name=man.name, open_deliveries=count)
        for man, count in await service.list_deliverymen()
    ]
