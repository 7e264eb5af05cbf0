"""`deliveryhub bench`: the whole pipeline measured against this machine's raw limits, in one run.

Every phase keeps the guarantees on: the services' own outbox, inbox, confirms and ack after
commit. The raw limits are measured with the same brokers and database at the services'
concurrency, on temporary names that are removed at the end.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import random
import resource
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, redirect_stdout, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import httpx

from deliveryhub_cli.loadgen import Answer, HttpLoad, LoadError
from deliveryhub_cli.services import SERVICES, database_url, migrate, prepare_database
from deliveryhub_cli.tokens import make_token
from deliveryhub_cli.up import Stack, UpOptions, prepare, wait_until_ready
from deliveryhub_contracts.events import OrderCreated, make_envelope
from deliveryhub_contracts.topology import DELIVERY_ORDER_EVENTS, ORDERS_DELIVERY_EVENTS, Names
from deliveryhub_kit.broker import OutgoingMessage
from deliveryhub_kit.db import Database
from deliveryhub_kit.identity import Role
from deliveryhub_kit.keys import ensure_development_keys
from deliveryhub_kit.migrations import drop_database
from deliveryhub_kit.outbox import Outbox, OutboxRelay
from deliveryhub_kit.rabbitmq import RabbitBroker
from deliveryhub_kit.settings import ServiceSettings
from deliveryhub_kit.topology import service_topology
from deliveryhub_orders.models import OutboxMessage as OrdersOutboxMessage

Json = dict[str, Any]

# The services' own concurrency, from their settings' defaults.
_DEFAULTS = ServiceSettings.model_fields
RELAY_WINDOW: int = _DEFAULTS["outbox_batch_size"].default
CONSUMER_PREFETCH: int = _DEFAULTS["consumer_prefetch"].default
DATABASE_CONNECTIONS: int = (
    _DEFAULTS["database_pool_size"].default + _DEFAULTS["database_max_overflow"].default
)
RETRY_DELAYS: tuple[float, ...] = _DEFAULTS["retry_delays_seconds"].default

# The share of the measured end-to-end rate offered to see the lag of a system that keeps up.
SUSTAINED_SHARE = 0.7

# The targets of a 2-core machine with everything on it (README, Performance).
TARGETS = {
    "http_post_orders_rps": 1000.0,
    "http_post_orders_p99_ms": 100.0,
    "e2e_orders_per_s": 500.0,
    "paced_activation_lag_p99_ms": 200.0,
    "consumer_drain_events_per_s": 2000.0,
    "outbox_drain_events_per_s": 3000.0,
    "rss_mb": 150.0,
}


@dataclass
class BenchOptions:
    orders_url: str
    delivery_url: str
    postgres: str
    database_prefix: str
    amqp: str
    broker_prefix: str
    data_dir: Path
    results_dir: Path
    connections: int = 64
    duration: float = 15.0
    raw_seconds: float = 5.0
    orders: int = 3000
    paced_rate: float = 250.0
    paced_seconds: float = 10.0
    events: int = 5000
    outbox_rows: int = 5000
    timeout: float = 120.0
    start: bool = False
    workers: int = 1
    host: str = "127.0.0.1"
    json_output: bool = False


class Progress:
    """One line per phase on stderr, redrawn in place on a terminal."""

    def __init__(self, phases: int) -> None:
        self._phases = phases
        self._phase = 0
        self._name = ""
        self._started = time.monotonic()
        self._tty = sys.stderr.isatty()

    def phase(self, name: str) -> None:
        if self._tty and self._name:
            print(file=sys.stderr)
        self._phase += 1
        self._name = name
        self._started = time.monotonic()
        self.update("")

    def update(self, detail: str) -> None:
        line = f"[{self._phase}/{self._phases}] {self._name} {detail}".rstrip()
        if self._tty:
            print(f"\r\033[K{line}", end="", file=sys.stderr, flush=True)
        elif not detail:
            print(line, file=sys.stderr, flush=True)

    def done(self) -> None:
        if self._tty:
            print(file=sys.stderr)


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of `values` (0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))
    return ordered[rank]


def latency_summary(latencies: list[float]) -> Json:
    return {
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p95_ms": round(percentile(latencies, 0.95) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
    }


def order_body() -> Json:
    return {
        "address": "ул. Ленина, 1, Москва",
        "date": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
        "items": [
            {"name": "Чай", "quantity": 2, "price": "250.00"},
            {"name": "Пряник", "quantity": 3, "price": 49.9},
        ],
    }


def order_created_message(order_id: uuid.UUID | None = None) -> OutgoingMessage:
    """An `order.created` event as the orders service sends it."""
    order_id = order_id or uuid.uuid4()
    envelope = make_envelope(
        order_created(order_id), source="/orders", subject=str(order_id), time=datetime.now(UTC)
    )
    return OutgoingMessage(
        body=envelope.to_json(), message_id=str(envelope.id), type=envelope.routing_key, headers={}
    )


def order_created(order_id: uuid.UUID) -> OrderCreated:
    return OrderCreated(
        order_id=order_id,
        customer_id=uuid.uuid4(),
        address="ул. Ленина, 1, Москва",
        date=datetime.now(UTC) + timedelta(days=1),
        total=Decimal("649.70"),
        version=1,
    )


def _amqp_message(message: OutgoingMessage) -> aio_pika.Message:
    return aio_pika.Message(
        body=message.body,
        message_id=message.message_id,
        type=message.type,
        content_type=message.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


async def publish_confirmed(
    channel: aio_pika.abc.AbstractChannel,
    exchange: aio_pika.abc.AbstractExchange,
    routing_key: str,
    count: int,
    on_progress: Callable[[int], None] | None = None,
) -> None:
    """Publish `count` real-sized events, mandatory and persistent, a relay batch's window at a time."""
    sent = 0
    while sent < count:
        window = min(RELAY_WINDOW, count - sent)
        await asyncio.gather(
            *(
                exchange.publish(_amqp_message(order_created_message()), routing_key, mandatory=True)
                for _ in range(window)
            )
        )
        sent += window
        if on_progress:
            on_progress(sent)


