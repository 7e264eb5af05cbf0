"""The raw limits: RabbitMQ publish with confirms and consume with ack, PostgreSQL transactions
shaped like one order, at the services' concurrency and on temporary names."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime
from decimal import Decimal

import aio_pika
import asyncpg

from deliveryhub_cli.bench.options import (
    CONSUMER_PREFETCH,
    DATABASE_CONNECTIONS,
    RELAY_WINDOW,
    BenchOptions,
    Json,
)
from deliveryhub_cli.bench.payloads import amqp_message, order_body, order_created_message
from deliveryhub_cli.bench.timing import Progress, keep_reporting
from deliveryhub_cli.services import database_url
from deliveryhub_contracts.topology import Names
from deliveryhub_kit.migrations import create_database_if_missing, drop_database


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
                exchange.publish(amqp_message(order_created_message()), routing_key, mandatory=True)
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
            reporter = asyncio.create_task(keep_reporting(progress, lambda: f"{done} transactions"))
            await asyncio.gather(*(worker() for _ in range(DATABASE_CONNECTIONS)))
            seconds = time.perf_counter() - started
            reporter.cancel()
        finally:
            await pool.close()
    finally:
        await drop_database(url)
    return {"connections": DATABASE_CONNECTIONS, "transactions_per_s": round(done / seconds, 1)}
