"""The system under fault: both services on the real servers, each line to a server through a proxy,
and a shop that places, pays, cancels and delivers orders through the APIs."""

from __future__ import annotations

import asyncio
import enum
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from fastapi import FastAPI

from deliveryhub_cli.environment import service_environment
from deliveryhub_contracts.topology import (
    DELIVERY_ORDER_EVENTS,
    ORDERS_DELIVERY_EVENTS,
    Names,
    legacy_queues,
)
from deliveryhub_delivery.app import create_app as create_delivery_app
from deliveryhub_delivery.settings import DeliverySettings
from deliveryhub_kit.runtime import ServiceRuntime
from deliveryhub_kit.settings import ServiceSettings
from deliveryhub_orders.app import create_app as create_orders_app
from deliveryhub_orders.settings import OrdersSettings
from tests.faults.processes import ServiceProcess
from tests.support.broker import AMQP_URL, BrokerNamespace
from tests.support.databases import POSTGRES_SERVER_URL, Databases
from tests.support.proxy import TcpProxy
from tests.support.services import runtime_of, start_in_process
from tests.support.tokens import Tokens
from tests.support.waiting import wait_for

ServiceName = Literal["orders", "delivery"]

# Short delays keep retried messages (a unique violation between two consumers) inside the test's time.
RETRY_DELAYS = (0.5, 1.0, 2.0)
OUTAGE_HOLD_SECONDS = 2.0
LAPTEV = uuid.UUID("85db966c-67f1-411e-95c0-f02edfa5464a")
ZUEV = uuid.UUID("31babbb3-5541-4a2a-8201-537cdff25fed")


def server_address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None, url
    assert parts.port is not None, url
    return parts.hostname, parts.port


def through(proxy: TcpProxy, url: str) -> str:
    """`url` with its host and port replaced by the proxy's."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:{proxy.port}" if credentials else f"127.0.0.1:{proxy.port}"
    return parts._replace(netloc=netloc).geturl()


@dataclass
class Lines:
    """One proxy per service per server, so that a scenario can break exactly one of them."""

    orders_database: TcpProxy
    delivery_database: TcpProxy
    orders_broker: TcpProxy
    delivery_broker: TcpProxy

    @classmethod
    async def open(cls, delivery_database: tuple[str, int] | None = None) -> Lines:
        """Lines to the test servers; the delivery service's database may be on another server."""
        database, broker = server_address(POSTGRES_SERVER_URL + "/postgres"), server_address(AMQP_URL)
        return cls(
            orders_database=await TcpProxy(*database).start(),
            delivery_database=await TcpProxy(*(delivery_database or database)).start(),
            orders_broker=await TcpProxy(*broker).start(),
            delivery_broker=await TcpProxy(*broker).start(),
        )

    def all(self) -> tuple[TcpProxy, ...]:
        return (self.orders_database, self.delivery_database, self.orders_broker, self.delivery_broker)

    def database(self, service: ServiceName) -> TcpProxy:
        return self.orders_database if service == "orders" else self.delivery_database

    def broker(self, service: ServiceName) -> TcpProxy:
        return self.orders_broker if service == "orders" else self.delivery_broker

    async def close(self) -> None:
        for line in self.all():
            await line.close()


@dataclass
class InProcessService:
    """A service app started by its own lifespan in the test's event loop."""

    name: ServiceName
    app: FastAPI
    client: httpx.AsyncClient
    stack: AsyncExitStack

    @property
    def runtime(self) -> ServiceRuntime:
        return runtime_of(self.app)

    def consumed(self, outcome: str) -> float:
        """Events this service's consumers settled with `outcome` (applied, duplicate)."""
        total = 0.0
        for family in self.runtime.metrics.events_consumed.collect():
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels.get("outcome") == outcome:
                    total += sample.value
        return total

    async def stop(self) -> None:
        await self.stack.aclose()


