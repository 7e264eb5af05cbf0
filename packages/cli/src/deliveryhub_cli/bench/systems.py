"""The systems of the benchmark's own: the one `--start` runs as `deliveryhub up` does, and the
scratch databases and broker names of the drain phases."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager, redirect_stdout, suppress
from pathlib import Path

import aio_pika
import httpx

from deliveryhub_cli.bench.options import RETRY_DELAYS, BenchOptions
from deliveryhub_cli.environment import console_upstreams, service_environment, service_urls
from deliveryhub_cli.services import SERVICES, migrate, prepare_database
from deliveryhub_cli.up import Stack, UpOptions, prepare, wait_until_ready
from deliveryhub_contracts.topology import DELIVERY_ORDER_EVENTS, ORDERS_DELIVERY_EVENTS, Names
from deliveryhub_kit.keys import ensure_development_keys
from deliveryhub_kit.migrations import drop_database


def log_file(options: BenchOptions, name: str) -> Path:
    """Where a process the benchmark starts writes its log, out of the progress display's way."""
    folder = options.data_dir / "bench-logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}.log"


# The bench measures the services, not their rate limits: it turns those off.
UNLIMITED = {"RATE_LIMIT_PER_ADDRESS": "0", "RATE_LIMIT_PER_SUBJECT": "0"}


def bench_environment(
    options: BenchOptions, database_url: str, broker_prefix: str, overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """A service's environment as the bench starts it: the development keys, no queues of the
    teaching design, warnings only and no rate limits."""
    return service_environment(
        database_url=database_url,
        amqp_url=options.amqp,
        broker_prefix=broker_prefix,
        keys_dir=(options.data_dir / "keys").resolve(),
        overrides={"LEGACY_QUEUE_PREFIX": "", "LOG_LEVEL": "WARNING", **UNLIMITED, **(overrides or {})},
    )


def free_port() -> int:
    """A local TCP port nothing listens on now."""
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
    bases = service_urls(options.host, ports)
    options.orders_url, options.delivery_url = bases["orders"], bases["delivery"]
    with redirect_stdout(sys.stderr):  # stdout is kept for the table or the JSON
        urls = prepare(up)
    ensure_development_keys((options.data_dir / "keys").resolve())
    stack = Stack()
    try:
        for service in SERVICES:
            env = bench_environment(options, urls[service.name], up.broker_prefix, console_upstreams(bases))
            stack.start(
                service,
                env,
                options.host,
                ports[service.name],
                log=log_file(options, service.name),
                workers=options.workers,
            )
        wait_until_ready(stack, bases, 60.0)
        yield {name: process.pid for name, process in stack.processes.items()}
    finally:
        stack.stop()
        for url in urls.values():
            asyncio.run(drop_database(url))
        asyncio.run(delete_broker_names(options.amqp, Names(up.broker_prefix)))


@asynccontextmanager
async def started_yardstick(options: BenchOptions, token: str) -> AsyncIterator[tuple[str, int]]:
    """The lean yardstick on a port and a migrated orders database of its own; its URL and pid."""
    orders = next(service for service in SERVICES if service.name == "orders")
    url = await prepare_database(options.postgres, orders, f"bench_{token}_yardstick_")
    await asyncio.to_thread(migrate, url, orders)
    port = free_port()
    env = {**os.environ, "YARDSTICK_DATABASE_URL": url.replace("postgresql+asyncpg://", "postgresql://")}
    command = [sys.executable, "-m", "uvicorn", "--factory", "deliveryhub_cli.bench.yardstick:create_app"]
    command += ["--host", options.host, "--port", str(port), "--log-level", "warning"]
    with log_file(options, "yardstick").open("w") as log:
        process = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=log, stderr=asyncio.subprocess.STDOUT
        )
    try:
        base = f"http://{options.host}:{port}"
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(base_url=base) as client:
            while True:
                with suppress(httpx.TransportError):
                    if (await client.get("/docs")).status_code in (200, 404):
                        break
                if process.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the yardstick did not start; see {log_file(options, 'yardstick')}")
                await asyncio.sleep(0.1)
        yield base, process.pid
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=10)
            except TimeoutError:
                process.kill()
                await process.wait()
        await drop_database(url)