async def raw_rabbitmq(options: BenchOptions, names: Names, progress: Progress) -> Json:
    """Publish with confirms for a while, then consume with ack what was published."""
    progress.phase("raw RabbitMQ: publish with confirms, consume with ack (quorum queue)")
    connection = await aio_pika.connect(options.amqp, client_properties={"connection_name": "bench-raw"})
    queue_name = names.prefix + "bench.raw"
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        queue = await channel.declare_queue(queue_name, durable=True, arguments={"x-queue-type": "quorum"})
        body_bytes = len(order_created_message().body)
        published = 0
        started = time.perf_counter()
        deadline = started + options.raw_seconds
        while time.perf_counter() < deadline:
            await publish_confirmed(channel, channel.default_exchange, queue_name, RELAY_WINDOW)
            published += RELAY_WINDOW
            progress.update(f"{published} published")
        publish_seconds = time.perf_counter() - started

        consume_channel = await connection.channel()
        await consume_channel.set_qos(prefetch_count=CONSUMER_PREFETCH)
        consume_queue = await consume_channel.get_queue(queue_name)
        consumed = 0
        finished = asyncio.Event()

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal consumed
            await message.ack()
            consumed += 1
            if consumed >= published:
                finished.set()

        started = time.perf_counter()
        tag = await consume_queue.consume(on_message)
        await asyncio.wait_for(finished.wait(), timeout=options.timeout)
        consume_seconds = time.perf_counter() - started
        await consume_queue.cancel(tag)
        await queue.delete(if_unused=False, if_empty=False)
    finally:
        with suppress(Exception):
            cleanup = await connection.channel()
            await cleanup.queue_delete(queue_name)
        await connection.close()
    return {
        "message_bytes": body_bytes,
        "publish_window": RELAY_WINDOW,
        "consumer_prefetch": CONSUMER_PREFETCH,
        "publish_per_s": round(published / publish_seconds, 1),
        "consume_per_s": round(published / consume_seconds, 1),
        "messages": published,
    }


RAW_ORDERS_TABLE = """
CREATE TABLE bench_orders (
    id uuid PRIMARY KEY, customer_id uuid NOT NULL, address text NOT NULL, date timestamptz NOT NULL,
    items jsonb NOT NULL, total numeric(12, 2) NOT NULL, status varchar(20) NOT NULL,
    version integer NOT NULL, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL
)"""
RAW_OUTBOX_TABLE = """
CREATE TABLE bench_outbox (
    id bigserial PRIMARY KEY, event_id uuid UNIQUE NOT NULL, routing_key varchar(100) NOT NULL,
    body text NOT NULL, created_at timestamptz NOT NULL, published_at timestamptz,
    next_attempt_at timestamptz NOT NULL
)"""


async def raw_postgres(options: BenchOptions, database_prefix: str, progress: Progress) -> Json:
    """Transactions shaped like one order (the order and its outbox row, then commit)."""
    progress.phase(f"raw PostgreSQL: order-shaped transactions on {DATABASE_CONNECTIONS} connections")
    url = database_url(options.postgres, database_prefix + "raw")
    from deliveryhub_kit.migrations import create_database_if_missing

    await create_database_if_missing(url)
    plain = url.replace("postgresql+asyncpg://", "postgresql://")
    try:
        pool = await asyncpg.create_pool(plain, min_size=DATABASE_CONNECTIONS, max_size=DATABASE_CONNECTIONS)
        try:
            async with pool.acquire() as connection:
                await connection.execute(RAW_ORDERS_TABLE)
                await connection.execute(RAW_OUTBOX_TABLE)
            items = json.dumps(order_body()["items"])
            body = order_created_message().body.decode()
            done = 0
            deadline = time.perf_counter() + options.raw_seconds

            async def worker() -> None:
                nonlocal done
                async with pool.acquire() as connection:
                    while time.perf_counter() < deadline:
                        now = datetime.now(UTC)
                        async with connection.transaction():
                            await connection.execute(
                                "INSERT INTO bench_orders VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $8)",
                                uuid.uuid4(), uuid.uuid4(), "ул. Ленина, 1, Москва", now, items,
                                Decimal("649.70"), "created", now,
                            )  # fmt: skip
                            await connection.execute(
                                "INSERT INTO bench_outbox (event_id, routing_key, body, created_at, "
                                "next_attempt_at) VALUES ($1, 'order.created', $2, $3, $3)",
                                uuid.uuid4(), body, now,
                            )  # fmt: skip
                        done += 1

            started = time.perf_counter()
            reporter = asyncio.create_task(_report(progress, lambda: f"{done} transactions"))
            await asyncio.gather(*(worker() for _ in range(DATABASE_CONNECTIONS)))
            seconds = time.perf_counter() - started
            reporter.cancel()
        finally:
            await pool.close()
    finally:
        await drop_database(url)
    return {"connections": DATABASE_CONNECTIONS, "transactions_per_s": round(done / seconds, 1)}


