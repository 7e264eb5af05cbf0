"""The drains: an orders outbox of waiting rows published by the kit's relay, and a queue of
waiting events applied by a delivery process started on it, each on the scratch system."""

from __future__ import annotations

import asyncio
import time
import uuid

import aio_pika
import asyncpg

from deliveryhub_cli.bench.options import CONSUMER_PREFETCH, RELAY_WINDOW, RETRY_DELAYS, BenchOptions, Json
from deliveryhub_cli.bench.payloads import order_created
from deliveryhub_cli.bench.processes import rss_mb
from deliveryhub_cli.bench.raw import publish_confirmed
from deliveryhub_cli.bench.systems import Scratch, bench_environment, free_port, log_file
from deliveryhub_cli.bench.timing import Progress
from deliveryhub_cli.services import SERVICES
from deliveryhub_cli.up import Stack
from deliveryhub_contracts.topology import DELIVERY_ORDER_EVENTS
from deliveryhub_kit.db import Database
from deliveryhub_kit.outbox import Outbox, OutboxRelay
from deliveryhub_kit.rabbitmq import RabbitBroker
from deliveryhub_kit.topology import service_topology
from deliveryhub_orders.models import OutboxMessage as OrdersOutboxMessage


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
    """How many messages wait in `queue`."""
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
    env = bench_environment(options, scratch.urls["delivery"], scratch.names.prefix)
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
