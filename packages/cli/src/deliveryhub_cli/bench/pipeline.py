"""The end-to-end pipeline: orders placed and paid over HTTP (as fast as possible, or paced), seen
created and activated in the delivery service's database, and the lag of each step."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import asyncpg

from deliveryhub_cli.bench.http_load import HttpOutcome, timed
from deliveryhub_cli.bench.options import BenchOptions, Json
from deliveryhub_cli.bench.payloads import order_body
from deliveryhub_cli.bench.timing import Progress, keep_reporting, percentile
from deliveryhub_cli.loadgen import HttpLoad
from deliveryhub_cli.services import database_url


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

    async def activated_since(self, due: dict[uuid.UUID, datetime]) -> list[float]:
        """Per order, seconds from the moment it was due to be placed to its delivery's activation."""
        rows = await self._connections["delivery"].fetch(
            "SELECT id, activated_at FROM deliveries WHERE id = ANY($1::uuid[]) AND activated_at IS NOT NULL",
            list(due),
        )
        return [(row["activated_at"] - due[row["id"]]).total_seconds() for row in rows]

    async def vacuum(self) -> None:
        """VACUUM (ANALYZE) both databases, as pgbench does before a run: the rows the phases
        before left dead (each paid order, each published outbox row) are not scanned again by the
        next one, whether or not the server's autovacuum is on or has come round yet."""
        for connection in self._connections.values():
            await connection.execute("VACUUM (ANALYZE)")

    async def waiting_events(self) -> int:
        """Outbox rows not yet published, in both services."""
        total = 0
        for connection in self._connections.values():
            total += await connection.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        return total


async def queued_messages(connection: aio_pika.abc.AbstractConnection, queues: list[str]) -> int:
    """Messages ready in the services' queues (a queue not declared yet holds none)."""
    total = 0
    for name in queues:
        channel = await connection.channel()
        try:
            queue = await channel.declare_queue(name, passive=True)
        except aio_pika.exceptions.ChannelClosed:
            continue
        total += queue.declaration_result.message_count or 0
        await channel.close()
    return total


async def settle(
    databases: SystemDatabases, amqp: str, queues: list[str], wait_seconds: float, progress: Progress
) -> Json:
    """Wait until the phases before have left nothing behind (no outbox row waiting, no message
    queued), then vacuum, so that a phase does not pay for the ones before it; how long that took."""
    started = time.monotonic()
    deadline = started + wait_seconds
    connection = await aio_pika.connect(amqp)
    try:
        while True:
            left = await databases.waiting_events() + await queued_messages(connection, queues)
            if left == 0:
                settled = time.monotonic()
                progress.update("vacuuming the databases")
                await databases.vacuum()
                return {
                    "settled": True,
                    "seconds": round(settled - started, 2),
                    "vacuum_seconds": round(time.monotonic() - settled, 2),
                }
            progress.update(f"settling: {left} events left from before")
            if time.monotonic() > deadline:
                return {"settled": False, "seconds": round(time.monotonic() - started, 2), "left": left}
            await asyncio.sleep(0.2)
    finally:
        await connection.close()


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

        async def one(intended: float | None = None) -> None:
            # Paced, an order is due at its intended time: waiting for a free connection counts.
            async with gate:
                if intended is not None and time.monotonic() > window_ends:
                    unsent.append(intended)  # its time came while the system was behind
                    return
                answer = await timed(outcome, client.send(place), 201)
                if answer is None:
                    return
                order_id = answer.json()["id"]
                pay = client.prepare("POST", f"/api/orders/{order_id}/pay", headers=headers)
                if await timed(outcome, client.send(pay), 200):
                    paid.append(uuid.UUID(order_id))
                    if intended is not None:
                        due[uuid.UUID(order_id)] = wall_started + timedelta(seconds=intended)
                        answered.append(time.monotonic() - started - intended)

        started = time.monotonic()
        wall_started = datetime.now(UTC)
        # Paced, the phase lasts as long as its schedule: what could not be sent by then is not.
        window_ends = started + orders / rate if rate else float("inf")
        unsent: list[float] = []
        due: dict[uuid.UUID, datetime] = {}
        answered: list[float] = []
        reporter = asyncio.create_task(keep_reporting(progress, lambda: f"{len(paid)}/{orders} paid"))
        if rate:
            tasks = []
            for index in range(orders):
                await asyncio.sleep(max(0.0, started + index / rate - time.monotonic()))
                tasks.append(asyncio.create_task(one(index / rate)))
            await asyncio.gather(*tasks)
        else:
            await asyncio.gather(*(one() for _ in range(orders)))
        placed_seconds = time.monotonic() - started
        reporter.cancel()
    activated_at = await wait_for_deliveries(databases, paid, ("activated",), options.timeout, progress)
    seconds = activated_at - started
    created_lags, activation_lags = await databases.lags(paid)
    from_intended = await databases.activated_since(due) if due else []
    return {
        "orders": orders,
        "offered_per_s": rate,
        "placed_and_paid_seconds": round(placed_seconds, 2),
        "seconds": round(seconds, 2),
        "orders_per_s": round(len(paid) / seconds, 1),
        "not_sent": len(unsent),
        "http_errors": outcome.errors,
        "error_kinds": outcome.error_kinds,
        "created_lag_p50_ms": round(percentile(created_lags, 0.5) * 1000, 1),
        "created_lag_p99_ms": round(percentile(created_lags, 0.99) * 1000, 1),
        "activation_lag_p50_ms": round(percentile(activation_lags, 0.5) * 1000, 1),
        "activation_lag_p99_ms": round(percentile(activation_lags, 0.99) * 1000, 1),
        # Paced: from each order's intended send time, so that queueing for a connection shows.
        **(
            {
                "placed_and_paid_from_intended_p50_ms": round(percentile(answered, 0.5) * 1000, 1),
                "placed_and_paid_from_intended_p99_ms": round(percentile(answered, 0.99) * 1000, 1),
                "activated_from_intended_p50_ms": round(percentile(from_intended, 0.5) * 1000, 1),
                "activated_from_intended_p99_ms": round(percentile(from_intended, 0.99) * 1000, 1),
            }
            if rate
            else {}
        ),
    }
