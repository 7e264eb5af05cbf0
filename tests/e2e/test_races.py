"""Races across the two services, run against the system's processes: whatever wins, they agree."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from deliveryhub_kit.identity import Role
from tests.support.running_system import CLIENT_LIMITS, LAPTEV, ZUEV, System, run_async
from tests.support.story import order_body
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

Json = dict[str, Any]
RACES = 40
SETTLE_SECONDS = 60.0


class Shop:
    """One customer's paid order with a courier appointed, and the people who act on it."""

    def __init__(self, system: System, orders: httpx.AsyncClient, delivery: httpx.AsyncClient) -> None:
        self.system = system
        self.orders = orders
        self.delivery = delivery
        self.customer = system.auth(Role.CUSTOMER, subject=uuid.uuid4())
        # A manager and a courier of their own: the race is the point, not the rate limits.
        self.manager = system.auth(Role.MANAGER, subject=uuid.uuid4())
        self.deliveryman = LAPTEV if uuid.uuid4().int % 2 else ZUEV
        self.courier = system.auth(Role.COURIER, subject=uuid.uuid4(), deliveryman_id=self.deliveryman)
        self.order_id = ""

    async def paid_order_with_a_courier(self) -> None:
        placed = await self.orders.post("/api/orders", json=order_body(), headers=self.customer)
        assert placed.status_code == 201, placed.text
        self.order_id = placed.json()["id"]
        paid = await self.orders.post(f"/api/orders/{self.order_id}/pay", headers=self.customer)
        assert paid.status_code == 200, paid.text
        await wait_for(
            lambda: self._delivery_if("activated"),
            timeout=SETTLE_SECONDS,
            message=f"delivery {self.order_id} activated",
        )
        appointed = await self.delivery.post(
            f"/api/delivery/{self.order_id}/appoint",
            json={"deliveryman_id": str(self.deliveryman)},
            headers=self.manager,
        )
        assert appointed.status_code == 200, appointed.text

    async def _delivery_if(self, status: str) -> Json | None:
        response = await self.delivery.get(f"/api/delivery/{self.order_id}", headers=self.manager)
        body: Json = response.json()
        return body if response.status_code == 200 and body["status"] == status else None

    async def settled(self) -> tuple[Json, Json]:
        """The order and its delivery once the order has left `canceling` and both are closed."""

        async def both() -> Json | None:
            order = (await self.orders.get(f"/api/orders/{self.order_id}", headers=self.customer)).json()
            delivery = (
                await self.delivery.get(f"/api/delivery/{self.order_id}", headers=self.manager)
            ).json()
            closed = order["status"] in ("delivered", "canceled") and delivery["status"] in (
                "done",
                "canceled",
            )
            return {"order": order, "delivery": delivery} if closed else None

        found = await wait_for(
            both, timeout=SETTLE_SECONDS, message=f"order {self.order_id} and its delivery to close"
        )
        assert isinstance(found, dict)
        return found["order"], found["delivery"]


async def race_cancels_against_finishes(system: System, canceler: str) -> list[tuple[int, int, Json, Json]]:
    # Connections left idle while the slowest order is activated are not reused past CLIENT_LIMITS.
    async with (
        httpx.AsyncClient(base_url=system.orders_url, timeout=30, limits=CLIENT_LIMITS) as orders,
        httpx.AsyncClient(base_url=system.delivery_url, timeout=30, limits=CLIENT_LIMITS) as delivery,
    ):
        shops = [Shop(system, orders, delivery) for _ in range(RACES)]
        await asyncio.gather(*(shop.paid_order_with_a_courier() for shop in shops))

        async def race(shop: Shop) -> tuple[int, int]:
            who = shop.customer if canceler == "customer" else shop.manager
            cancel, finish = await asyncio.gather(
                orders.post(f"/api/orders/{shop.order_id}/cancel", headers=who),
                delivery.post(f"/api/delivery/{shop.order_id}/finish", headers=shop.courier),
            )
            return cancel.status_code, finish.status_code

        answers = await asyncio.gather(*(race(shop) for shop in shops))
        outcomes = await asyncio.gather(*(shop.settled() for shop in shops))
    return [(*answer, *outcome) for answer, outcome in zip(answers, outcomes, strict=True)]


@pytest.mark.parametrize("canceler", ["customer", "manager"])
def test_a_cancel_racing_the_courier_ends_with_both_services_agreeing(system: System, canceler: str) -> None:
    results = run_async(race_cancels_against_finishes(system, canceler))

    for cancel, finish, order, delivery in results:
        pair = (order["status"], delivery["status"])
        assert pair in {("delivered", "done"), ("canceled", "canceled")}, (order["id"], pair, cancel, finish)
        # The courier's answer says which won: a finish that was refused met a canceled delivery.
        assert finish in (200, 409), finish
        assert pair == (("delivered", "done") if finish == 200 else ("canceled", "canceled"))
        # The cancel was asked of the delivery service (202), or met a delivered order (409).
        assert cancel in (202, 409), cancel
        if cancel == 202 and finish == 200:
            assert order["cancel_refused"].startswith("too late: delivered at "), order
        assert order["deliveryman"]["id"] == delivery["deliveryman"]["id"]
    print(
        f"{canceler} cancel vs finish, {len(results)} races: "
        f"{sum(1 for r in results if r[2]['status'] == 'delivered')} delivered, "
        f"{sum(1 for r in results if r[2]['status'] == 'canceled')} canceled, "
        f"{sum(1 for r in results if r[0] == 202 and r[1] == 200)} cancels refused as too late"
    )