class FaultSystem:
    """Databases, broker names and lines of one scenario, and the services started on them."""

    def __init__(
        self,
        *,
        database_urls: dict[ServiceName, str],
        namespace: BrokerNamespace,
        lines: Lines,
        public_key_pem: str,
        workdir: Path,
    ) -> None:
        self.database_urls = database_urls
        self.namespace = namespace
        self.lines = lines
        self.public_key_pem = public_key_pem
        self.workdir = workdir
        self._in_process: list[InProcessService] = []
        self._processes: list[ServiceProcess] = []
        namespace.retry_delays.extend(RETRY_DELAYS)

    @property
    def names(self) -> Names:
        return self.namespace.names

    def queue(self, service: ServiceName) -> str:
        return self.names.queue(DELIVERY_ORDER_EVENTS if service == "delivery" else ORDERS_DELIVERY_EVENTS)

    def dead_letter_queue(self, service: ServiceName) -> str:
        return Names.dead_letter_queue(self.queue(service))

    @property
    def legacy_queues(self) -> tuple[str, str]:
        """The delivery service's `order_created` and `order_paid` queues of the teaching design."""
        return legacy_queues(self.namespace.legacy_prefix)

    def settings_values(self, service: ServiceName) -> dict[str, Any]:
        """The settings every scenario's service runs with; its lines go through the proxies."""
        values: dict[str, Any] = {
            "environment": "test",
            "database_url": through(self.lines.database(service), self.database_urls[service]),
            "amqp_url": through(self.lines.broker(service), AMQP_URL),
            "broker_prefix": self.namespace.prefix,
            "jwt_public_key": self.public_key_pem,
            "outbox_poll_seconds": 0.2,
            "publish_timeout_seconds": 5.0,
            "database_pool_size": 5,
            "retry_delays_seconds": RETRY_DELAYS,
            # Shorter than the outages here, so that holding and giving back are both exercised.
            "consumer_outage_hold_seconds": OUTAGE_HOLD_SECONDS,
            "log_level": "INFO",
        }
        if service == "delivery":
            # The teaching design's queues too, as a shop still running its old producer has them.
            values["legacy_queue_prefix"] = self.namespace.legacy_prefix
        return values

    def settings(self, service: ServiceName) -> ServiceSettings:
        values = self.settings_values(service)
        return OrdersSettings(**values) if service == "orders" else DeliverySettings(**values)

    async def start_in_process(self, service: ServiceName, *, attached: bool = True) -> InProcessService:
        """The service in this process with an HTTP client in front of it; unless told otherwise,
        once it has attached to the broker."""
        settings = self.settings(service)
        if isinstance(settings, OrdersSettings):
            app = create_orders_app(settings)
        else:
            assert isinstance(settings, DeliverySettings)
            app = create_delivery_app(settings)
        stack = AsyncExitStack()
        client = await start_in_process(stack, app, service, attached=attached, attach_timeout=20)
        started = InProcessService(name=service, app=app, client=client, stack=stack)
        self._in_process.append(started)
        return started

    def process(self, service: ServiceName, label: str) -> ServiceProcess:
        """A replica of the service as a real process (not started yet)."""
        # Unbuffered: a killed process leaves every line it wrote in its log.
        variables = {
            name.upper(): json.dumps(value) if isinstance(value, tuple) else str(value)
            for name, value in self.settings_values(service).items()
        }
        env = service_environment(
            database_url=variables.pop("DATABASE_URL"),
            amqp_url=variables.pop("AMQP_URL"),
            broker_prefix=variables.pop("BROKER_PREFIX"),
            overrides={"PYTHONUNBUFFERED": "1", "LOG_JSON": "true", **variables},
        )
        replica = ServiceProcess(label, service, env, self.workdir)
        self._processes.append(replica)
        return replica

    async def close(self) -> None:
        # Mended first: a service stops cleanly only if it can reach what it closes.
        for line in self.lines.all():
            line.mend()
        for replica in self._processes:
            await replica.close()
        for service in reversed(self._in_process):
            await service.stop()
        await self.lines.close()


@asynccontextmanager
async def fault_system(
    databases: Databases,
    namespace: BrokerNamespace,
    lines: Lines,
    public_key_pem: str,
    workdir: Path,
    *,
    delivery_database_url: str | None = None,
) -> AsyncIterator[FaultSystem]:
    """Fresh databases (the delivery one may be given) and the test's broker names; the services
    start on the proxied lines. Everything is removed at the end."""
    made = [await databases.create_migrated("orders")]
    if delivery_database_url is None:
        made.append(await databases.create_migrated("delivery"))
    system = FaultSystem(
        database_urls={"orders": made[0], "delivery": delivery_database_url or made[1]},
        namespace=namespace,
        lines=lines,
        public_key_pem=public_key_pem,
        workdir=workdir,
    )
    try:
        yield system
    finally:
        await system.close()
        for url in made:
            await databases.drop(url)


class Story(enum.StrEnum):
    """What the shop does with one order, and so what its events call for."""

    CREATED = "created"
    PAID = "paid"
    CANCELED = "canceled"
    DELIVERED = "delivered"


# The order's and the delivery's state each story ends in.
EXPECTED_STATES: dict[Story, tuple[str, str]] = {
    Story.CREATED: ("created", "created"),
    Story.PAID: ("paid", "activated"),
    Story.CANCELED: ("canceled", "canceled"),
    Story.DELIVERED: ("delivered", "done"),
}


