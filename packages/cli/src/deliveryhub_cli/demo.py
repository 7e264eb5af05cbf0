"""`deliveryhub demo`: the whole story of the design over HTTP, against the running system."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import httpx

from deliveryhub_cli.tokens import make_token
from deliveryhub_contracts.topology import legacy_queues
from deliveryhub_kit.identity import Role

DELIVERYMAN_ID = uuid.UUID("85db966c-67f1-411e-95c0-f02edfa5464a")

Json = dict[str, Any]


class DemoFailed(Exception):
    pass


class Demo:
    def __init__(self, orders_url: str, delivery_url: str, keys_dir: Path, timeout: float) -> None:
        self.timeout = timeout
        self.orders = httpx.Client(base_url=orders_url, timeout=10)
        self.delivery = httpx.Client(base_url=delivery_url, timeout=10)
        self.customer = {"Authorization": "Bearer " + make_token(keys_dir, Role.CUSTOMER)}
        self.manager = {"Authorization": "Bearer " + make_token(keys_dir, Role.MANAGER)}
        self.courier = {
            "Authorization": "Bearer " + make_token(keys_dir, Role.COURIER, deliveryman_id=DELIVERYMAN_ID)
        }

    def call(self, client: httpx.Client, method: str, path: str, headers: dict[str, str], **kw: Any) -> Any:
        response = client.request(method, path, headers=headers, **kw)
        if response.status_code >= 400:
            raise DemoFailed(f"{method} {path} answered {response.status_code}: {response.text}")
        return response.json()

    def wait(self, what: str, probe: Callable[[], Json | None]) -> Json:
        """Poll until `probe` returns a value, for at most the demo's timeout."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            found = probe()
            if found is not None:
                return found
            time.sleep(0.1)
        raise DemoFailed(f"gave up waiting for {what} after {self.timeout:.0f}s")

    def delivery_in(self, delivery_id: str, status: str) -> Json:
        def probe() -> Json | None:
            response = self.delivery.get(f"/api/delivery/{delivery_id}", headers=self.manager)
            if response.status_code == 200 and response.json()["status"] == status:
                body: Json = response.json()
                return body
            return None

        return self.wait(f"delivery {delivery_id} to be {status}", probe)

    def order_in(self, order_id: str, status: str, extra: Callable[[Json], bool] = lambda _: True) -> Json:
        def probe() -> Json | None:
            body = self.call(self.orders, "GET", f"/api/orders/{order_id}", self.customer)
            return body if body["status"] == status and extra(body) else None

        return self.wait(f"order {order_id} to be {status}", probe)

    def place_order(self) -> Json:
        order: Json = self.call(
            self.orders,
            "POST",
            "/api/orders",
            {**self.customer, "Idempotency-Key": str(uuid.uuid4())},
            json={
                "address": "ул. Ленина, 1, Москва",
                "date": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
                "items": [
                    {"name": "Чай", "quantity": 2, "price": "250.00"},
                    {"name": "Пряник", "quantity": 3, "price": 49.9},
                ],
            },
        )
        return order

    def happy_path(self) -> None:
        print("1. The customer places an order")
        order = self.place_order()
        order_id = order["id"]
        print(f"   order {order_id}: {order['status']}, total {order['total']}")
        print("2. The delivery service hears of it")
        print(f"   delivery: {self.delivery_in(order_id, 'created')['status']}")
        print("3. The customer pays")
        paid = self.call(self.orders, "POST", f"/api/orders/{order_id}/pay", self.customer)
        print(f"   order: {paid['status']}")
        print(f"   delivery: {self.delivery_in(order_id, 'activated')['status']}")
        print("4. The manager appoints a courier")
        deliverymen = self.call(self.delivery, "GET", "/api/deliverymen", self.manager)
        print(f"   couriers: {', '.join(deliveryman['name'] for deliveryman in deliverymen)}")
        appointed = self.appoint(order_id)
        print(f"   appointed: {appointed['deliveryman']['name']}")
        shown = self.order_in(order_id, "paid", lambda body: body["deliveryman"] is not None)
        print(f"   the order shows its courier: {shown['deliveryman']['name']}")
        print("5. The courier marks it delivered")
        done = self.call(self.delivery, "POST", f"/api/delivery/{order_id}/finish", self.courier)
        print(f"   delivery: {done['status']}")
        print(f"   order: {self.order_in(order_id, 'delivered')['status']}")
        print(f"Final: order {order_id} delivered, delivery done")

    def cancellations(self) -> None:
        print("6. The customer cancels an unpaid order: canceled at once, and its delivery follows")
        order_id = self.place_order()["id"]
        self.delivery_in(order_id, "created")
        canceled = self.call(self.orders, "POST", f"/api/orders/{order_id}/cancel", self.customer)
        print(f"   order: {canceled['status']}")
        print(f"   delivery: {self.delivery_in(order_id, 'canceled')['status']}")
        print("7. The customer cancels a paid order: the delivery service decides, and cancels it")
        order_id = self.paid_order()
        requested = self.call(self.orders, "POST", f"/api/orders/{order_id}/cancel", self.customer)
        print(f"   order: {requested['status']} (cancel requested)")
        print(f"   delivery: {self.delivery_in(order_id, 'canceled')['status']}")
        print(f"   order: {self.order_in(order_id, 'canceled')['status']}")
        print("8. The courier hands the parcel over just before the customer cancels: too late")
        order_id = self.paid_order()
        self.appoint(order_id)
        self.call(self.delivery, "POST", f"/api/delivery/{order_id}/finish", self.courier)
        response = self.orders.post(f"/api/orders/{order_id}/cancel", headers=self.customer)
        if response.status_code == 409:
            # The orders service had heard of the delivery already: refused at once.
            print(f"   cancel refused at once: {response.json()['detail']}")
        elif response.status_code == 202:
            delivered = self.order_in(order_id, "delivered")
            print(f"   order: {delivered['status']}, cancel refused, {delivered['cancel_refused']}")
        else:
            raise DemoFailed(f"the late cancel answered {response.status_code}: {response.text}")
        print("9. The manager cancels a delivery; its order is canceled")
        order_id = self.paid_order()
        self.call(self.delivery, "POST", f"/api/delivery/{order_id}/cancel", self.manager)
        print(f"   order: {self.order_in(order_id, 'canceled')['status']}")

    def paid_order(self) -> str:
        order_id: str = self.place_order()["id"]
        self.call(self.orders, "POST", f"/api/orders/{order_id}/pay", self.customer)
        self.delivery_in(order_id, "activated")
        return order_id

    def appoint(self, order_id: str) -> Json:
        appointed: Json = self.call(
            self.delivery,
            "POST",
            f"/api/delivery/{order_id}/appoint",
            self.manager,
            json={"deliveryman_id": str(DELIVERYMAN_ID)},
        )
        return appointed

    def legacy(self, amqp_url: str, legacy_prefix: str) -> None:
        created_queue, paid_queue = legacy_queues(legacy_prefix)
        unusable = asyncio.run(why_not_writable(amqp_url, (created_queue, paid_queue)))
        if unusable:
            print(f"10. (skipped) A teaching-design producer: {unusable}")
            return
        print(f"10. A teaching-design producer writes to {created_queue}")
        order_id = str(uuid.uuid4())
        date = (datetime.now(UTC) + timedelta(days=2)).isoformat()
        asyncio.run(
            publish_plain(
                amqp_url, created_queue, {"order_id": order_id, "date": date, "address": "Тверская, 7"}
            )
        )
        print(f"   delivery: {self.delivery_in(order_id, 'created')['status']}")
        asyncio.run(publish_plain(amqp_url, paid_queue, {"id": order_id}))
        print(f"   after {paid_queue}: {self.delivery_in(order_id, 'activated')['status']}")


