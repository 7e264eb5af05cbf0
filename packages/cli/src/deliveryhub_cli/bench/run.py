"""The run: every phase in order against the target system, and the run recorded."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid

import aio_pika
import asyncpg

from deliveryhub_cli.bench.drains import consumer_drain, outbox_drain
from deliveryhub_cli.bench.http_load import http_get_deliveries, http_post_orders
from deliveryhub_cli.bench.options import BenchOptions, Json
from deliveryhub_cli.bench.pipeline import SystemDatabases, end_to_end, wait_for_deliveries
from deliveryhub_cli.bench.processes import rss_mb, service_memory, service_pids, service_processes
from deliveryhub_cli.bench.raw import raw_postgres, raw_rabbitmq
from deliveryhub_cli.bench.report import record, write_and_print
from deliveryhub_cli.bench.systems import Scratch, started_system
from deliveryhub_cli.bench.timing import Progress
from deliveryhub_cli.tokens import make_token
from deliveryhub_kit.identity import Role

# The share of the measured end-to-end rate offered to see the lag of a system that keeps up.
SUSTAINED_SHARE = 0.7


async def measure(options: BenchOptions, token: str, pids: dict[str, int]) -> Json:
    """Every phase in turn against the target system; the results by section."""
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
    """Measure every phase, write the run to the results folder and print it; the exit code."""
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
    write_and_print(record(options, results, started), options)
    return 0
