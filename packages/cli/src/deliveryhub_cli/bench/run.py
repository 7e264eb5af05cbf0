"""The run: every phase in order against the target system, and the run recorded."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Awaitable

import aio_pika
import asyncpg

from deliveryhub_cli.bench.cpu import CpuWatch, Members, named, process_tree
from deliveryhub_cli.bench.drains import consumer_drain, outbox_drain
from deliveryhub_cli.bench.http_load import http_get_deliveries, http_post_orders
from deliveryhub_cli.bench.options import BenchOptions, Json
from deliveryhub_cli.bench.payloads import order_body
from deliveryhub_cli.bench.pipeline import SystemDatabases, end_to_end, settle, wait_for_deliveries
from deliveryhub_cli.bench.processes import rss_mb, service_memory, service_pids, service_processes
from deliveryhub_cli.bench.raw import raw_postgres, raw_rabbitmq
from deliveryhub_cli.bench.report import record, write_and_print
from deliveryhub_cli.bench.systems import Scratch, started_system, started_yardstick
from deliveryhub_cli.bench.timing import Progress
from deliveryhub_cli.bench.wrk import run_wrk, wrk_path
from deliveryhub_cli.tokens import make_token
from deliveryhub_contracts.topology import DELIVERY_ORDER_EVENTS, ORDERS_DELIVERY_EVENTS, Names
from deliveryhub_kit.identity import Role

# The share of the measured end-to-end rate offered to see the lag of a system that keeps up.
SUSTAINED_SHARE = 0.7


async def measure(options: BenchOptions, token: str, pids: dict[str, int]) -> Json:
    """Every phase in turn against the target system; the results by section, each timed phase
    with the CPU each process group spent during it."""
    wrk = wrk_path() is not None
    progress = Progress(phases=13 + (3 if wrk else 0))
    scratch = Scratch(options, token)
    keys_dir = options.data_dir / "keys"
    customer = make_token(keys_dir, Role.CUSTOMER)
    manager = make_token(keys_dir, Role.MANAGER)
    databases = SystemDatabases(options.postgres, options.database_prefix)
    system = service_pids({"orders": options.orders_url, "delivery": options.delivery_url}, pids)
    groups: dict[str, Members] = {name: process_tree(pid) for name, pid in system.items() if pid}
    if "web" in pids:
        groups["web"] = process_tree(pids["web"])
    bench_pid = os.getpid()
    groups |= {"postgres": named("postgres"), "rabbitmq": named("beam.smp"), "bench": lambda: (bench_pid,)}
    watch = CpuWatch(groups)
    await databases.open()
    results: Json = {"wrk": {"installed": wrk}}
    try:
        results["raw"] = {
            **await raw_rabbitmq(options, scratch.names, progress),
            **await raw_postgres(options, scratch.database_prefix, progress),
        }
        names = Names(options.broker_prefix)
        queues = [names.queue(DELIVERY_ORDER_EVENTS), names.queue(ORDERS_DELIVERY_EVENTS)]

        async def settled() -> Json:
            return await settle(databases, options.amqp, queues, options.timeout, progress)

        results["e2e"] = await watched(
            watch,
            end_to_end(options, customer, databases, progress, orders=options.orders, rate=None),
            await settled(),
        )
        post_body = json.dumps(order_body()).encode()
        bearer = {"Authorization": f"Bearer {customer}", "Content-Type": "application/json"}
        if wrk:
            progress.phase(f"wrk POST /api/orders: {options.connections} connections, {options.duration:g}s")
            results["wrk"]["http_post_orders"] = await watched(
                watch,
                _wrk(options, f"{options.orders_url}/api/orders", "POST", bearer, post_body),
                await settled(),
            )
        before_post = await settled()
        before = watch.reading()
        post, created = await http_post_orders(options, customer, progress)
        results["http_post_orders"] = {
            **post,
            "cpu": CpuWatch.cores(before, watch.reading(), post["seconds"]),
            "settle": before_post,
        }
        # The POST phases leave a backlog of events; reads start once the deliveries exist.
        created_ids = [uuid.UUID(each) for each in created]
        await wait_for_deliveries(databases, created_ids, ("created",), options.timeout, progress)
        results["http_get_delivery"] = await watched(
            watch, http_get_deliveries(options, manager, created, progress), await settled()
        )
        if wrk:
            progress.phase(
                f"wrk GET /api/delivery/{{id}}: {options.connections} connections, {options.duration:g}s"
            )
            reads = {"Authorization": f"Bearer {manager}"}
            paths = [f"/api/delivery/{each}" for each in created[:5000]]
            results["wrk"]["http_get_delivery"] = await watched(
                watch, _wrk(options, options.delivery_url, "GET", reads, None, paths)
            )
        async with started_yardstick(options, token) as (yardstick_url, yardstick_pid):
            lean = CpuWatch({**groups, "yardstick": process_tree(yardstick_pid)})
            before_yardstick = await settled()
            before = lean.reading()
            yardstick, _ = await http_post_orders(
                options, customer, progress, url=yardstick_url, what=" of the lean yardstick"
            )
            results["yardstick"] = {
                **yardstick,
                "cpu": CpuWatch.cores(before, lean.reading(), yardstick["seconds"]),
                "settle": before_yardstick,
            }
            if wrk:
                progress.phase(f"wrk POST /api/orders of the lean yardstick: {options.duration:g}s")
                results["wrk"]["yardstick"] = await watched(
                    lean, _wrk(options, f"{yardstick_url}/api/orders", "POST", bearer, post_body)
                )

        async def paced(rate: float, seconds: float) -> Json:
            orders = max(1, int(rate * seconds))
            return await watched(
                watch,
                end_to_end(options, customer, databases, progress, orders=orders, rate=rate),
                await settled(),
            )

        results["e2e_paced"] = await paced(options.paced_rate, options.paced_seconds)
        # The lag below saturation: paced at a share of what the unpaced phase sustained.
        sustained = max(1.0, round(SUSTAINED_SHARE * results["e2e"]["orders_per_s"]))
        results["e2e_sustained"] = await paced(sustained, options.paced_seconds)
        results["e2e_offered"] = await paced(options.offered_rate, options.offered_seconds)
        progress.phase("scratch databases for the drains")
        await scratch.create()
        try:
            results["outbox_drain"] = await outbox_drain(options, scratch, progress)
            results["consumer_drain"], drain_memory = await consumer_drain(options, scratch, progress)
        finally:
            await scratch.drop()
        progress.phase("resident memory")
        results["memory_mb"] = {**service_memory(system), "delivery (after its drain)": drain_memory}
        results["processes"] = {name: service_processes(pid) if pid else None for name, pid in system.items()}
        if "web" in pids:
            results["memory_mb"]["web"] = rss_mb(pids["web"])
    finally:
        progress.done()
        await databases.close()
    return results


async def watched(watch: CpuWatch, phase: Awaitable[Json], settled: Json | None = None) -> Json:
    """A phase's results with the cores each process group spent while it ran (and how the
    system settled before it)."""
    before, started = watch.reading(), time.perf_counter()
    result = await phase
    cpu = CpuWatch.cores(before, watch.reading(), time.perf_counter() - started)
    return {**result, "cpu": cpu, **({"settle": settled} if settled else {})}


async def _wrk(
    options: BenchOptions,
    url: str,
    method: str,
    headers: dict[str, str],
    body: bytes | None,
    paths: list[str] | None = None,
) -> Json:
    return await asyncio.to_thread(
        run_wrk,
        url,
        method=method,
        headers=headers,
        body=body,
        paths=paths,
        connections=options.connections,
        seconds=options.duration,
    )


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