async def why_not_writable(amqp_url: str, queues: tuple[str, ...]) -> str | None:
    """Why a producer could not write to the queues on RabbitMQ (None if it can): the embedded
    system, for one, uses no RabbitMQ, and declares no such queue there."""
    # The client logs each failed attempt itself; the line the caller prints says it better.
    logging.getLogger("aiormq").setLevel(logging.CRITICAL)
    logging.getLogger("aio_pika").setLevel(logging.CRITICAL)
    try:
        connection = await aio_pika.connect(amqp_url, timeout=5)
    except (TimeoutError, OSError, aio_pika.exceptions.AMQPException) as error:
        return f"RabbitMQ does not answer ({type(error).__name__})"
    async with connection:
        channel = await connection.channel()
        for queue in queues:
            try:
                await channel.declare_queue(queue, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                return f"RabbitMQ has no queue {queue}: the running system does not consume it"
    return None


async def publish_plain(amqp_url: str, queue: str, body: Json) -> None:
    """Publish plain JSON to a queue the way the teaching design's producer does."""
    connection = await aio_pika.connect(amqp_url, timeout=5)
    async with connection:
        channel = await connection.channel()
        await channel.default_exchange.publish(
            aio_pika.Message(json.dumps(body).encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=queue,
        )


def run_demo(
    *, orders_url: str, delivery_url: str, keys_dir: Path, amqp_url: str, legacy_prefix: str, timeout: float
) -> int:
    demo = Demo(orders_url, delivery_url, keys_dir, timeout)
    try:
        demo.happy_path()
        demo.cancellations()
        if legacy_prefix:
            demo.legacy(amqp_url, legacy_prefix)
    except (DemoFailed, httpx.HTTPError) as error:
        print(f"deliveryhub demo: {error}")
        return 1
    print("The demo completed.")
    return 0