async def _report(progress: Progress, detail: Callable[[], str]) -> None:
    while True:
        await asyncio.sleep(0.5)
        progress.update(detail())


@dataclass
class HttpOutcome:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)

    def failed(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1

    def summary(self, seconds: float) -> Json:
        return {
            "requests": len(self.latencies) + self.errors,
            "requests_per_s": round(len(self.latencies) / seconds, 1),
            **latency_summary(self.latencies),
            "errors": self.errors,
            "error_kinds": self.error_kinds,
        }


async def timed(outcome: HttpOutcome, call: Awaitable[Answer], expected: int) -> Answer | None:
    started = time.perf_counter()
    try:
        answer = await call
    except LoadError as error:
        outcome.failed(error.kind)
        return None
    if answer.status != expected:
        outcome.failed(str(answer.status))
        return None
    outcome.latencies.append(time.perf_counter() - started)
    return answer


class CpuClock:
    """CPU seconds this process (the load generator) spent, to show what the load itself cost."""

    def __init__(self) -> None:
        self._started = self._now()

    @staticmethod
    def _now() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def cores(self, seconds: float) -> float:
        return round((self._now() - self._started) / seconds, 2)


async def http_post_orders(
    options: BenchOptions, customer: str, progress: Progress
) -> tuple[Json, list[str]]:
    progress.phase(f"HTTP POST /api/orders: {options.connections} connections, {options.duration:g}s")
    outcome = HttpOutcome()
    created: list[str] = []
    deadline = time.perf_counter() + options.duration
    async with HttpLoad(options.orders_url, options.connections) as client:
        place = client.prepare(
            "POST", "/api/orders", headers={"Authorization": f"Bearer {customer}"}, json_body=order_body()
        )

        async def worker() -> None:
            while time.perf_counter() < deadline:
                answer = await timed(outcome, client.send(place), 201)
                if answer is not None:
                    created.append(answer.json()["id"])

        cpu = CpuClock()
        started = time.perf_counter()
        reporter = asyncio.create_task(_report(progress, lambda: f"{len(created)} created"))
        await asyncio.gather(*(worker() for _ in range(options.connections)))
        seconds = time.perf_counter() - started
        reporter.cancel()
    return {**outcome.summary(seconds), "load_generator_cores": cpu.cores(seconds)}, created


async def http_get_deliveries(
    options: BenchOptions, manager: str, delivery_ids: list[str], progress: Progress
) -> Json:
    progress.phase(f"HTTP GET /api/delivery/{{id}}: {options.connections} connections, {options.duration:g}s")
    outcome = HttpOutcome()
    headers = {"Authorization": f"Bearer {manager}"}
    deadline = time.perf_counter() + options.duration
    async with HttpLoad(options.delivery_url, options.connections) as client:
        reads = [client.prepare("GET", f"/api/delivery/{id_}", headers=headers) for id_ in delivery_ids]

        async def worker() -> None:
            while time.perf_counter() < deadline:
                await timed(outcome, client.send(random.choice(reads)), 200)

        cpu = CpuClock()
        started = time.perf_counter()
        reporter = asyncio.create_task(_report(progress, lambda: f"{len(outcome.latencies)} read"))
        await asyncio.gather(*(worker() for _ in range(options.connections)))
        seconds = time.perf_counter() - started
        reporter.cancel()
    return {**outcome.summary(seconds), "load_generator_cores": cpu.cores(seconds)}


class SystemDatabases:
    """Read-only look at the target system's databases, to see commits rather than poll the APIs."""

    def __init__(self, postgres: str, prefix: str) -> None:
        self._urls = {
            name: database_url(postgres, prefix + name).replace("postgresql+asyncpg://", "postgresql://")
            for name in ("orders", "delivery")
        }
        self._connections: dict[str, Any] = {}

    async def open(self) -> None:
        for name, url in self._urls.items():
            self._connections[name] = await asyncpg.connect(url)

    async def close(self) -> None:
        for connection in self._connections.values():
            await connection.close()

    async def deliveries_in(self, ids: list[uuid.UUID], statuses: tuple[str, ...]) -> int:
        count: int = await self._connections["delivery"].fetchval(
            "SELECT count(*) FROM deliveries WHERE id = ANY($1::uuid[]) AND status = ANY($2::text[])",
            ids,
            list(statuses),
        )
        return count

    async def lags(self, ids: list[uuid.UUID]) -> tuple[list[float], list[float]]:
        """Per order, seconds from the order's commit to its delivery's, for created and for paid."""
        orders = {
            row["id"]: row
            for row in await self._connections["orders"].fetch(
                "SELECT id, created_at, paid_at FROM orders WHERE id = ANY($1::uuid[])", ids
            )
        }
        created: list[float] = []
        activated: list[float] = []
        for row in await self._connections["delivery"].fetch(
            "SELECT id, created_at, activated_at FROM deliveries WHERE id = ANY($1::uuid[])", ids
        ):
            order = orders.get(row["id"])
            if order is None:
                continue
            created.append((row["created_at"] - order["created_at"]).total_seconds())
            if row["activated_at"] is not None and order["paid_at"] is not None:
                activated.append((row["activated_at"] - order["paid_at"]).total_seconds())
        return created, activated


async def wait_for_deliveries(
    databases: SystemDatabases,
    ids: list[uuid.UUID],
    statuses: tuple[str, ...],
    wait_seconds: float,
    progress: Progress,
) -> float:
    """Wait until every id has a delivery in one of `statuses`; the monotonic time it was seen."""
    deadline = time.monotonic() + wait_seconds
    while True:
        seen = await databases.deliveries_in(ids, statuses)
        progress.update(f"{seen}/{len(ids)} deliveries {'/'.join(statuses)}")
        if seen >= len(ids):
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"only {seen} of {len(ids)} deliveries reached {statuses} in {wait_seconds:.0f}s"
            )
        await asyncio.sleep(0.05)


