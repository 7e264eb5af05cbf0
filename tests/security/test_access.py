"""Every route of both APIs × every role: allowed or refused exactly as the design's tables say.

A route lists the roles it lets in and the status each gets; any other role is 403 and a caller
without a token is 401. Each case first brings an object into the state where the allowed call
succeeds (the caller's own order, a delivery appointed to the calling courier), so that a refusal
is the role's doing, and after a refusal the object is as it was.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from deliveryhub_kit.identity import Role
from tests.support.orders import order_body
from tests.support.shop import LAPTEV, Caller, Shop

pytestmark = pytest.mark.integration

CUSTOMER, MANAGER, COURIER = Role.CUSTOMER, Role.MANAGER, Role.COURIER
CALLERS: list[Role | None] = [CUSTOMER, MANAGER, COURIER, None]


@dataclass
class Call:
    """One request, and how to read the state it would change."""

    path: str
    body: dict[str, Any] | None = None
    state: Callable[[], Awaitable[object]] | None = None


@dataclass(frozen=True)
class Route:
    """A row of the design's tables: the roles a route lets in, and how to set up a call of it."""

    service: str
    method: str
    template: str
    allowed: dict[Role, int]
    prepare: Callable[[Shop, Caller], Awaitable[Call]]
    # The status of the object once an allowed write has gone through.
    status_after: str | None = None

    def expected(self, role: Role | None) -> int:
        if role is None:
            return 401
        return self.allowed.get(role, 403)


async def _owned_or_new_customer(shop: Shop, caller: Caller) -> uuid.UUID:
    """An order of the caller if they are a customer, else of another customer."""
    owner = caller if caller.role is CUSTOMER else Caller.customer()
    return await shop.place_order(owner)


async def place_order(shop: Shop, caller: Caller) -> Call:
    async def stored() -> object:
        return len(await shop.stored_orders_of(caller.subject))

    return Call("/api/orders", body=order_body(), state=stored)


async def list_orders(shop: Shop, caller: Caller) -> Call:
    return Call("/api/orders")


async def one_order(shop: Shop, caller: Caller) -> Call:
    order_id = await _owned_or_new_customer(shop, caller)
    return Call(f"/api/orders/{order_id}")


def _order_write(action: str) -> Callable[[Shop, Caller], Awaitable[Call]]:
    async def prepare(shop: Shop, caller: Caller) -> Call:
        order_id = await _owned_or_new_customer(shop, caller)

        async def state() -> object:
            return (await shop.order(order_id))["status"], await shop.orders_events_about(order_id)

        return Call(f"/api/orders/{order_id}/{action}", state=state)

    return prepare


async def list_deliveries(shop: Shop, caller: Caller) -> Call:
    return Call("/api/delivery/")


async def one_delivery(shop: Shop, caller: Caller) -> Call:
    return Call(f"/api/delivery/{await shop.appointed_delivery(LAPTEV)}")


def _delivery_write(
    action: str, *, appointed: bool, body: dict[str, Any] | None = None
) -> Callable[[Shop, Caller], Awaitable[Call]]:
    async def prepare(shop: Shop, caller: Caller) -> Call:
        delivery_id = await (shop.appointed_delivery(LAPTEV) if appointed else shop.activated_delivery())

        async def state() -> object:
            return await shop.delivery_of(delivery_id), await shop.delivery_events_about(delivery_id)

        return Call(f"/api/delivery/{delivery_id}/{action}", body=body, state=state)

    return prepare


async def list_deliverymen(shop: Shop, caller: Caller) -> Call:
    return Call("/api/deliverymen")


ROUTES = [
    Route("orders", "POST", "/api/orders", {CUSTOMER: 201}, place_order, status_after="created"),
    Route("orders", "GET", "/api/orders", {CUSTOMER: 200, MANAGER: 200}, list_orders),
    Route("orders", "GET", "/api/orders/{id}", {CUSTOMER: 200, MANAGER: 200}, one_order),
    Route(
        "orders", "POST", "/api/orders/{id}/pay", {CUSTOMER: 200}, _order_write("pay"), status_after="paid"
    ),
    Route(
        "orders",
        "POST",
        "/api/orders/{id}/cancel",
        {CUSTOMER: 200, MANAGER: 200},
        _order_write("cancel"),
        status_after="canceled",
    ),
    Route("delivery", "GET", "/api/delivery/", {MANAGER: 200, COURIER: 200}, list_deliveries),
    Route("delivery", "GET", "/api/delivery/{id}", {MANAGER: 200, COURIER: 200}, one_delivery),
    Route(
        "delivery",
        "POST",
        "/api/delivery/{id}/appoint",
        {MANAGER: 200},
        _delivery_write("appoint", appointed=False, body={"deliveryman_id": str(LAPTEV)}),
        status_after="activated",
    ),
    Route(
        "delivery",
        "POST",
        "/api/delivery/{id}/finish",
        {MANAGER: 200, COURIER: 200},
        _delivery_write("finish", appointed=True),
        status_after="done",
    ),
    Route(
        "delivery",
        "POST",
        "/api/delivery/{id}/cancel",
        {MANAGER: 200},
        _delivery_write("cancel", appointed=False),
        status_after="canceled",
    ),
    Route("delivery", "GET", "/api/deliverymen", {MANAGER: 200}, list_deliverymen),
]

MATRIX = [
    pytest.param(
        route,
        role,
        id=f"{route.method} {route.template} as {role.value if role else 'no token'}: {route.expected(role)}",
    )
    for route in ROUTES
    for role in CALLERS
]


def assert_refused(response: httpx.Response, status: int) -> None:
    """A refusal: the status, the `{"error", "detail"}` body, and how to authenticate on a 401."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    assert body["error"] == {401: "unauthenticated", 403: "forbidden"}[status]
    assert isinstance(body["detail"], str)
    assert body["detail"]
    if status == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(("route", "role"), MATRIX)
async def test_each_route_lets_in_exactly_the_roles_of_the_design(
    shop: Shop, route: Route, role: Role | None
) -> None:
    caller = Caller.of(role)
    call = await route.prepare(shop, caller)
    before = await call.state() if call.state is not None else None
    client = shop.orders if route.service == "orders" else shop.delivery

    response = await client.request(
        route.method, call.path, json=call.body, headers=caller.headers(shop.tokens)
    )

    expected = route.expected(role)
    if expected >= 400:
        assert_refused(response, expected)
        if call.state is not None:
            assert await call.state() == before, "a refused call changed something"
        return
    assert response.status_code == expected, response.text
    answer = response.json()
    if "{id}" in route.template:
        assert answer["id"] == call.path.split("/")[3]
    if route.status_after is not None:
        assert answer["status"] == route.status_after
    if route.template.endswith("/appoint"):
        assert answer["deliveryman"]["id"] == str(LAPTEV)
    if route.method == "GET" and "{id}" not in route.template:
        assert isinstance(answer, list)