def mixed_stories(count: int, *, delivered: bool = False) -> list[Story]:
    """One order in six only placed, one paid then canceled, the rest paid (or later delivered)."""
    stories: list[Story] = []
    for index in range(count):
        match index % 6:
            case 0:
                stories.append(Story.CREATED)
            case 1:
                stories.append(Story.CANCELED)
            case 4 | 5 if delivered:
                stories.append(Story.DELIVERED)
            case _:
                stories.append(Story.PAID)
    return stories


def order_body(index: int) -> dict[str, Any]:
    return {
        "address": f"Москва, Тверская улица, {index + 1}",
        "date": (datetime.now(UTC) + timedelta(days=2)).isoformat(),
        "items": [
            {"name": "Чай", "quantity": 2, "price": "150.25"},
            {"name": "Мёд", "quantity": 1, "price": 499},
        ],
    }


@dataclass
class Answer:
    at: float
    status: int
    what: str
    took: float


@dataclass
class Shop:
    """Customers and a manager using the APIs; it remembers every order's story and every answer."""

    tokens: Tokens
    orders_apis: Sequence[httpx.AsyncClient]
    delivery_apis: Sequence[httpx.AsyncClient] = ()
    stories: dict[uuid.UUID, Story] = field(default_factory=dict)
    answers: list[Answer] = field(default_factory=list)
    placed: int = 0

    async def _call(self, client: httpx.AsyncClient, path: str, headers: dict[str, str], **body: Any) -> Any:
        sent = time.monotonic()
        try:
            response = await client.post(path, headers=headers, **body)
        except httpx.HTTPError as error:
            self.answers.append(Answer(sent, 0, f"POST {path}: {error!r}", time.monotonic() - sent))
            raise
        what = f"POST {path}: {response.status_code} {response.text[:200]}"
        self.answers.append(Answer(sent, response.status_code, what, time.monotonic() - sent))
        assert response.is_success, f"POST {path} answered {response.status_code}: {response.text}"
        return response.json()

    async def order(self, index: int, story: Story) -> uuid.UUID:
        """Place order `index` and take it as far as the orders API goes for its story."""
        place_on = self.orders_apis[index % len(self.orders_apis)]
        # The next request goes to another replica, when there are several.
        act_on = self.orders_apis[(index + 1) % len(self.orders_apis)]
        customer = self.tokens.customer()
        placed = await self._call(place_on, "/api/orders", customer, json=order_body(index))
        order_id = uuid.UUID(placed["id"])
        self.stories[order_id] = story
        self.placed += 1
        if story is not Story.CREATED:
            await self._call(act_on, f"/api/orders/{order_id}/pay", customer)
        if story is Story.CANCELED:
            await self._call(place_on, f"/api/orders/{order_id}/cancel", customer)
        return order_id

    async def stream(
        self,
        stories: Sequence[Story],
        *,
        every: float,
        on_placed: Callable[[int], None] | None = None,
    ) -> None:
        """Start one order every `every` seconds (each goes on by itself) until all are done."""
        running: list[asyncio.Task[uuid.UUID]] = []
        for index, story in enumerate(stories):
            running.append(asyncio.create_task(self.order(index, story)))
            if on_placed is not None:
                on_placed(index + 1)
            await asyncio.sleep(every)  # the workload's pace, not a wait for a message
        await asyncio.gather(*running)

    async def deliver(self, order_id: uuid.UUID, index: int) -> None:
        """Once the delivery is activated, a manager appoints a courier and the courier finishes."""
        manager = self.tokens.manager()
        courier_id = (LAPTEV, ZUEV)[index % 2]
        appoint_on = self.delivery_apis[index % len(self.delivery_apis)]
        finish_on = self.delivery_apis[(index + 1) % len(self.delivery_apis)]

        async def activated() -> bool:
            response = await appoint_on.get(f"/api/delivery/{order_id}", headers=manager)
            return response.status_code == 200 and response.json()["status"] == "activated"

        await wait_for(activated, timeout=30, message=f"delivery {order_id} to be activated")
        await self._call(
            appoint_on,
            f"/api/delivery/{order_id}/appoint",
            manager,
            json={"deliveryman_id": str(courier_id)},
        )
        await self._call(finish_on, f"/api/delivery/{order_id}/finish", self.tokens.courier(courier_id))

    def answered(self, since: float = 0.0, until: float = float("inf")) -> list[Answer]:
        """The answers to requests sent between two instants (time.monotonic)."""
        return [answer for answer in self.answers if since <= answer.at <= until]

    def failures(self) -> list[str]:
        return [answer.what for answer in self.answers if not 200 <= answer.status < 300]