async def end_to_end(
    options: BenchOptions,
    customer: str,
    databases: SystemDatabases,
    progress: Progress,
    *,
    orders: int,
    rate: float | None,
) -> Json:
    """Place and pay orders over HTTP (as fast as possible, or paced), then wait for activation."""
    label = f"paced at {rate:g} orders/s" if rate else f"{orders} orders, {options.connections} connections"
    progress.phase(f"end to end: placed, paid, activated ({label})")
    outcome = HttpOutcome()
    paid: list[uuid.UUID] = []
    headers = {"Authorization": f"Bearer {customer}"}
    gate = asyncio.Semaphore(options.connections)
    async with HttpLoad(options.orders_url, options.connections) as client:
        place = client.prepare("POST", "/api/orders", headers=headers, json_body=order_body())

        async def one() -> None:
            async with gate:
                answer = await timed(outcome, client.send(place), 201)
                if answer is None:
                    return
                order_id = answer.json()["id"]
                pay = client.prepare("POST", f"/api/orders/{order_id}/pay", headers=headers)
                if await timed(outcome, client.send(pay), 200):
                    paid.append(uuid.UUID(order_id))

        started = time.monotonic()
        reporter = asyncio.create_task(_report(progress, lambda: f"{len(paid)}/{orders} paid"))
        if rate:
            tasks = []
            for index in range(orders):
                await asyncio.sleep(max(0.0, started + index / rate - time.monotonic()))
                tasks.append(asyncio.create_task(one()))
            await asyncio.gather(*tasks)
        else:
            await asyncio.gather(*(one() for _ in range(orders)))
        placed_seconds = time.monotonic() - started
        reporter.cancel()
    activated_at = await wait_for_deliveries(databases, paid, ("activated",), options.timeout, progress)
    seconds = activated_at - started
    created_lags, activation_lags = await databases.lags(paid)
    return {
        "orders": orders,
        "offered_per_s": rate,
        "placed_and_paid_seconds": round(placed_seconds, 2),
        "seconds": round(seconds, 2),
        "orders_per_s": round(len(paid) / seconds, 1),
        "http_errors": outcome.errors,
        "error_kinds": outcome.error_kinds,
        "created_lag_p50_ms": round(percentile(created_lags, 0.5) * 1000, 1),
        "created_lag_p99_ms": round(percentile(created_lags, 0.99) * 1000, 1),
        "activation_lag_p50_ms": round(percentile(activation_lags, 0.5) * 1000, 1),
        "activation_lag_p99_ms": round(percentile(activation_lags, 0.99) * 1000, 1),
    }


def log_file(options: BenchOptions, name: str) -> Path:
    """Where a process the benchmark starts writes its log, out of the progress display's way."""
    folder = options.data_dir / "bench-logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}.log"


