"""HTTP routes of the orders service: parse, authorize, call the service, render."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Response, status
from fastapi.responses import JSONResponse

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
from deliveryhub_orders.domain import CancelOutcome, OrderStatus
from deliveryhub_orders.schemas import OrderCreate, OrderOut
from deliveryhub_orders.service import OrderService, order_service

router = APIRouter(prefix="/api/orders", tags=["orders"], responses=error_responses(401, 403, 422, 503))


ServiceDep = Annotated[OrderService, in_transaction(order_service)]
# The routes that only read: no transaction around their statements.
ReaderDep = Annotated[OrderService, only_reading(order_service)]
Customer = Annotated[Principal, role_dependency(Role.CUSTOMER)]
CustomerOrManager = Annotated[Principal, role_dependency(Role.CUSTOMER, Role.MANAGER)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="Repeat a request safely: the same key and body return the first answer",
    ),
]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=OrderOut,
    # 400: a body that is not UTF-8; 413: one over the size limit.
    responses=error_responses(400, 409, 413),
)
async def place_order(
    body: OrderCreate, principal: Customer, service: ServiceDep, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    """Place an order; its total is computed by the server."""
    placed = await service.place_order(principal, body, idempotency_key)
    headers = {"Location": f"/api/orders/{placed.document['id']}"}
    if placed.replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(placed.document, status_code=status.HTTP_201_CREATED, headers=headers)


@router.get("", responses=total_count_header())
async def list_orders(
    principal: CustomerOrManager,
    service: ReaderDep,
    response: Response,
    status: OrderStatus | None = None,
    q: SearchText = None,
    sort: Sort = Sort.NEWEST,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[OrderOut]:
    """A customer's own orders, or every order for a manager; newest first unless told
    `sort=oldest`, or `sort=updated` for the latest changed first. The number of all matches is
    in `X-Total-Count`."""
    page = await service.list_orders(
        principal, status=status, search=Search.parse(q), sort=sort, limit=limit, offset=offset
    )
    response.headers[TOTAL_HEADER] = str(page.total)
    return [OrderOut.of(order) for order in page.items]


@router.get("/{order_id}", responses=error_responses(404))
async def get_order(order_id: uuid.UUID, principal: CustomerOrManager, service: ReaderDep) -> OrderOut:
    """One order: its owner or a manager."""
    return OrderOut.of(await service.get_order(principal, order_id))


@router.post("/{order_id}/pay", responses=error_responses(404, 409))
async def pay_order(order_id: uuid.UUID, principal: Customer, service: ServiceDep) -> OrderOut:
    """Pay a created order (its owner)."""
    return OrderOut.of(await service.pay_order(principal, order_id))


@router.post(
    "/{order_id}/cancel",
    responses={**error_responses(404, 409), 202: {"model": OrderOut, "description": "Cancel requested"}},
)
async def cancel_order(
    order_id: uuid.UUID, principal: CustomerOrManager, service: ServiceDep
) -> JSONResponse:
    """Cancel a created order at once (200); for a paid one, ask the delivery service (202, status
    `canceling`): the order becomes `canceled`, or `delivered` when the parcel was handed over
    already (`cancel_refused` says so). Its owner or a manager."""
    order, outcome = await service.cancel_order(principal, order_id)
    code = status.HTTP_200_OK if outcome is CancelOutcome.CANCELED else status.HTTP_202_ACCEPTED
    return JSONResponse(OrderOut.of(order).to_document(), status_code=code)