# The bench measures the services, not their rate limits: it turns those off.
UNLIMITED = {"RATE_LIMIT_PER_ADDRESS": "0", "RATE_LIMIT_PER_SUBJECT": "0"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Scratch:
    """A system of the benchmark's own (databases and broker names) for the drain phases."""

    def __init__(self, options: BenchOptions, token: str) -> None:
        self.options = options
        self.database_prefix = f"bench_{token}_"
        self.names = Names(f"bench.{token}.")
        self.urls: dict[str, str] = {}

    async def create(self) -> None:
        for service in SERVICES:
            if service.name in ("orders", "delivery"):
                url = await prepare_database(self.options.postgres, service, self.database_prefix)
                await asyncio.to_thread(migrate, url, service)
                self.urls[service.name] = url

    async def drop(self) -> None:
        for url in self.urls.values():
            await drop_database(url)
        await delete_broker_names(self.options.amqp, self.names)


async def delete_broker_names(amqp: str, names: Names) -> None:
    """Delete a system's queues (with their dead-letter and delay queues) and its exchange."""
    connection = await aio_pika.connect(amqp)
    try:
        channel = await connection.channel()
        for spec in (DELIVERY_ORDER_EVENTS, ORDERS_DELIVERY_EVENTS):
            queue = names.queue(spec)
            for name in (
                queue,
                names.dead_letter_queue(queue),
                *(names.retry_queue(queue, delay) for delay in RETRY_DELAYS),
            ):
                await channel.queue_delete(name)
        await channel.exchange_delete(names.exchange)
    finally:
        await connection.close()


async def outbox_drain(options: BenchOptions, scratch: Scratch, progress: Progress) -> Json:
    """K rows waiting in an orders outbox; the kit's relay, started, publishes them all with confirms."""
    progress.phase(f"outbox drain: {options.outbox_rows} waiting rows, relay started")
    database = Database(scratch.urls["orders"])
    broker = RabbitBroker(options.amqp, name="bench-relay")
    try:
        await broker.connect()
        # The delivery queue is bound, so the relay's mandatory publishes are routed.
        await broker.declare(
            service_topology(scratch.names, consumes=DELIVERY_ORDER_EVENTS, retry_delays=RETRY_DELAYS)
        )
        written = 0
        while written < options.outbox_rows:
            async with database.transaction() as session:
                outbox = Outbox(session, OrdersOutboxMessage, "/orders")
                for _ in range(min(1000, options.outbox_rows - written)):
                    order_id = uuid.uuid4()
                    outbox.emit(order_created(order_id), subject=str(order_id))
                    written += 1
            progress.update(f"{written} rows written")
        relay = OutboxRelay(database, broker, OrdersOutboxMessage, exchange=scratch.names.exchange)
        confirmed = 0
        started = time.perf_counter()
        while confirmed < options.outbox_rows:
            batch = await relay.relay_batch()
            if batch == 0 and time.perf_counter() - started > options.timeout:
                raise TimeoutError(f"the relay confirmed {confirmed} of {options.outbox_rows}")
            confirmed += batch
            progress.update(f"{confirmed}/{options.outbox_rows} confirmed")
        seconds = time.perf_counter() - started
    finally:
        await broker.close()
        await database.dispose()
    return {
        "events": confirmed,
        "seconds": round(seconds, 2),
        "events_per_s": round(confirmed / seconds, 1),
        "batch_size": RELAY_WINDOW,
    }


async def queue_depth(amqp: str, queue: str) -> int:
    connection = await aio_pika.connect(amqp)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)
    finally:
        await connection.close()


async def consumer_drain(options: BenchOptions, scratch: Scratch, progress: Progress) -> tuple[Json, float]:
    """M events in the delivery queue while no consumer runs; a delivery process started drains them."""
    progress.phase(f"consumer drain: {options.events} order.created queued, delivery service started")
    queue = scratch.names.queue(DELIVERY_ORDER_EVENTS)
    connection = await aio_pika.connect(options.amqp)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await (await channel.declare_queue(queue, passive=True)).purge()  # the outbox phase's events
        exchange = await channel.get_exchange(scratch.names.exchange)
        await publish_confirmed(
            channel,
            exchange,
            "order.created",
            options.events,
            lambda sent: progress.update(f"{sent}/{options.events} queued"),
        )
    finally:
        await connection.close()

    delivery = next(service for service in SERVICES if service.name == "delivery")
    stack = Stack()
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": scratch.urls["delivery"],
        "AMQP_URL": options.amqp,
        "BROKER_PREFIX": scratch.names.prefix,
        "LEGACY_QUEUE_PREFIX": "",
        "KEYS_DIR": str((options.data_dir / "keys").resolve()),
        "LOG_LEVEL": "WARNING",
        **UNLIMITED,
    }
    spawned = time.monotonic()
    stack.start(delivery, env, options.host, port, log=log_file(options, "drain-delivery"))
    plain = scratch.urls["delivery"].replace("postgresql+asyncpg://", "postgresql://")
    database = await asyncpg.connect(plain)
    try:
        deadline = time.monotonic() + options.timeout
        while True:
            if stack.exited():
                raise RuntimeError(f"the delivery process stopped: {stack.exited()}")
            applied = await database.fetchval("SELECT count(*) FROM deliveries")
            progress.update(f"{applied}/{options.events} applied")
            if applied >= options.events and await queue_depth(options.amqp, queue) == 0:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{applied} of {options.events} applied in {options.timeout:.0f}s")
            await asyncio.sleep(0.1)
        wall_seconds = time.monotonic() - spawned
        first, last, deliveries, inbox = await database.fetchrow(
            "SELECT min(created_at), max(created_at), count(*), (SELECT count(*) FROM inbox) FROM deliveries"
        )
        memory = rss_mb(stack.processes["delivery"].pid)
    finally:
        await database.close()
        await asyncio.to_thread(stack.stop)
    span = max((last - first).total_seconds(), 1e-6)
    return {
        "events": options.events,
        "deliveries": deliveries,
        "inbox_rows": inbox,
        "applied_exactly_once": deliveries == options.events and inbox == options.events,
        "seconds": round(span, 2),
        # From the first delivery's commit to the last: the process's start-up is not drain time.
        "events_per_s": round((deliveries - 1) / span, 1),
        "seconds_from_process_start": round(wall_seconds, 2),
        "prefetch": CONSUMER_PREFETCH,
    }, memory


def rss_mb(pid: int) -> float:
    """Resident memory of the largest process of a service: the service process, or with several
    workers the largest of them (their supervisor holds little)."""
    largest_kb = 0
    for each in (pid, *_children(pid)):
        with suppress(OSError):
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    largest_kb = max(largest_kb, int(line.split()[1]))
    return round(largest_kb / 1024, 1)


def service_processes(pid: int) -> int:
    """How many processes of a service answer requests: its workers, or the process itself."""
    workers = [child for child in _children(pid) if "spawn_main" in _command_line(child)]
    return len(workers) or 1


def _command_line(pid: int) -> str:
    with suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return ""


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with suppress(OSError):
                found.extend(int(child) for child in (task / "children").read_text().split())
    for child in list(found):
        found.extend(_children(child))
    return found


def listening_pid(port: int) -> int | None:
    """The process that listens on a local TCP port, found through /proc (no extra tools)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    if not inodes:
        return None
    for process in Path("/proc").iterdir():
        if not process.name.isdigit():
            continue
        with suppress(OSError):
            for descriptor in (process / "fd").iterdir():
                target = os.readlink(descriptor)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    pid = int(process.name)
                    # uvicorn workers share the socket: report their parent, whose tree is counted.
                    parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
                    return parent if _listens(parent, inodes) else pid
    return None


def _listens(pid: int, inodes: set[str]) -> bool:
    with suppress(OSError):
        for descriptor in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(descriptor)
            if target.startswith("socket:[") and target[8:-1] in inodes:
                return True
    return False


def service_pids(urls: dict[str, str], known: dict[str, int]) -> dict[str, int | None]:
    return {name: known.get(name) or listening_pid(httpx.URL(url).port or 80) for name, url in urls.items()}


def service_memory(pids: dict[str, int | None]) -> Json:
    return {name: rss_mb(pid) if pid else None for name, pid in pids.items()}


def git_revision() -> str:
    try:
        revision = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True).stdout
        return revision + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


@contextmanager
def started_system(options: BenchOptions, token: str) -> Iterator[dict[str, int]]:
    """With --start: a system of the benchmark's own, as `deliveryhub up` starts one."""
    if not options.start:
        yield {}
        return
    ports = {service.name: free_port() for service in SERVICES}
    up = UpOptions(
        postgres=options.postgres,
        amqp=options.amqp,
        host=options.host,
        data_dir=options.data_dir,
        broker_prefix=f"bench.{token}.system.",
        database_prefix=f"bench_{token}_system_",
        legacy_queue_prefix="",
        ports=ports,
    )
    options.broker_prefix, options.database_prefix = up.broker_prefix, up.database_prefix
    options.orders_url = f"http://{options.host}:{ports['orders']}"
    options.delivery_url = f"http://{options.host}:{ports['delivery']}"
    with redirect_stdout(sys.stderr):  # stdout is kept for the table or the JSON
        urls = prepare(up)
    keys_dir = (options.data_dir / "keys").resolve()
    ensure_development_keys(keys_dir)
    stack = Stack()
    try:
        for service in SERVICES:
            env = {
                **os.environ,
                "DATABASE_URL": urls[service.name],
                "AMQP_URL": options.amqp,
                "BROKER_PREFIX": up.broker_prefix,
                "LEGACY_QUEUE_PREFIX": "",
                "KEYS_DIR": str(keys_dir),
                "LOG_LEVEL": "WARNING",
                **UNLIMITED,
                "ORDERS_URL": options.orders_url,
                "DELIVERY_URL": options.delivery_url,
            }
            stack.start(
                service,
                env,
                options.host,
                ports[service.name],
                log=log_file(options, service.name),
                workers=options.workers,
            )
        wait_until_ready(stack, {name: f"http://{options.host}:{port}" for name, port in ports.items()}, 60.0)
        yield {name: process.pid for name, process in stack.processes.items()}
    finally:
        stack.stop()
        for url in urls.values():
            asyncio.run(drop_database(url))
        asyncio.run(delete_broker_names(options.amqp, Names(up.broker_prefix)))


async def measure(options: BenchOptions, token: str, pids: dict[str, int]) -> Json:
    progress = Progress(phases=11)
    scratch = Scratch(options, token)
    keys_dir = options.data_dir / "keys"
    customer = make_token(keys_dir, Role.CUSTOMER)
    manager = make_token(keys_dir, Role.MANAGER)
    databases = SystemDatabases(options.postgres, options.database_prefix)
    await databases.open()
    results: Json = {}
    try:
        results["raw"] = {
            **await raw_rabbitmq(options, scratch.names, progress),
            **await raw_postgres(options, scratch.database_prefix, progress),
        }
        results["e2e"] = await end_to_end(
            options, customer, databases, progress, orders=options.orders, rate=None
        )
        post, created = await http_post_orders(options, customer, progress)
        results["http_post_orders"] = post
        # The POST phase leaves a backlog of events; reads start once the deliveries exist.
        created_ids = [uuid.UUID(each) for each in created]
        await wait_for_deliveries(databases, created_ids, ("created",), options.timeout, progress)
        results["http_get_delivery"] = await http_get_deliveries(options, manager, created, progress)
        results["e2e_paced"] = await end_to_end(
            options,
            customer,
            databases,
            progress,
            orders=max(1, int(options.paced_rate * options.paced_seconds)),
            rate=options.paced_rate,
        )
        # The lag below saturation: paced at a share of what the unpaced phase sustained.
        sustained = max(1.0, round(SUSTAINED_SHARE * results["e2e"]["orders_per_s"]))
        results["e2e_sustained"] = await end_to_end(
            options,
            customer,
            databases,
            progress,
            orders=max(1, int(sustained * options.paced_seconds)),
            rate=sustained,
        )
        progress.phase("scratch databases for the drains")
        await scratch.create()
        try:
            results["outbox_drain"] = await outbox_drain(options, scratch, progress)
            results["consumer_drain"], drain_memory = await consumer_drain(options, scratch, progress)
        finally:
            await scratch.drop()
        progress.phase("resident memory")
        system = service_pids({"orders": options.orders_url, "delivery": options.delivery_url}, pids)
        results["memory_mb"] = {**service_memory(system), "delivery (after its drain)": drain_memory}
        results["processes"] = {name: service_processes(pid) if pid else None for name, pid in system.items()}
        if "web" in pids:
            results["memory_mb"]["web"] = rss_mb(pids["web"])
    finally:
        progress.done()
        await databases.close()
    return results


def run_bench(options: BenchOptions) -> int:
    token = uuid.uuid4().hex[:8]
    started = time.monotonic()
    try:
        with started_system(options, token) as pids:
            results = asyncio.run(measure(options, token, pids))
    except (
        OSError,
        TimeoutError,
        RuntimeError,
        asyncpg.PostgresError,
        aio_pika.exceptions.AMQPError,
    ) as error:
        print(f"deliveryhub bench: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    run: Json = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "revision": git_revision(),
        "machine": {
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "options": {
            "connections": options.connections,
            "duration_s": options.duration,
            "raw_seconds": options.raw_seconds,
            "orders": options.orders,
            "paced_rate": options.paced_rate,
            "paced_seconds": options.paced_seconds,
            "events": options.events,
            "outbox_rows": options.outbox_rows,
            "started_its_own_system": options.start,
            "workers_started": options.workers if options.start else None,
        },
        "results": results,
        "run_seconds": round(time.monotonic() - started, 1),
    }
    run["figures"] = figures(run)
    options.results_dir.mkdir(parents=True, exist_ok=True)
    path = options.results_dir / f"{run['at'].replace(':', '')[:17]}-{run['revision']}.json"
    path.write_text(json.dumps(run, indent=2, ensure_ascii=False) + "\n")
    if options.json_output:
        print(json.dumps(run, indent=2, ensure_ascii=False))
    else:
        print(render_table(run))
        print(f"\nwritten to {path}")
    return 0


def figures(run: Json) -> list[Json]:
    """Each headline figure beside the raw limit it is bounded by, the ratio and its target."""
    r = run["results"]
    raw = r["raw"]
    pg, publish, consume = raw["transactions_per_s"], raw["publish_per_s"], raw["consume_per_s"]
    post, get = r["http_post_orders"], r["http_get_delivery"]
    e2e, paced = r["e2e"], r["e2e_paced"]
    # One order placed and paid costs four transactions in orders and delivery, two of each message.
    e2e_limit = min(pg / 4, publish / 2, consume / 2)
    rows: list[Json] = [
        _figure("raw PostgreSQL order tx/s", pg, None, None),
        _figure("raw RabbitMQ publish+confirm/s", publish, None, None),
        _figure("raw RabbitMQ consume+ack/s", consume, None, None),
        _figure("POST /api/orders req/s", post["requests_per_s"], pg, TARGETS["http_post_orders_rps"], ">="),
        _figure("POST /api/orders p50 ms", post["p50_ms"], None, None),
        _figure("POST /api/orders p95 ms", post["p95_ms"], None, None),
        _figure("POST /api/orders p99 ms", post["p99_ms"], None, TARGETS["http_post_orders_p99_ms"], "<="),
        _figure("POST /api/orders errors", post["errors"], None, 0, "<="),
        _figure("GET /api/delivery/{id} req/s", get["requests_per_s"], pg, None),
        _figure("GET /api/delivery/{id} p50 ms", get["p50_ms"], None, None),
        _figure("GET /api/delivery/{id} p95 ms", get["p95_ms"], None, None),
        _figure("GET /api/delivery/{id} p99 ms", get["p99_ms"], None, None),
        _figure("GET /api/delivery/{id} errors", get["errors"], None, 0, "<="),
        _figure("end to end orders/s", e2e["orders_per_s"], e2e_limit, TARGETS["e2e_orders_per_s"], ">="),
        _figure("end to end errors", e2e["http_errors"], None, 0, "<="),
        _figure("end to end created lag p50 ms", e2e["created_lag_p50_ms"], None, None),
        _figure("end to end activation lag p99 ms", e2e["activation_lag_p99_ms"], None, None),
        _figure(
            f"paced {paced['offered_per_s']:g}/s activation lag p50 ms",
            paced["activation_lag_p50_ms"],
            None,
            None,
        ),
        _figure(
            f"paced {paced['offered_per_s']:g}/s activation lag p99 ms",
            paced["activation_lag_p99_ms"],
            None,
            TARGETS["paced_activation_lag_p99_ms"],
            "<=",
        ),
        _figure("paced errors", paced["http_errors"], None, 0, "<="),
        *(
            _figure(
                f"paced at 70 %: {what}",
                sustained[key],
                None,
                0 if key == "http_errors" else None,
                "<=",
            )
            for what, key in (
                ("orders/s offered", "offered_per_s"),
                ("activation lag p50 ms", "activation_lag_p50_ms"),
                ("activation lag p99 ms", "activation_lag_p99_ms"),
                ("errors", "http_errors"),
            )
            if (sustained := r.get("e2e_sustained"))
        ),
        _figure(
            "consumer drain events/s",
            r["consumer_drain"]["events_per_s"],
            consume,
            TARGETS["consumer_drain_events_per_s"],
            ">=",
        ),
        _figure(
            "outbox drain events/s",
            r["outbox_drain"]["events_per_s"],
            publish,
            TARGETS["outbox_drain_events_per_s"],
            ">=",
        ),
    ]
    for name, megabytes in r["memory_mb"].items():
        if megabytes is not None:
            rows.append(_figure(f"RSS {name} MB", megabytes, None, TARGETS["rss_mb"], "<="))
    return rows


def _figure(name: str, value: float, limit: float | None, target: float | None, sense: str = "") -> Json:
    met = None
    if target is not None:
        met = value >= target if sense == ">=" else value <= target
    return {
        "name": name,
        "value": value,
        "limit": limit,
        "ratio": round(value / limit, 3) if limit else None,
        "target": f"{sense} {target:g}" if target is not None else None,
        "met": met,
    }


def render_table(run: Json) -> str:
    machine = run["machine"]
    lines = [
        f"Delivery Hub bench, {run['at']}, revision {run['revision']}, {machine['cores']} cores, "
        f"{run['run_seconds']}s",
        "processes per service: "
        + ", ".join(f"{name} {count}" for name, count in run["results"].get("processes", {}).items()),
        "",
        f"{'measure':42} {'value':>10} {'raw limit':>10} {'ratio':>7}  {'target':>9}  met",
        "-" * 88,
    ]
    for row in run["figures"]:
        lines.append(
            f"{row['name']:42} {_number(row['value']):>10} {_number(row['limit']):>10} "
            f"{_number(row['ratio']):>7}  {row['target'] or '':>9}  "
            f"{'' if row['met'] is None else ('yes' if row['met'] else 'NO')}"
        )
    return "\n".join(lines)


def _number(value: float | None) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value < 10:
        return f"{value:.3g}" if value < 1 else f"{value:.2f}"
    return f"{value:,.0f}" if isinstance(value, float) else f"{value:,}"


def compare(first: Path, second: Path) -> int:
    """Two runs' figures side by side."""
    runs = [json.loads(path.read_text()) for path in (first, second)]
    left = {row["name"]: row for row in runs[0]["figures"]}
    right = {row["name"]: row for row in runs[1]["figures"]}
    print(f"{'measure':42} {first.name[:24]:>24} {second.name[:24]:>24} {'B/A':>7}")
    for run in runs:
        print(f"  {run['at']} {run['revision']} {run['machine']['cores']} cores")
    print("-" * 100)
    for name in [*left, *(name for name in right if name not in left)]:
        a = left.get(name, {}).get("value")
        b = right.get(name, {}).get("value")
        change = f"{b / a:.2f}" if isinstance(a, int | float) and isinstance(b, int | float) and a else ""
        print(f"{name:42} {_number(a):>24} {_number(b):>24} {change:>7}")
    return 0
